"""Model -> Import Model...'s work and words, without widgets (Slicer's logic object).

Plain functions run by `WorkerPool.start(fn, ...)` on a pool thread, as the AI's tasks are:
`inspect_task` reads the file (`importing.inspect`; torch's import alone takes seconds),
`preview_task` exports into a temporary folder and runs the result on one slice with the lab's
plugin, `import_task` installs that folder (or exports straight into the user's store).
`importing`'s (text, fraction) progress reaches the dialog as partials, and Cancel stops an
export at its next progress call. The rest turns forms and results into fields and sentences.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medviewer.inference import Manifest, ModelError
from medviewer.training import importing

PALETTE = ("#000000", "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4",
           "#f032e6", "#bfef45", "#fabed4")
PLACEHOLDER = re.compile(r"class \d+")


# the command line's words in importing's sentences, and where the dialog has each
FLAGS = {"--arch": "the Architecture field", "--map": "Key maps under Advanced",
         "--trust-pickle": "'Trust this pickle' under Advanced", "--size": "the input Size",
         "--channels": "the input Channels", "--labels": "the Labels table",
         "--like": "the input fields (prefilled from a similar model)"}


def in_dialog_words(text: str) -> str:
    """`text` with what its command-line options are called in this dialog."""
    named = [f"{flag} is {where}" for flag, where in FLAGS.items()
             if re.search(re.escape(flag) + r"\b", text)]
    return f"{text} (Here {'; '.join(named)}.)" if named else text


# ----------------------------------------------------------------------- form helpers
def default_id(path: Path) -> str:
    """A model id from a file name: 'My U-Net (final).pth' -> 'my-u-net-final'."""
    return re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-") or "imported-model"


def placeholder_labels(count: int) -> list[str]:
    return [f"class {i + 1}" for i in range(count)]


def parse_maps(text: str) -> list[tuple[str, str]]:
    """Key maps 'OLD=NEW', one per line (blank lines skipped); ValueError with a sentence."""
    maps = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                maps.append(importing.parse_map(line))
            except ModelError:
                raise ValueError(f"Key map line {n} ({line.strip()!r}) is not OLD=NEW; write "
                                 "one prefix mapping per line, e.g. model.=detector.") from None
    return maps


def numbers(text: str, what: str) -> list[float]:
    try:
        values = [float(p) for p in text.replace(";", ",").split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"The {what} must be numbers separated by commas, not {text!r}."
                         ) from None
    if not values:
        raise ValueError(f"Give the {what} (one number, or one per channel).")
    return values


def words(text: str) -> list[str]:
    return [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]


@dataclass
class Inspected:
    """What the inspect worker hands back."""

    inspection: importing.Inspection
    arch_names: dict[int, list[tuple[str, str]]]  # lab -> [(architecture, task)]
    models: list[Manifest]  # installed models (the active version of each)


@dataclass
class Preview:
    """What the preview worker hands back: the model folder and its run on one slice."""

    manifest: Manifest
    inspection: importing.Inspection
    summary: str
    thumbnail: np.ndarray | None  # (rows, columns, 3) uint8
    result: Any = None  # the Result on the slice (None: not run)


def inspect_task(ctx: Any, path: str, trust: bool, arch: str | None,
                 maps: list[tuple[str, str]]) -> Inspected:
    from medviewer.inference import list_models
    from medviewer.labs.architectures import load_all

    inspection = importing.inspect(path, trust_pickle=trust, arch=arch, maps=maps)
    archs: dict[int, list[tuple[str, str]]] = {}
    for name, a in sorted(load_all().items()):
        archs.setdefault(a.lab, []).append((name, a.task))
    return Inspected(inspection, archs, list_models()[0])


def _progress(ctx: Any) -> Callable[[str, float], None]:
    """importing's (text, fraction) progress as partials; Cancel stops it at the next call."""

    def report(text: str, fraction: float) -> None:
        if ctx.is_cancelled():
            raise InterruptedError("cancelled")
        ctx.partial((text, fraction))

    return report


def preview_task(ctx: Any, path: str, fields: dict, out: str, options: dict, volume: Any,
                 k: int, frame: np.ndarray | None, number: int) -> Preview:
    """Export into `out` (a temporary folder), then run it on slice `k` of `volume` (shown
    to the reader as image `number`)."""
    manifest, inspection = importing.import_model(path, fields, out, progress=_progress(ctx),
                                                  **options)
    if volume is None:
        return Preview(manifest, inspection, "Open a series to see the model's result on "
                       "a slice; the model itself is ready to import.", None)
    modality = getattr(volume, "modality", "") or ""
    wanted = manifest.input.modalities
    if wanted and modality and modality not in wanted:
        return Preview(manifest, inspection, f"Not run: the model reads {'/'.join(wanted)} "
                       f"images and this series is {modality}.", None)
    ctx.partial(("running the model on the slice", 0.95))
    from medviewer.inference import open_model

    loaded = open_model(manifest)
    slices = None if manifest.task == "fusion" else [k]
    start = time.perf_counter()
    result = loaded.run(volume, slices, cancelled=ctx.is_cancelled)
    seconds = time.perf_counter() - start
    return Preview(manifest, inspection, describe(result, k, volume, number, seconds),
                   None if frame is None else thumbnail(frame, result, k), result)


