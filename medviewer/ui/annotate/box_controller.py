"""The series' boxes and class labels: the logic behind the Box tool and the dock.

`BoxController` is usable without clicking (`add_box(...)`, `move_box(uid, dx, dy)`,
`set_class("nodule")`, `accept_classes(result)`); the Box tool's mouse (`annotate_box_tool`),
the dock and the right-click menu only call it. Every change is ONE BoxEdit put on the
annotation's box undo stack with the label map's position at that moment, so Ctrl+Z undoes
boxes, classes and brush strokes in the order they were made (`AnnotateController._replay`).
(Rulers and area ROIs are document state, saved beside these: `annotate.measures`.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from medviewer.core.annotations import (
    AnnotatedBox,
    AnnotationError,
    BoxEdit,
    BoxSet,
    ClassLabel,
    slice_uid,
)
from medviewer.core.annotations.boxes import ANNOTATOR, SERIES, SLICE, classes_from_model
from medviewer.ui.annotate.box_tool import BoxMouse, clamp_move, clamp_rect, is_big_enough
from medviewer.ui.common.guard import guarded
from medviewer.ui.document.annotate_state import Annotation

if TYPE_CHECKING:
    from medviewer.inference.results import Result
    from medviewer.ui.annotate.controller import AnnotateController

DEFAULT_BOX_LABEL = "finding"


def set_classes(boxes: BoxSet, labels: Iterable[ClassLabel], description: str,
                before: tuple | None = None) -> BoxEdit:
    """Set several class labels as one undo step (accepting a classifier's verdicts); `before`
    is the set's state an earlier part of the same step started from (recovered boxes)."""
    before = before or (boxes.boxes, boxes.class_labels)
    for label in labels:
        boxes.set_class(label)
    return BoxEdit(description, before, (boxes.boxes, boxes.class_labels))


class BoxController:
    """Box review, the Box tool's gestures and class labels of the annotations."""

    def __init__(self, annotate: AnnotateController) -> None:
        self.annotate = annotate
        self.host, self.document = annotate.host, annotate.document
        self.box_label = DEFAULT_BOX_LABEL  # what a new box is called (the dock's combo)
        stack_view = annotate.viewer.single_view
        self.mouse = BoxMouse(stack_view, self)  # the Box tool, on the stack view
        annotate.viewer.tools.register(self.mouse)

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
        labels = classes_from_model(result, self.document.volume)
        if not labels or self._editable() is None:
            return None
        return self.box_edit(lambda boxes: set_classes(boxes, labels, "accept AI classes"))
