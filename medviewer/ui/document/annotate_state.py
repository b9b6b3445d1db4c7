"""The open study's editable annotations: label map, its undo history, boxes and tool settings.

A part of `StudyDocument` (a mixin, like `ai_state.AiLayers`), so every view, the Annotate dock
and the controller read one object. Unlike an AI result (a display layer), these are the
reader's edits: every change goes through `core.annotations` tools inside a History stroke and
is announced with `sigLabelMapChanged(box)`, where `box` is the (slice, row, column) block that
changed, so views redraw only that rectangle (None: redraw everything, e.g. after a load).

A label map belongs to one series. When another series opens, unsaved edits are kept in memory
(`_unsaved`, the last few series) so going back finds them with their undo history; saved ones
are read back from the series' workspace by the controller. The document declares the
signals: `sigLabelMapChanged(object)` and `sigAnnotateToolChanged()`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from medviewer.core.geometry import PlaneView

if TYPE_CHECKING:  # core.annotations (SEG / SR writers, autosave) loads with the first edit
    from medviewer.core.annotations import BoxSet, History, Label, LabelMap, LabelTable

TOOLS = ("brush", "eraser", "flood", "polygon", "box")
TOOL_NAMES = {"brush": "Brush", "eraser": "Eraser", "flood": "Flood fill",
              "polygon": "Polygon fill", "box": "Box"}
KEEP_UNSAVED = 3  # series whose unsaved edits stay in memory when another opens


@dataclass(frozen=True)
class ToolSettings:
    """How the painting tools edit: size in mm, disc or sphere, optional value range."""

    radius_mm: float = 5.0
    sphere: bool = False
    value_range: tuple[float, float] | None = None  # e.g. (-100, 200) HU
    overwrite: bool = True  # False: paint background only, never over another label


@dataclass
class Annotation:
    """One series' annotations: what is saved together and restored together."""

    labelmap: LabelMap
    history: History
    boxes: BoxSet
    model: str | None = None  # 'model:<id>@<version>' of a prediction it started from
    dirty: bool = False
    edits: int = 0  # counts changes, so an autosave is written only when there are new ones
    autosaved_edits: int = 0
    # box edits: (BoxEdit, history.position when it was made), so Ctrl+Z undoes map strokes
    # and box edits in the order they were made (see AnnotateController._replay); position,
    # not len(history), because the memory cap drops the oldest map items
    box_undo: list = field(default_factory=list)
    box_redo: list = field(default_factory=list)


def rgba_lut(table: LabelTable) -> np.ndarray:
    """(256, 4) uint8: each visible label's colour, opaque; background and hidden labels clear."""
    lut = np.zeros((256, 4), np.uint8)
    for label in table:
        if label.visible:
            text = label.colour.lstrip("#")
            lut[label.value] = (*(int(text[i:i + 2], 16) for i in (0, 2, 4)), 255)
    return lut


