"""The AI's background work: open a model (once), run it, explain it. No Qt here.

Plain functions run by `WorkerPool.start(fn, ...)` on a pool thread: opening a model checks
the sha256 of its files and probes ONNX Runtime's providers (hundreds of milliseconds), and a
run over a series takes seconds, so none of it may happen on the GUI thread. `ModelCache`
keeps each opened model (`LoadedModel`) for the next run; a failed open is not cached, so a
repaired model folder works on the next try.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from medviewer.inference import LoadedModel, Manifest, ModelError, open_model
from medviewer.inference.outputs import label_volumes
from medviewer.inference.results import Explanation, Result
from medviewer.ui.document.ai_state import AiOutput


class ModelCache:
    """Opened models by folder and version; safe to use from several workers at once."""

    def __init__(self, backend: str = "") -> None:
        self._models: dict[tuple[str, str, str, str], LoadedModel] = {}
        self._lock = threading.Lock()
        self.backend = backend  # inference.backends text; '' = each model's own choice

    def set_backend(self, backend: str) -> None:
        """Another runtime / precision: the models open with it on their next run. Never
        waits on a worker that is opening a model (this runs on the GUI thread): sessions of
        other runtimes are dropped now if no open is under way, else on the next change."""
        self.backend = backend
        if self._lock.acquire(blocking=False):
            try:
                self._models = {k: v for k, v in self._models.items() if k[-1] == backend}
            finally:
                self._lock.release()

    def key(self, manifest: Manifest) -> tuple[str, str, str, str]:
        return manifest.id, manifest.version, str(manifest.folder), self.backend

    def get(self, manifest: Manifest) -> LoadedModel:
        """The opened model, opening it now (checksums, session) the first time."""
        with self._lock:  # one open per model even when two runs ask at once
            key = self.key(manifest)
            loaded = self._models.get(key)
            if loaded is None:
                loaded = open_model(manifest, backend=key[-1] or None)
                self._models[key] = loaded
            return loaded

    def cached(self, manifest: Manifest) -> LoadedModel | None:
        return self._models.get(self.key(manifest))

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


@dataclass(frozen=True)
class AiRun:
    """What a worker hands back: the layer to show and the volume it was computed on."""

    output: AiOutput
    volume: Any
    provider: str
    seconds: float
    note: str = ""  # why the runtime asked for was not the one that ran

    @property
    def runtime(self) -> str:
        """What ran it: 'ONNX Runtime fp32', ... (the first result's, as its heading says)."""
        return self.output.results[0].runtime

    @property
    def summary(self) -> str:
        """The status bar's sentence: what was found, in how long (and why the runtime
        asked for did not run, if it did not)."""
        return self._found() + (f" {self.note}" if self.note else "")

    def _found(self) -> str:
        output = self.output
        result = output.results[0]
        name = result.title or result.model_id
        if output.scope == "compare" and result.label_map is not None:
            return (f"{len(output.results)} segmentation models compared; showing {name} "
                    f"({self.seconds:.1f} s)")
        if output.scope == "compare":
            verdicts = ", ".join(r.predicted(0)[0] for r in output.results)
            return f"{len(output.results)} fusion methods: {verdicts} ({self.seconds:.1f} s)"
        if result.boxes or result.task == "detection":
            found = f"{len(result.boxes)} box(es)"
        elif result.label_map is not None:
            found = f"labels on {len(result.slice_indices)} slice(s)"
        elif result.scores is not None and len(result.scores) == 1:
            label, p = result.predicted(0)
            found = f"{label} ({p:.2f})"
        else:
            found = f"scores on {len(result.slice_indices)} slices"
        return f"{name}: {found} in {self.seconds:.2f} s"


def run_model_task(ctx: Any, cache: ModelCache, manifest: Manifest, volume: Any,
                   slices: Sequence[int] | None, scope: str) -> AiRun:
    """Open (cached) and run one model on `slices` of `volume` (None: every slice)."""
    start = time.perf_counter()
    loaded = cache.get(manifest)
    result = loaded.run(volume, slices, progress=ctx.progress, cancelled=ctx.is_cancelled)
    output = AiOutput((result,), scope, _label_stats(result, volume),
                      lesions=_lesions(result, volume, manifest))
    return AiRun(output, volume, loaded.provider, time.perf_counter() - start,
                 loaded.session.note)


def compare_task(ctx: Any, cache: ModelCache, manifests: Sequence[Manifest],
                 volume: Any, mask: tuple[Any, Sequence[str]] | None = None) -> AiRun:
    """Run each model on the whole series: one verdict per fusion method, or one label map
    per segmenter (with its label volumes, and its scores against `mask` = (label map, label
    names) when the series has one). A model that fails is reported beside the others'
    answers instead of hiding them."""
    start = time.perf_counter()
    results: list[Result] = []
    failures: list[str] = []
    provider = ""
    for i, manifest in enumerate(manifests):
        ctx.progress(i, len(manifests))
        try:
            loaded = cache.get(manifest)
            results.append(loaded.run(volume, None, cancelled=ctx.is_cancelled))
            provider = provider or loaded.provider
        except ModelError as exc:
            failures.append(f"{manifest.title}: {exc.reason}")
    ctx.progress(len(manifests), len(manifests))
    if not results:
        raise ModelError(None, "No method could run: " + "; ".join(failures))
    stats = tuple(_label_stats(r, volume) for r in results if r.label_map is not None)
    output = AiOutput(tuple(results), "compare", stats[0] if stats else (),
                      failures=tuple(failures), stats_by_result=stats,
                      scores_by_result=_mask_scores(results, volume, mask) if stats else ())
    return AiRun(output, volume, provider, time.perf_counter() - start)


def _mask_scores(results: Sequence[Result], volume: Any,
                 mask: tuple[Any, Sequence[str]] | None) -> tuple[dict, ...]:
    """Each label map against the series' mask (`metrics.against_mask`'s report; {} without
    a mask, or when it names none of the model's labels)."""
    if mask is None:
        return tuple({} for _ in results)
    from medviewer.inference.metrics import against_mask

    spacing = volume.spacing if getattr(volume, "has_geometry", False) else None
    reports = (against_mask(r.label_map, r.labels, mask[0], mask[1], None, spacing)
               for r in results)
    return tuple(report if report["labels"] else {} for report in reports)


def explain_task(ctx: Any, manifest: Manifest, volume: Any, slice_index: int,
                 method: str | None) -> tuple[Explanation, Any]:
    """A heatmap of where the model looked on one slice (medviewer.explain: torch, so it is
    imported here, in the worker, and only when the reader asks)."""
    try:
        from medviewer.explain import explain
    except ImportError as exc:
        raise ModelError(manifest.folder, "Explanations are not available in this "
                         f"installation ({exc}); reinstall MedViewer with its AI "
                         "dependencies (torch, grad-cam).") from exc
    explanation = explain(manifest, volume, slice_index, method, progress=ctx.progress,
                          cancelled=ctx.is_cancelled)
    return explanation, volume


def _label_stats(result: Result, volume: Any) -> tuple[dict, ...]:
    """Voxels and mL of each label (mL only where the images have patient geometry: a
    radiograph's pixel grid has no depth)."""
    spacing = volume.spacing if getattr(volume, "has_geometry", False) else None
    return tuple(label_volumes(result, spacing))


def _lesions(result: Result, volume: Any, manifest: Manifest) -> tuple[Any, ...]:
    """The lesion table of a segmentation on images with patient geometry (a radiograph's
    pixels have no depth: no volume, no 3D lesion); the manifest may name the lesion labels
    (`options.lesion_labels`), else their names say it (core.lesions)."""
    if result.label_map is None or not getattr(volume, "has_geometry", False):
        return ()
    from medviewer.core.lesions import find_lesions, keep_tracking

    found = find_lesions(result.label_map, volume, result.labels,
                         manifest.options.get("lesion_labels"))
    return tuple(keep_tracking(found, []))  # the UIDs the CSV, JSON and SR all give


def agreement_task(ctx: Any, result: Result, volume: Any, path: str) -> dict[str, Any]:
    """Dice, IoU, precision, recall, boundary F1, HD95 per label and the overall scores of a
    segmentation result against a DICOM SEG drawn on the same series
    (`medviewer.inference.metrics.against_mask`'s report; distances in mm where the images
    have patient geometry)."""
    from medviewer.core.annotations import AnnotationError, read_seg
    from medviewer.inference.metrics import against_mask

    try:
        mask, mask_labels = read_seg(path, volume)
    except AnnotationError as exc:
        raise ModelError(path, exc.reason) from exc
    spacing = volume.spacing if getattr(volume, "has_geometry", False) else None
    report = against_mask(result.label_map, result.labels, mask, mask_labels,
                          result.slice_indices or None, spacing)
    if not report["labels"]:
        raise ModelError(path, f"The mask names none of the model's labels "
                         f"({', '.join(result.labels[1:])}); it has {', '.join(mask_labels[1:])}.")
    return report
