"""Boxes, class labels and distance lines on a series, edited with undo (numpy/pydicom only).

    boxes = boxes_from_model(result.boxes, volume, source="model:lung-det@1.2.0")
    edit = boxes.accept_above(0.5)      # every edit is applied at once and returned ...
    edit.undo(boxes); edit.redo(boxes)  # ... so the document's undo stack can hold it

Boxes and labels are frozen dataclasses, so an edit only needs the set's contents before and
after it (tuples that share the unchanged objects): undo is exact, never a recomputation.
A model's box starts "proposed"; the radiologist accepts or rejects it. A box drawn by hand is
"accepted" from the start, with no score.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydicom.uid import generate_uid

from medviewer.core.annotations.seg import AnnotationError

ANNOTATOR = "annotator"
PROPOSED, ACCEPTED, REJECTED = "proposed", "accepted", "rejected"
STATES = (PROPOSED, ACCEPTED, REJECTED)
SLICE, SERIES = "slice", "series"


def model_source(model_id: str, version: str) -> str:
    """The `source` of a box or label a model made: 'model:<id>@<version>'."""
    return f"model:{model_id}@{version}"


def _check_source(source: str) -> None:
    if source != ANNOTATOR and not (source.startswith("model:") and "@" in source):
        raise AnnotationError(None, f"Unknown source {source!r}: use 'annotator' or "
                              "'model:<id>@<version>'.")


@dataclass(frozen=True)
class AnnotatedBox:
    """A finding's box in pixel coordinates (x1, y1 exclusive edges) on slice `slice_index`."""

    x0: float
    y0: float
    x1: float
    y1: float
    slice_index: int
    label: str
    score: float | None = None  # None: drawn by a person
    source: str = ANNOTATOR  # 'annotator' or 'model:<id>@<version>'
    state: str = ACCEPTED
    sop_instance_uid: str = ""  # of the slice's image, so a save can reference it
    uid: str = field(default_factory=generate_uid)  # stable identity; the SR tracking UID

    def __post_init__(self) -> None:
        if not (self.x1 > self.x0 and self.y1 > self.y0):
            raise AnnotationError(None, f"A box needs x1 > x0 and y1 > y0, got ({self.x0}, "
                                  f"{self.y0}, {self.x1}, {self.y1}).")
        if self.state not in STATES:
            raise AnnotationError(None, f"Unknown box state {self.state!r}.")
        if not self.label:
            raise AnnotationError(None, "A box needs a label.")
        _check_source(self.source)

    @property
    def is_from_model(self) -> bool:
        return self.source != ANNOTATOR


@dataclass(frozen=True)
class ClassLabel:
    """The class of one slice (scope 'slice') or of the whole series (scope 'series')."""

    label: str
    source: str = ANNOTATOR
    scope: str = SERIES
    slice_index: int | None = None
    sop_instance_uid: str = ""
    score: float | None = None
    uid: str = field(default_factory=generate_uid)

    def __post_init__(self) -> None:
        if self.scope not in (SLICE, SERIES):
            raise AnnotationError(None, f"A class label is for a 'slice' or the 'series', "
                                  f"not {self.scope!r}.")
        if (self.scope == SLICE) != (self.slice_index is not None):
            raise AnnotationError(None, "A slice's class label names its slice; a series "
                                  "label names none.")
        if not self.label:
            raise AnnotationError(None, "A class label cannot be empty.")
        _check_source(self.source)

    @property
    def target(self) -> tuple[str, int | None]:
        """What it classifies: a slice or the series has one class at a time."""
        return self.scope, self.slice_index


@dataclass(frozen=True)
class DistanceLine:
    """A distance measured on slice `slice_index` between two pixel points (x, y)."""

    slice_index: int
    start: tuple[float, float]
    end: tuple[float, float]
    length_mm: float
    label: str = "distance"
    sop_instance_uid: str = ""
    uid: str = field(default_factory=generate_uid)


def distance_line(volume: Any, slice_index: int, start: Sequence[float], end: Sequence[float],
                  label: str = "distance") -> DistanceLine:
    """A DistanceLine whose length comes from the volume's pixel spacing (its affine)."""
    import numpy as np

    affine = np.asarray(volume.affine, float)
    step = affine[:3, 0] * (end[0] - start[0]) + affine[:3, 1] * (end[1] - start[1])
    return DistanceLine(slice_index, (float(start[0]), float(start[1])),
                        (float(end[0]), float(end[1])), float(np.linalg.norm(step)), label,
                        slice_uid(volume, slice_index))


def slice_uid(volume: Any, slice_index: int) -> str:
    """SOP Instance UID of the image shown as slice `slice_index` ('' when unknown)."""
    sources = list(getattr(volume, "sources", None) or [])
    return sources[slice_index].sop_instance_uid if 0 <= slice_index < len(sources) else ""


@dataclass(frozen=True)
class BoxEdit:
    """One undo item: the set's boxes and class labels before and after an edit."""

    description: str
    before: tuple[tuple[AnnotatedBox, ...], tuple[ClassLabel, ...]]
    after: tuple[tuple[AnnotatedBox, ...], tuple[ClassLabel, ...]]

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def undo(self, boxes: BoxSet) -> None:
        boxes._swap(self.after, self.before)

    def redo(self, boxes: BoxSet) -> None:
        boxes._swap(self.before, self.after)


