"""Lab 3's plugin: one verdict per series from N slabs of it, and the four methods compared.

numpy only (no torch). A series becomes its sample the same way in training and in the
viewer: the slices are split into N consecutive slabs of equal count (context "volume:N"),
each slab shown as a maximum-intensity projection (the slab MIP radiologists page through to
find nodules: a nodule anywhere in the slab shows at its full width), windowed, resized and
normalised as the manifest says.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medviewer.core.atomic import atomic_file
from medviewer.inference import preprocess as pp
from medviewer.inference.errors import ModelError
from medviewer.inference.manifest import InputSpec
from medviewer.inference.outputs import class_scores
from medviewer.inference.pipeline import Pipeline
from medviewer.inference.registry import LoadedModel, Plugin, open_model
from medviewer.inference.results import Result

PROJECTIONS = ("mip", "nearest")


def slab_bounds(count: int, slabs: int) -> list[tuple[int, int]]:
    """`slabs` consecutive (start, stop) slice ranges covering 0..count; never empty.

    With fewer slices than slabs a slice is shared by neighbouring slabs.
    """
    edges = np.linspace(0, count, slabs + 1)
    starts = np.minimum(np.floor(edges[:-1]).astype(int), count - 1)
    stops = np.maximum(np.floor(edges[1:]).astype(int), starts + 1)
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def series_sample(voxels: np.ndarray, spec: InputSpec, projection: str = "mip") -> np.ndarray:
    """(N, rows, cols) float32: the model input of one series, N from context "volume:N"."""
    if not spec.context.startswith("volume:"):
        raise ValueError(f"a series-level model needs a 'volume:N' context, not {spec.context}")
    n = spec.context_slices
    if projection == "mip":
        slabs = np.stack([voxels[a:b].max(axis=0) for a, b in slab_bounds(len(voxels), n)])
    elif projection == "nearest":
        slabs = pp.volume_samples(voxels, n)
    else:
        raise ValueError(f"unknown projection {projection!r}; expected one of {PROJECTIONS}")
    return pp.normalise(pp.resize(pp.to_unit(slabs, spec.window), spec.size), spec)


class SeriesVerdict(Pipeline):
    """One row of class probabilities for the whole series (input "slices": (1, N, r, c))."""

    series_level = True

    def preprocess(self, voxels: np.ndarray, batch: list[int], volume: Any
                   ) -> dict[str, np.ndarray]:
        projection = self.manifest.options.get("projection", "mip")
        return {"slices": series_sample(voxels, self.manifest.input, projection)[None]}

    def postprocess(self, outputs: dict[str, np.ndarray], batch: list[int], voxels: np.ndarray,
                    result: Result) -> None:
        logits = outputs[self.manifest.onnx_outputs[0]].astype(np.float64)
        result.scores = pp.softmax(logits)


def compare_methods(volume: Any, models: Sequence[LoadedModel | str | Path]) -> list[Result]:
    """Run each fusion model (opened or by id/folder) on the volume: one verdict per method."""
    results = []
    for model in models:
        loaded = model if isinstance(model, LoadedModel) else open_model(model)
        if not loaded.pipeline.series_level:
            raise ModelError(loaded.manifest.folder, f"{loaded.manifest.title} gives slice "
                             "scores, not a series verdict; pick a lab 3 fusion model.")
        results.append(loaded.run(volume))
    return results


def fusion_model_ids() -> list[str]:
    """Installed lab 3 models, for a 'compare the methods' panel."""
    from medviewer.inference.registry import list_models

    models, _ = list_models()
    return [m.id for m in models if m.plugin == "lab3"]


# the class-score columns (label, score, score_<label>) are every CSV's (inference.outputs)
CSV_FIELDS = ("series_instance_uid", "model_id", "model_version", "method", "label", "score",
              "provider", "seconds")


def verdict_rows(results: Sequence[Result]) -> list[dict[str, Any]]:
    """One row per result: the verdict (label), its probability (score), every label's."""
    return [{"series_instance_uid": r.series_instance_uid, "model_id": r.model_id,
             "model_version": r.model_version, "method": r.title,
             **class_scores(r.labels, r.scores[0]), "provider": r.provider,
             "seconds": f"{r.timings.get('total', 0.0):.3f}"}
            for r in results]


def write_verdicts_csv(results: Sequence[Result], path: str | Path) -> Path:
    """Write the verdicts (one row per result) to a CSV, atomically; returns the path."""
    rows = verdict_rows(results)
    # each label's score after the fixed columns, in the model's label order
    fields = list(CSV_FIELDS) + [k for k in dict.fromkeys(k for row in rows for k in row)
                                 if k not in CSV_FIELDS]
    with atomic_file(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def write_method_csvs(results: Sequence[Result], folder: str | Path) -> list[Path]:
    """A CSV per method (`folder`/<model id>.csv), each row one series' verdict."""
    by_model: dict[str, list[Result]] = {}
    for r in results:
        by_model.setdefault(r.model_id, []).append(r)
    return [write_verdicts_csv(rs, Path(folder) / f"{model_id}.csv")
            for model_id, rs in by_model.items()]


PLUGIN = Plugin(name="lab3", lab=3, title="Lab 3: series verdicts by fusion of slices",
                pipelines={"fusion": SeriesVerdict})
