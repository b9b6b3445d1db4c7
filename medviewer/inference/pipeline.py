"""Inference as a template method: preprocess -> ONNX Runtime -> postprocess -> Result.

A lab's plugin subclasses `Pipeline` and fills in `preprocess` and `postprocess`; `run` does
the batching, progress, cancel and the timing of each stage (MONAI Label's shape).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from medviewer.inference.errors import ModelError
from medviewer.inference.manifest import Manifest
from medviewer.inference.results import Result
from medviewer.inference.session import ModelSession

Progress = Callable[[int, int], None]  # (done, total)
Cancelled = Callable[[], bool]


class InferenceCancelled(Exception):  # noqa: N818 - mirrors core's LoadCancelled
    """The caller asked to stop; the partial result is discarded."""


class Pipeline:
    """Runs one model over a volume. Subclasses override preprocess / postprocess."""

    batch_size = 8
    series_level = False  # True: one verdict for the whole series (fusion models)

    def __init__(self, manifest: Manifest, session: ModelSession) -> None:
        self.manifest = manifest
        self.session = session

    # --- the template ---------------------------------------------------------------------
    def run(self, volume: Any, slices: Sequence[int] | None = None, *,
            progress: Progress | None = None, cancelled: Cancelled | None = None) -> Result:
        """Run on `slices` (default: all) of a core Volume; a series-level model ignores them."""
        voxels = self.grey_voxels(volume)
        indices = self.indices(voxels, slices)
        result = self.new_result(volume, indices)
        timings = dict.fromkeys(("preprocess", "inference", "postprocess"), 0.0)
        batches = list(self.batches(indices))
        for done, batch in enumerate(batches):
            if cancelled is not None and cancelled():
                raise InferenceCancelled()
            t0 = time.perf_counter()
            inputs = self.preprocess(voxels, batch, volume)
            t1 = time.perf_counter()
            outputs = self.session.run(inputs)
            t2 = time.perf_counter()
            self.postprocess(outputs, batch, voxels, result)
            t3 = time.perf_counter()
            timings["preprocess"] += t1 - t0
            timings["inference"] += t2 - t1
            timings["postprocess"] += t3 - t2
            if progress is not None:
                progress(done + 1, len(batches))
        self.finish(result, voxels)
        result.timings = {**timings, "total": sum(timings.values())}
        return result

    def indices(self, voxels: np.ndarray, slices: Sequence[int] | None) -> list[int]:
        n = voxels.shape[0]
        if self.series_level:
            return list(range(n))
        chosen = list(range(n)) if slices is None else [int(k) for k in slices]
        bad = [k for k in chosen if not 0 <= k < n]
        if bad:
            raise ModelError(None, f"Slices {bad[:5]} are outside this series (0..{n - 1}).")
        return chosen

    def batches(self, indices: list[int]) -> Iterator[list[int]]:
        if self.series_level:
            yield indices
            return
        for i in range(0, len(indices), self.batch_size):
            yield indices[i:i + self.batch_size]

    def grey_voxels(self, volume: Any) -> np.ndarray:
        """(slices, rows, cols) modality values; 4D takes the first time point, colour its mean."""
        v = volume.voxels
        if getattr(volume, "is_colour", False):
            v = v.mean(axis=-1)
        if v.ndim == 4:
            v = v[0]
        if v.ndim == 2:
            v = v[None]
        modalities = self.manifest.input.modalities
        if modalities and getattr(volume, "modality", "") not in modalities:
            raise ModelError(self.manifest.folder, f"{self.manifest.title} reads "
                             f"{'/'.join(modalities)} images; this series is "
                             f"{getattr(volume, 'modality', '') or 'of unknown modality'}.")
        return v

    def new_result(self, volume: Any, indices: list[int]) -> Result:
        m = self.manifest
        sources = getattr(volume, "sources", []) or []
        series = getattr(volume, "series", None)
        return Result(
            model_id=m.id, model_version=m.version, task=m.task, labels=m.label_names,
            colours=[label.colour for label in m.labels], provider=self.session.provider,
            runtime=getattr(self.session, "backend_label", ""),
            slice_indices=[] if self.series_level else list(indices), title=m.title,
            series_instance_uid=getattr(series, "series_instance_uid", "") or "",
            sop_instance_uids=[sources[k].sop_instance_uid if k < len(sources) else ""
                               for k in indices])

    # --- what a lab fills in ------------------------------------------------------------------
    def preprocess(self, voxels: np.ndarray, batch: list[int], volume: Any
                   ) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def postprocess(self, outputs: dict[str, np.ndarray], batch: list[int], voxels: np.ndarray,
                    result: Result) -> None:
        raise NotImplementedError

    def finish(self, result: Result, voxels: np.ndarray) -> None:
        """After the last batch (e.g. stack per-slice scores); default: nothing."""
