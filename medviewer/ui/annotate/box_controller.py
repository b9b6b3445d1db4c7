"""The series' boxes, class labels and rulers: the logic behind the Box tool and the dock.

`BoxController` is usable without clicking (`add_box(...)`, `move_box(uid, dx, dy)`,
`set_class("nodule")`, `accept_classes(result)`); the Box tool's mouse (`annotate_box_tool`),
the dock and the right-click menu only call it. Every change is ONE BoxEdit put on the
annotation's box undo stack with the label map's position at that moment, so Ctrl+Z undoes
boxes, classes and brush strokes in the order they were made (`AnnotateController._replay`).
Rulers drawn on the stack view are the SR's distance lines: `ruler_lines()` turns them into
`DistanceLine`s and `show_rulers()` draws saved or recovered ones again. Drawing, moving or
deleting a ruler is an edit like a stroke (unsaved, autosaved, asked about on close): when a
drag ends or a ruler comes or goes, the annotation's lines follow the view. Not an undo step:
a ruler is deleted with the Delete key, not Ctrl+Z.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from medviewer.core.annotations import (
    AnnotatedBox,
    AnnotationError,
    BoxEdit,
    BoxSet,
    ClassLabel,
    DistanceLine,
    distance_line,
    model_source,
    slice_uid,
)
from medviewer.core.annotations.boxes import ANNOTATOR, SERIES, SLICE
from medviewer.ui.annotate.box_tool import BoxMouse, clamp_move, clamp_rect, is_big_enough
from medviewer.ui.annotate.boxes import plane_to_slice, slice_to_plane
from medviewer.ui.common.guard import guarded
from medviewer.ui.document.annotate_state import Annotation
from medviewer.ui.viewing.measure_tools import DistanceMeasurement, Measurement

if TYPE_CHECKING:
    from medviewer.inference.results import Result
    from medviewer.ui.annotate.controller import AnnotateController

DEFAULT_BOX_LABEL = "finding"
SAME_PLACE_PX = 0.01  # rulers whose ends are this close are the same ruler (SR keeps floats)


def set_classes(boxes: BoxSet, labels: Iterable[ClassLabel], description: str,
                before: tuple | None = None) -> BoxEdit:
    """Set several class labels as one undo step (accepting a classifier's verdicts); `before`
    is the set's state an earlier part of the same step started from (recovered boxes)."""
    before = before or (boxes.boxes, boxes.class_labels)
    for label in labels:
        boxes.set_class(label)
    return BoxEdit(description, before, (boxes.boxes, boxes.class_labels))


def same_place(a: DistanceLine, b: DistanceLine) -> bool:
    """Whether two distance lines lie on the same slice between the same points."""
    return a.slice_index == b.slice_index and all(
        abs(p - q) <= SAME_PLACE_PX for p, q in zip((*a.start, *a.end), (*b.start, *b.end),
                                                    strict=True))


def same_lines(a: list[DistanceLine], b: list[DistanceLine]) -> bool:
    return len(a) == len(b) and all(same_place(x, y) for x, y in zip(a, b, strict=True))


def proposed_classes(result: Result, volume: Any) -> list[ClassLabel]:
    """A classifier's answer as class labels: a series-level verdict (no slice rows) becomes
    the series class, per-slice scores the classes of the slices it ran on."""
    if result.scores is None:
        return []
    source = model_source(result.model_id, result.model_version)
    if not result.slice_indices:
        label, score = result.predicted(0)
        return [ClassLabel(label, source, SERIES, score=score)]
    out = []
    for row, k in enumerate(result.slice_indices):
        label, score = result.predicted(row)
        out.append(ClassLabel(label, source, SLICE, int(k), slice_uid(volume, int(k)), score))
    return out


class BoxController:
    """Box review, the Box tool's gestures, class labels and rulers of the annotations."""

    def __init__(self, annotate: AnnotateController) -> None:
        self.annotate = annotate
        self.host, self.document = annotate.host, annotate.document
        self.box_label = DEFAULT_BOX_LABEL  # what a new box is called (the dock's combo)
        stack_view = annotate.viewer.single_view
        self.mouse = BoxMouse(stack_view, self)  # the Box tool, on the stack view
        annotate.viewer.tools.register(self.mouse)
        self._showing_rulers = False  # show_rulers' own rulers are not the reader's edits
        self._rulers_of: Any = self.document.volume  # the volume the view's rulers belong to
        layer = stack_view.measurements
        layer.sigMeasurementsChanged.connect(self._on_rulers_added_or_removed)
        layer.sigMeasurementChangeFinished.connect(self._on_ruler_drag_finished)
        self.document.sigVolumeChanged.connect(self._on_volume_changed)

    def show_error(self, text: str) -> None:
        self.annotate.show_error(text)

    # ----------------------------------------------------------------- the undo step
    def box_edit(self, change: Callable[[BoxSet], BoxEdit]) -> BoxEdit | None:
        """Run `change(boxset) -> BoxEdit` on the series' boxes as one undo step."""
        annotation = self.document.annotation
        if annotation is None:
            return None
        try:
            edit = change(annotation.boxes)
        except (AnnotationError, KeyError) as exc:
            self.host.set_status(getattr(exc, "reason", None) or f"No such box: {exc}")
            return None
        if not edit.changed:
            return None
        annotation.box_undo.append((edit, annotation.history.position))
        annotation.box_redo.clear()
        self.document.labelmap_changed(None)
        self.host.set_status(edit.description.capitalize())
        self.annotate._sync_actions()
        return edit

    def _editable(self) -> Annotation | None:
        """The series' annotation (made when there is none yet), None where none can be."""
        if (why := self.document.can_annotate()) is not None:
            self.host.set_status(why)
            return None
        return self.document.ensure_annotation()

    def _image_size(self) -> tuple[int, int]:
        _, rows, cols = self.document.shape
        return cols, rows

    # ----------------------------------------------------------------- review
    @guarded
    def accept_box(self, uid: str) -> BoxEdit | None:
        return self.box_edit(lambda boxes: boxes.accept(uid))

    @guarded
    def reject_box(self, uid: str) -> BoxEdit | None:
        return self.box_edit(lambda boxes: boxes.reject(uid))

    @guarded
    def accept_boxes_above(self, score: float) -> BoxEdit | None:
        return self.box_edit(lambda boxes: boxes.accept_above(score))

    # ----------------------------------------------------------------- the Box tool's edits
    @guarded
    def add_box(self, x0: float, y0: float, x1: float, y1: float,
                slice_index: int | None = None, label: str | None = None) -> BoxEdit | None:
        """A box drawn by the reader on a slice (default: the current one), in its pixels,
        clamped to the image; it becomes the selected box."""
        if self._editable() is None:
            return None
        doc = self.document
        k = doc.slice_index if slice_index is None else int(slice_index)
        rect = clamp_rect(x0, y0, x1, y1, *self._image_size())
        if not is_big_enough(rect):
            self.host.set_status("A box needs at least one pixel each way")
            return None
        box = AnnotatedBox(*rect, k, (label or self.box_label).strip() or DEFAULT_BOX_LABEL,
                           sop_instance_uid=slice_uid(doc.volume, k))
        edit = self.box_edit(lambda boxes: boxes.add(box, description="draw box"))
        if edit is not None:
            doc.select_box(box.uid)
        return edit

    @guarded
    def move_box(self, uid: str, dx: float, dy: float) -> BoxEdit | None:
        """Shift a box by (dx, dy) slice pixels, stopping at the image's edges."""
        box = self._box(uid)
        if box is None:
            return None
        dx, dy = clamp_move((box.x0, box.y0, box.x1, box.y1), dx, dy, *self._image_size())
        if dx == 0 and dy == 0:
            return None
        return self.box_edit(lambda boxes: boxes.move(uid, dx, dy))

    @guarded
    def resize_box(self, uid: str, x0: float, y0: float, x1: float,
                   y1: float) -> BoxEdit | None:
        rect = clamp_rect(x0, y0, x1, y1, *self._image_size())
        if self._box(uid) is None or not is_big_enough(rect):
            return None
        return self.box_edit(lambda boxes: boxes.resize(uid, *rect))

    @guarded
    def delete_box(self, uid: str) -> BoxEdit | None:
        edit = self.box_edit(lambda boxes: boxes.delete(uid))
        if edit is not None and self.document.selected_box == uid:
            self.document.select_box(None)
        return edit

    @guarded
    def relabel_box(self, uid: str, label: str) -> BoxEdit | None:
        label = label.strip()
        box = self._box(uid)
        if box is None or not label or label == box.label:
            return None
        self.box_label = label
        return self.box_edit(lambda boxes: boxes.relabel(uid, label))

    def set_box_label(self, label: str) -> BoxEdit | None:
        """The dock's box label: the name of the next box, and of the selected one."""
        label = label.strip()
        if not label:
            return None
        self.box_label = label
        uid = self.document.selected_box
        return self.relabel_box(uid, label) if uid is not None else None

    def selected(self) -> AnnotatedBox | None:
        """The box the Box tool has picked, None when there is none."""
        return self._box(self.document.selected_box)

    def _box(self, uid: str | None) -> AnnotatedBox | None:
        annotation = self.document.annotation
        if annotation is None or uid is None:
            return None
        try:
            return annotation.boxes.get(uid)
        except KeyError:
            return None

    def box_label_choices(self) -> list[str]:
        """Names the box label combo offers: the default, the boxes' own, a detector's."""
        names = [DEFAULT_BOX_LABEL, self.box_label]
        annotation, result = self.document.annotation, self.document.ai_result
        if annotation is not None:
            names += [b.label for b in annotation.boxes]
        if result is not None and result.task == "detection":
            names += list(result.labels)
        return list(dict.fromkeys(n for n in names if n))

    # ----------------------------------------------------------------- class labels
    @guarded
    def set_class(self, label: str, slice_index: int | None = None) -> BoxEdit | None:
        """Set or correct the class of a slice (an index) or of the series (None)."""
        label = label.strip()
        if not label or self._editable() is None:
            return None
        current = self.document.annotation.boxes.class_of(slice_index)
        if current is not None and current.label == label:
            return None  # the same answer again (the dock's field losing focus): no step
        if slice_index is None:
            new = ClassLabel(label, ANNOTATOR, SERIES)
        else:
            new = ClassLabel(label, ANNOTATOR, SLICE, int(slice_index),
                             slice_uid(self.document.volume, int(slice_index)))
        return self.box_edit(lambda boxes: boxes.set_class(new))

    @guarded
    def clear_class(self, slice_index: int | None = None) -> BoxEdit | None:
        return self.box_edit(lambda boxes: boxes.clear_class(slice_index))

    def class_choices(self) -> list[str]:
        """The class combos' names: the shown model's labels, then the classes set so far."""
        result, annotation = self.document.ai_result, self.document.annotation
        names = list(result.labels) if result is not None else []
        if annotation is not None:
            names += [c.label for c in annotation.boxes.class_labels]
        return list(dict.fromkeys(names))

    def accept_classes(self, result: Result) -> BoxEdit | None:
        """A classifier's verdicts become the series or slice classes, as ONE undo step."""
        labels = proposed_classes(result, self.document.volume)
        if not labels or self._editable() is None:
            return None
        return self.box_edit(lambda boxes: set_classes(boxes, labels, "accept AI classes"))

    # ----------------------------------------------------------------- rulers <-> SR lines
    def ruler_lines(self) -> list[DistanceLine]:
        """The stack view's rulers as distance lines in their slices' own pixels."""
        view, volume = self.annotate.viewer.single_view, self.document.volume
        if volume is None:
            return []
        plane, out = view.plane, []
        for ruler in view.measurements.items:
            if isinstance(ruler, DistanceMeasurement):
                start, end = (plane_to_slice(plane, *p) for p in ruler.endpoints_px())
                k = plane.to_voxel(ruler.k, 0, 0)[2]
                out.append(distance_line(volume, k, start, end))
        return out

    def show_rulers(self, lines: Iterable[DistanceLine]) -> None:
        """Draw saved distance lines as rulers on the stack view (none selected); drawing them
        is not an edit."""
        view = self.annotate.viewer.single_view
        plane, layer = view.plane, view.measurements
        self._showing_rulers = True
        try:
            for line in lines:
                k = plane.from_voxel(0, 0, line.slice_index)[0]
                layer.add_distance(slice_to_plane(plane, *line.start),
                                   slice_to_plane(plane, *line.end), k)
        finally:
            self._showing_rulers = False
        layer.select(None)
        layer.show_slice(view.slice_index)

    def restore_rulers(self, lines: Iterable[DistanceLine]) -> None:
        """Recovered rulers: draw those not on the view yet; the annotation keeps them all."""
        shown = self.ruler_lines()
        self.show_rulers([line for line in lines
                          if not any(same_place(line, other) for other in shown)])
        if self.document.annotation is not None:
            self.document.annotation.lines = self.ruler_lines()

    # ----------------------------------------------------------------- ruler edits
    def _on_volume_changed(self) -> None:
        # connected after the stack view's own slot, which has cleared the leaving series'
        # rulers by now: those removals were not edits of the series that opens
        self._rulers_of = self.document.volume

    def _on_rulers_added_or_removed(self) -> None:
        if not self.annotate.viewer.single_view.measurements.drawing:  # drawn: counted at the end
            self._rulers_edited()

    def _on_ruler_drag_finished(self, measurement: Measurement) -> None:
        if isinstance(measurement, DistanceMeasurement):  # area ROIs are not annotations
            self._rulers_edited()

    def _rulers_edited(self) -> None:
        """The view's rulers changed: when they differ from the annotation's lines, that is
        one edit (an area ROI coming or going leaves the lines as they were)."""
        doc = self.document
        if self._showing_rulers or doc.volume is None or doc.volume is not self._rulers_of \
                or doc.can_annotate() is not None:
            return
        lines = self.ruler_lines()
        kept = doc.annotation.lines if doc.annotation is not None else []
        if not same_lines(lines, kept):
            doc.lines_changed(lines)