class AnnotationState:
    """The annotation part of a document: the current series' Annotation and tool settings."""

    def _init_annotations(self) -> None:
        self.annotation: Annotation | None = None
        self.tool_settings = ToolSettings()
        self.active_label = 1
        self._annotation_key: object = None
        self.selected_box: str | None = None  # uid of the box the box tool has picked
        self._unsaved: OrderedDict[object, Annotation] = OrderedDict()
        # the volume whose saved SEG / SR are being read: no edits until they are on it, or a
        # save made meanwhile would replace them with the new strokes alone
        self.loading_annotations_of: Any = None

    # ----------------------------------------------------------------- series changes
    def _sync_annotations(self, volume: Any) -> None:
        """Called by set_volume: keep the map for the same series, park unsaved edits else."""
        series = getattr(volume, "series", None)
        key = series.key if series is not None else id(volume)
        if key == self._annotation_key:
            return
        current = self.annotation
        if current is not None and current.dirty:
            self._unsaved[self._annotation_key] = current
            while len(self._unsaved) > KEEP_UNSAVED:
                self._unsaved.popitem(last=False)
        self._annotation_key = key
        self.selected_box = None
        self.annotation = self._unsaved.pop(key, None)
        self.sigLabelMapChanged.emit(None)

    @property
    def labelmap(self) -> LabelMap | None:
        return self.annotation.labelmap if self.annotation is not None else None

    @property
    def history(self) -> History | None:
        return self.annotation.history if self.annotation is not None else None

    def can_annotate(self) -> str | None:
        """Why the open series cannot carry a label map, or None when it can."""
        volume = getattr(self, "volume", None)
        if volume is None:
            return "Open a series first."
        if volume.is_4d or volume.is_colour:
            return "Label maps are drawn on 3D grey-level series."
        if self.loading_annotations_of is volume:
            return "Reading this series' saved annotations\u2026 edit them in a moment."
        return None

    def ensure_annotation(self) -> Annotation:
        """The series' annotation, an empty map on its grid if there is none yet."""
        if self.annotation is None:
            from medviewer.core.annotations import BoxSet, History, LabelMap

            labelmap = LabelMap.for_volume(self.volume)
            self.annotation = Annotation(labelmap, History(labelmap), BoxSet())
            self.sigLabelMapChanged.emit(None)
        return self.annotation

    def set_annotation(self, annotation: Annotation | None) -> None:
        """Replace the series' annotation (loaded from its workspace, or cleared)."""
        self.annotation = annotation
        self.selected_box = None
        self.sigLabelMapChanged.emit(None)

    def add_label(self, name: str, colour: str | None = None) -> Label:
        """A new label in the table (AnnotationError for a duplicate name); it becomes the
        one the brush paints with."""
        label = self.ensure_annotation().labelmap.table.add(name, colour)
        self.active_label = label.value
        self.labelmap_changed(None)
        return label

    def add_default_label(self) -> Label:
        """Painting with no label yet: 'segment N' with the next free value."""
        table = self.ensure_annotation().labelmap.table
        n = len(table) + 1
        while table.by_name(f"segment {n}") is not None:
            n += 1
        return self.add_label(f"segment {n}")

    def mark_edited(self) -> None:
        """One more unsaved edit of the series' annotations (autosaved, asked about on
        close); makes the annotation when there is none yet."""
        annotation = self.ensure_annotation()
        annotation.dirty = True
        annotation.edits += 1

    def labelmap_changed(self, box: Any, *, dirty: bool = True) -> None:
        """Announce an edit of `box` (None: all, or the table / display settings)."""
        if self.annotation is not None and dirty:
            self.mark_edited()
        self.sigLabelMapChanged.emit(box)

    # ----------------------------------------------------------------- tool settings
    def set_tool_settings(self, **changes: Any) -> None:
        settings = replace(self.tool_settings, **changes)
        if settings != self.tool_settings:
            self.tool_settings = settings
            self.sigAnnotateToolChanged.emit()

    @property
    def annotate_tool(self) -> str | None:
        """The active mouse tool when it is one of the Annotate tools, else None."""
        tool = getattr(self, "tool", None)
        return tool if tool in TOOLS else None

    def select_box(self, uid: str | None) -> None:
        """Pick the box the dock's label and Delete act on (None: no box); the views and the
        dock follow through sigAnnotateToolChanged (a selection is the box tool's state)."""
        if uid != self.selected_box:
            self.selected_box = uid
            self.sigAnnotateToolChanged.emit()

    # ----------------------------------------------------------------- what a plane shows
    def annotation_image(self, name: str, k: int) -> np.ndarray | None:
        """Image k of plane `name` of the label map (a view), None without a map, or on a
        resampled plane (labels are not interpolated)."""
        labelmap = self.labelmap
        if labelmap is None or getattr(self, "volume", None) is None:
            return None
        plane = self.plane(name)
        if not isinstance(plane, PlaneView) or labelmap.shape != tuple(self.shape):
            return None
        return plane.image(labelmap.array, k)
