"""What the AI shows on the open study: the last run's results and explanation, and how.

A part of `StudyDocument` (a mixin, like `ReadingAids`), so every view and the results dock
read one object. A model's answer is a display layer here, never an edit of the study's data
(DESIGN.md: accepting a prediction into an editable mask is a separate, undoable step). The
layer goes when another series opens: a label map belongs to the voxels it was computed on.
The document declares the signals: `sigAiResultChanged` (results or explanation replaced)
and `sigAiDisplayChanged` (opacity, hidden labels, box threshold: every view follows).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from medviewer.core.geometry import PlaneView

if TYPE_CHECKING:  # medviewer.inference (the model registry) loads with the AI feature
    from medviewer.inference.results import Box, Explanation, Result

# colours for labels whose manifest gives none (or a malformed one)
FALLBACK_COLOURS = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4",
                    "#46f0f0", "#f032e6")


@dataclass(frozen=True)
class AiOutput:
    """One AI run shown on the study: one result, or several (lab 3's methods compared).

    `label_stats` has one entry per label of the (first) result's label map, background
    excluded (`inference.outputs.label_volumes`: value, name, voxels, volume_ml, slices),
    computed in the worker so the dock never counts 30 million voxels on the GUI thread;
    `volume_ml` is None when the images carry no patient geometry."""

    results: tuple[Result, ...]
    scope: str = "slice"  # "slice" | "series" | "compare"
    label_stats: tuple[dict, ...] = ()  # of the shown result
    failures: tuple[str, ...] = ()  # compare: the methods that could not run, and why
    # compare (lab 4's segmenters): the result drawn on the images, and per result its
    # label_stats and its scores against the series' own mask ({} when it has none)
    shown: int = 0
    stats_by_result: tuple[tuple[dict, ...], ...] = ()
    scores_by_result: tuple[dict, ...] = ()
    lesions: tuple[Any, ...] = ()  # core.lesions.Lesion of the lesion labels, from the worker


@dataclass(frozen=True)
class AiDisplay:
    """How the layers are drawn; the reader's choices survive a new result and a new series."""

    opacity: float = 0.5  # label map
    label_fill: bool = False  # outlines by default: the anatomy inside stays readable
    hidden_labels: frozenset[str] = field(default_factory=frozenset)
    min_score: float = 0.5  # boxes below it are hidden
    heatmap_opacity: float = 0.45


def rgb(colour: str, index: int = 0) -> tuple[int, int, int]:
    """'#rrggbb' -> (r, g, b); a fallback colour when the manifest's is malformed."""
    text = str(colour).strip().lstrip("#")
    if len(text) == 6:
        try:
            return tuple(int(text[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
        except ValueError:
            pass
    return rgb(FALLBACK_COLOURS[index % len(FALLBACK_COLOURS)])


def label_lut(result: Result, hidden: frozenset[str] = frozenset()) -> np.ndarray:
    """(256, 4) uint8 RGBA per label value: the label's colour, opaque; 0 (nothing found, or
    a slice not run) and hidden labels transparent. The layer's opacity is the item's."""
    lut = np.zeros((256, 4), np.uint8)
    for i, (name, colour) in enumerate(zip(result.labels, result.colours, strict=False)):
        if 0 < i < 256 and name not in hidden:
            lut[i] = (*rgb(colour, i), 255)
    return lut


class AiLayers:
    """The AI layers of a document: results, explanation and their display settings."""

    def _init_ai(self) -> None:
        self.ai_output: AiOutput | None = None
        self.explanation: Explanation | None = None
        self.ai_display = AiDisplay()

    @property
    def ai_results(self) -> tuple[Result, ...]:
        return self.ai_output.results if self.ai_output is not None else ()

    @property
    def ai_result(self) -> Result | None:
        """The result drawn on the images (a comparison: the one chosen, first at first)."""
        results = self.ai_results
        return results[self.ai_output.shown] if results else None

    def show_ai_result(self, index: int) -> None:
        """Draw result `index` of a comparison (one overlay at a time), its label volumes
        in the dock."""
        output = self.ai_output
        if output is None or index == output.shown or not 0 <= index < len(output.results):
            return
        stats = (output.stats_by_result[index] if index < len(output.stats_by_result)
                 else output.label_stats)
        self.set_ai_output(replace(output, shown=index, label_stats=stats))

    def set_ai_output(self, output: AiOutput | None) -> None:
        """Show `output`; a heatmap of another model goes with the result it explained (it
        would read as this model's)."""
        self.ai_output = output
        exp = self.explanation
        if output is not None and exp is not None and exp.model_id not in {
                r.model_id for r in output.results}:
            self.explanation = None
        self.sigAiResultChanged.emit()

    def set_explanation(self, explanation: Explanation | None) -> None:
        self.explanation = explanation
        self.sigAiResultChanged.emit()

    def clear_ai(self) -> None:
        """Drop the results and the heatmap (a new series, or the reader's Clear)."""
        if self.ai_output is not None or self.explanation is not None:
            self.ai_output, self.explanation = None, None
            self.sigAiResultChanged.emit()

    def set_ai_display(self, **changes: Any) -> None:
        """Change how the layers are drawn: opacity, label_fill, hidden_labels, min_score,
        heatmap_opacity."""
        display = replace(self.ai_display, **changes)
        if display != self.ai_display:
            self.ai_display = display
            self.sigAiDisplayChanged.emit()

    def set_label_visible(self, name: str, visible: bool) -> None:
        hidden = set(self.ai_display.hidden_labels)
        if visible:
            hidden.discard(name)
        else:
            hidden.add(name)
        self.set_ai_display(hidden_labels=frozenset(hidden))

    # ----------------------------------------------------------------- what a plane shows
    def label_image(self, name: str, k: int) -> np.ndarray | None:
        """Image k of plane `name` of the label map (a numpy view, cut as the voxels are);
        None when there is none, or the plane is resampled (oblique MPR: labels are not
        interpolated)."""
        result = self.ai_result
        if result is None or result.label_map is None:
            return None
        plane = self.plane(name)
        if not isinstance(plane, PlaneView) or result.label_map.shape != tuple(self.shape):
            return None
        return plane.image(result.label_map, k)

    def heatmap_image(self, name: str, k: int) -> np.ndarray | None:
        """The explanation's heatmap on image k of a plane cut along the acquired slices."""
        exp = self.explanation
        plane = self.plane(name)
        if exp is None or not isinstance(plane, PlaneView) or plane.axes[0] != 0:
            return None
        if plane.to_voxel(k, 0, 0)[2] != exp.slice_index:
            return None
        if exp.heatmap.shape != tuple(self.shape[1:]):
            return None
        return plane.image(np.asarray(exp.heatmap)[None], 0)

    def boxes_on_plane(self, name: str, k: int) -> list[tuple[Box, tuple[float, ...]]]:
        """Boxes at or above the threshold on image k, each with (x0, y0, x1, y1) in that
        image's pixels (flipped as the plane is); only planes cut along the acquired slices."""
        result, plane = self.ai_result, self.plane(name)
        if result is None or not result.boxes or not isinstance(plane, PlaneView):
            return []
        if tuple(plane.axes) != (0, 1, 2):
            return []
        slice_index = plane.to_voxel(k, 0, 0)[2]
        _, rows, cols = plane.shape
        out = []
        for box in result.boxes_on(slice_index, self.ai_display.min_score):
            x0, x1 = (cols - box.x1, cols - box.x0) if plane.flips[1] else (box.x0, box.x1)
            y0, y1 = (rows - box.y1, rows - box.y0) if plane.flips[0] else (box.y0, box.y1)
            out.append((box, (x0, y0, x1, y1)))
        return out