class BoxSet:
    """The boxes and class labels of one series; every edit returns its BoxEdit."""

    def __init__(self, boxes: Iterable[AnnotatedBox] = (),
                 class_labels: Iterable[ClassLabel] = ()) -> None:
        self._boxes: tuple[AnnotatedBox, ...] = tuple(boxes)
        self._labels: tuple[ClassLabel, ...] = tuple(class_labels)
        if len({b.uid for b in self._boxes}) != len(self._boxes):
            raise AnnotationError(None, "Two boxes share one UID.")

    # --- reading ---------------------------------------------------------------------------
    @property
    def boxes(self) -> tuple[AnnotatedBox, ...]:
        return self._boxes

    @property
    def class_labels(self) -> tuple[ClassLabel, ...]:
        return self._labels

    def __len__(self) -> int:
        return len(self._boxes)

    def __iter__(self) -> Iterator[AnnotatedBox]:
        return iter(self._boxes)

    def get(self, uid: str) -> AnnotatedBox:
        for box in self._boxes:
            if box.uid == uid:
                return box
        raise KeyError(uid)

    def on_slice(self, slice_index: int) -> list[AnnotatedBox]:
        return [b for b in self._boxes if b.slice_index == slice_index]

    def class_of(self, slice_index: int | None = None) -> ClassLabel | None:
        """The class label of slice `slice_index`, or of the series when it is None."""
        target = (SERIES, None) if slice_index is None else (SLICE, slice_index)
        return next((c for c in self._labels if c.target == target), None)

    # --- editing ---------------------------------------------------------------------------
    def add(self, *boxes: AnnotatedBox, description: str = "add box") -> BoxEdit:
        """Add one box, or many as one undo step ('accept prediction')."""
        taken = {b.uid for b in self._boxes}
        if any(b.uid in taken for b in boxes) or len({b.uid for b in boxes}) != len(boxes):
            raise AnnotationError(None, "A box with this UID is already in the set.")
        return self._commit(description, self._boxes + tuple(boxes), self._labels)

    def move(self, uid: str, dx: float, dy: float) -> BoxEdit:
        b = self.get(uid)
        return self._replace(uid, "move box", x0=b.x0 + dx, y0=b.y0 + dy, x1=b.x1 + dx,
                             y1=b.y1 + dy)

    def resize(self, uid: str, x0: float, y0: float, x1: float, y1: float) -> BoxEdit:
        return self._replace(uid, "resize box", x0=x0, y0=y0, x1=x1, y1=y1)

    def relabel(self, uid: str, label: str) -> BoxEdit:
        return self._replace(uid, "relabel box", label=label)

    def accept(self, uid: str) -> BoxEdit:
        return self._replace(uid, "accept box", state=ACCEPTED)

    def reject(self, uid: str) -> BoxEdit:
        return self._replace(uid, "reject box", state=REJECTED)

    def delete(self, uid: str) -> BoxEdit:
        self.get(uid)
        kept = tuple(b for b in self._boxes if b.uid != uid)
        return self._commit("delete box", kept, self._labels)

    def accept_above(self, threshold: float, reject_rest: bool = False) -> BoxEdit:
        """Accept every proposed model box scoring >= threshold (and reject the others)."""
        def decide(b: AnnotatedBox) -> AnnotatedBox:
            if b.state != PROPOSED or b.score is None:
                return b
            if b.score >= threshold:
                return replace(b, state=ACCEPTED)
            return replace(b, state=REJECTED) if reject_rest else b
        return self._commit(f"accept boxes scoring >= {threshold:g}",
                            tuple(decide(b) for b in self._boxes), self._labels)

    def set_class(self, label: ClassLabel) -> BoxEdit:
        """Set or correct the class of a slice or the series (replacing the one it had)."""
        kept = tuple(c for c in self._labels if c.target != label.target)
        return self._commit(f"set {label.scope} class", self._boxes, (*kept, label))

    def clear_class(self, slice_index: int | None = None) -> BoxEdit:
        target = (SERIES, None) if slice_index is None else (SLICE, slice_index)
        kept = tuple(c for c in self._labels if c.target != target)
        return self._commit(f"clear {target[0]} class", self._boxes, kept)

    # --- internals -------------------------------------------------------------------------
    def _replace(self, uid: str, description: str, **changes: Any) -> BoxEdit:
        self.get(uid)
        boxes = tuple(replace(b, **changes) if b.uid == uid else b for b in self._boxes)
        return self._commit(description, boxes, self._labels)

    def _commit(self, description: str, boxes: tuple[AnnotatedBox, ...],
                labels: tuple[ClassLabel, ...]) -> BoxEdit:
        edit = BoxEdit(description, (self._boxes, self._labels), (boxes, labels))
        self._boxes, self._labels = boxes, labels
        return edit

    def _swap(self, expected: tuple, target: tuple) -> None:
        if (self._boxes, self._labels) != expected:
            raise AnnotationError(None, "This undo step does not follow the current boxes; "
                                  "undo the later edits first.")
        self._boxes, self._labels = target


def boxes_from_model(detections: Iterable[Any], volume: Any = None, *, source: str,
                     slice_index: int | None = None) -> BoxSet:
    """A BoxSet of 'proposed' boxes from a model's detections.

    Any object with x0, y0, x1, y1, label, score and slice_index works (the inference layer's
    Box, for one): core never imports the inference layer. `slice_index` overrides the
    detections' own (a model run on one slice). Degenerate boxes (no area) are dropped: a
    model can emit them and they cannot be drawn or saved.
    """
    out = []
    for d in detections:
        k = int(slice_index if slice_index is not None else getattr(d, "slice_index", 0))
        x0, y0, x1, y1 = (float(getattr(d, name)) for name in ("x0", "y0", "x1", "y1"))
        if not (x1 > x0 and y1 > y0) or not all(map(math.isfinite, (x0, y0, x1, y1))):
            continue
        score = getattr(d, "score", None)
        out.append(AnnotatedBox(x0, y0, x1, y1, k, str(d.label),
                                None if score is None else float(score), source, PROPOSED,
                                slice_uid(volume, k)))
    return BoxSet(out)