def describe(result: Any, k: int, volume: Any, number: int, seconds: float) -> str:
    """The result on slice `k` in a radiologist's words: top classes, areas or boxes."""
    took = f"{seconds:.1f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"
    where = "the whole series" if result.task == "fusion" else f"image {number}"
    lines = [f"{result.title or result.model_id} on {where} ({took}, "
             f"{(result.provider or 'CPU').removesuffix('ExecutionProvider')}):"]
    if result.scores is not None:
        row = result.scores[0]
        top = np.argsort(row)[::-1][:5]
        lines += [f"  {result.labels[i]}: {row[i]:.3f}" for i in top]
    elif result.label_map is not None:
        plane = result.label_map[k]
        spacing = getattr(volume, "spacing", None)
        pixel_mm2 = float(spacing[1] * spacing[2]) if spacing is not None and getattr(
            volume, "has_geometry", False) else None
        for value, name in enumerate(result.labels):
            if value == 0:
                continue
            count = int((plane == value).sum())
            area = f" ({count * pixel_mm2 / 100:.1f} cm\u00b2)" if pixel_mm2 else ""
            lines.append(f"  {name}: {count} pixels{area}")
    else:
        boxes = sorted(result.boxes_on(k), key=lambda b: -b.score)
        lines.append(f"  {len(boxes)} box(es)")
        lines += [f"  {b.label} {b.score:.2f} at ({b.x0:.0f}, {b.y0:.0f})-({b.x1:.0f}, "
                  f"{b.y1:.0f})" for b in boxes[:8]]
    return "\n".join(lines)


def thumbnail(frame: np.ndarray, result: Any, k: int) -> np.ndarray:
    """The slice (grey, 1st-99th percentile) with the label map blended and boxes outlined."""
    grey = np.asarray(frame, np.float32)
    if grey.ndim == 3:  # colour
        grey = grey.mean(axis=-1)
    lo, hi = np.percentile(grey, (1, 99)) if grey.size else (0.0, 1.0)
    grey = np.clip((grey - lo) / max(hi - lo, 1e-6), 0, 1) * 255
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    colours = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in result.colours],
                       np.float32)
    if result.label_map is not None and result.label_map[k].shape == grey.shape:
        plane = result.label_map[k]
        shown = (plane > 0) & (plane < len(colours))
        rgb[shown] = 0.5 * rgb[shown] + 0.5 * colours[plane[shown]]
    for box in result.boxes_on(k):
        colour = colours[result.labels.index(box.label) % len(colours)] if (
            box.label in result.labels) else (255, 255, 0)
        r0, r1 = (int(np.clip(v, 0, grey.shape[0] - 1)) for v in (box.y0, box.y1 - 1))
        c0, c1 = (int(np.clip(v, 0, grey.shape[1] - 1)) for v in (box.x0, box.x1 - 1))
        rgb[r0:r1 + 1, [c0, c1]] = colour
        rgb[[r0, r1], c0:c1 + 1] = colour
    return np.ascontiguousarray(rgb.astype(np.uint8))


def import_task(ctx: Any, folder: str | None, path: str, fields: dict, options: dict
                ) -> Manifest:
    """Install the previewed folder, or export straight into the user's store."""
    if folder is not None:
        ctx.partial(("moving the model into your store", 0.5))
        return importing.install(folder)
    from medviewer.inference.registry import user_models_dir

    out = user_models_dir() / fields["id"] / fields["version"]
    if out.exists():
        raise ModelError(out, f"Version {fields['version']} of {fields['id']} is already "
                         "installed; give another version (or another model id).")
    return importing.import_model(path, fields, out, progress=_progress(ctx), **options)[0]


def report_text(ins: importing.Inspection) -> str:
    """The inspection in words: what the file is, the guesses, the key report, warnings."""
    lines = [f"{ins.path.name}: {ins.kind}"]
    guess = ", ".join(x for x in (f"lab {ins.lab}" if ins.lab else "", ins.task or "",
                                  ins.arch or "") if x)
    lines.append(f"Guessed: {guess}" if guess else "Lab and task not recognised: choose them.")
    fitting = [(name, fit) for name, fit in ins.candidates if fit > 0]
    if fitting:
        lines.append("Architectures that fit: " + ", ".join(
            f"{name} ({fit:.0%} of tensors)" for name, fit in fitting[:5]))
    if ins.num_classes:
        lines.append(f"Classes (from the tensor shapes): {ins.num_classes}")
    for what, graph in (("Graph inputs", ins.inputs), ("Graph outputs", ins.outputs)):
        if graph:
            lines.append(f"{what}: " + ", ".join(f"{k} {v}" for k, v in graph.items()))
    if ins.report is not None:
        try:
            lines.append(f"Key report: {in_dialog_words(ins.report.sentence())}")
        except NotImplementedError:
            lines.append(f"Key report: {ins.report.loaded} of {ins.report.total} tensors loaded")
    lines += [f"Warning: {in_dialog_words(w)}" for w in ins.warnings]
    return "\n".join(lines)
