"""Boxes, class labels, distance lines and area ROIs on a series, edited with undo
(numpy/pydicom only).

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

from medviewer.core.annotations.seg import AnnotationError

ANNOTATOR = "annotator"
PROPOSED, ACCEPTED, REJECTED = "proposed", "accepted", "rejected"
STATES = (PROPOSED, ACCEPTED, REJECTED)
SLICE, SERIES = "slice", "series"
RECT, ELLIPSE = "rect", "ellipse"
MM, PX = "mm", "px"  # a length's unit: px when the series gives no pixel size
MM2, PX2 = "mm2", "px2"  # an area's unit: px2 when the series gives no pixel size


def model_source(model_id: str, version: str) -> str:
    """The `source` of a box or label a model made: 'model:<id>@<version>'."""
    return f"model:{model_id}@{version}"


def _check_source(source: str) -> None:
    if source != ANNOTATOR and not (source.startswith("model:") and "@" in source):
        raise AnnotationError(None, f"Unknown source {source!r}: use 'annotator' or "
                              "'model:<id>@<version>'.")


def _new_uid() -> str:
    """A fresh DICOM UID; pydicom loads here, not with the viewer's first paint."""
    from pydicom.uid import generate_uid

    return generate_uid()


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
    uid: str = field(default_factory=_new_uid)  # stable identity; the SR tracking UID

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
    uid: str = field(default_factory=_new_uid)

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
    """A distance measured on slice `slice_index` between two pixel points (x, y).

    length_mm: the length in `unit`: mm, or px when the series gives no pixel size (the
    viewer then says px too; the SR writes UCUM {pixels})."""

    slice_index: int
    start: tuple[float, float]
    end: tuple[float, float]
    length_mm: float
    label: str = "distance"
    sop_instance_uid: str = ""
    uid: str = field(default_factory=_new_uid)
    unit: str = MM

    def __post_init__(self) -> None:
        if self.unit not in (MM, PX):
            raise AnnotationError(None, f"A length is in {MM!r} or {PX!r}, not {self.unit!r}.")


@dataclass(frozen=True)
class AreaMeasurement:
    """A rectangle or ellipse ROI on slice `slice_index` (as acquired) with its statistics.

    p0, p1: opposite corners of the rectangle (the ellipse's bounding box) in the slice's
    pixels, x = column, y = row, as DistanceLine's points; stored top-left / bottom-right.
    area: in mm2, or px2 when the series gives no pixel size (`area_unit` says which).
    mean, sd, minimum, maximum: of the pixels inside, in modality units (`units`, e.g. 'HU';
    '' when unknown); None for a colour image, which has no modality values.
    """

    slice_index: int
    kind: str  # RECT or ELLIPSE
    p0: tuple[float, float]
    p1: tuple[float, float]
    area: float
    area_unit: str = MM2
    mean: float | None = None
    sd: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    units: str = ""
    label: str = "area"
    sop_instance_uid: str = ""
    uid: str = field(default_factory=_new_uid)  # stable identity; the SR tracking UID

    def __post_init__(self) -> None:
        (xa, xb), (ya, yb) = sorted((self.p0[0], self.p1[0])), sorted((self.p0[1], self.p1[1]))
        object.__setattr__(self, "p0", (float(xa), float(ya)))
        object.__setattr__(self, "p1", (float(xb), float(yb)))
        if self.kind not in (RECT, ELLIPSE):
            raise AnnotationError(None, f"An area ROI is a {RECT!r} or an {ELLIPSE!r}, not "
                                  f"{self.kind!r}.")
        if not (xb > xa and yb > ya and all(map(math.isfinite, (xa, ya, xb, yb)))):
            raise AnnotationError(None, f"An area ROI needs two corners apart in x and y, got "
                                  f"{self.p0} and {self.p1}.")
        if self.area_unit not in (MM2, PX2):
            raise AnnotationError(None, f"An area is in {MM2!r} or {PX2!r}, not "
                                  f"{self.area_unit!r}.")
        values = (self.area, self.mean, self.sd, self.minimum, self.maximum)
        if not all(v is None or math.isfinite(v) for v in values) or self.area is None:
            raise AnnotationError(None, "An area ROI's area and statistics must be numbers "
                                  "(None for the statistics of a colour image).")
        if not self.label:
            raise AnnotationError(None, "An area ROI needs a label.")

    @property
    def corners(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1), top-left and bottom-right."""
        return (*self.p0, *self.p1)


def area_from_dict(item: dict[str, Any]) -> AreaMeasurement:
    """An AreaMeasurement from its asdict() as JSON gave it back (corners as lists)."""
    (x0, y0), (x1, y1) = item["p0"], item["p1"]
    return AreaMeasurement(**{**item, "p0": (float(x0), float(y0)),
                              "p1": (float(x1), float(y1))})


def area_measurement(volume: Any, slice_index: int, kind: str, p0: Sequence[float],
                     p1: Sequence[float], label: str = "area") -> AreaMeasurement:
    """An AreaMeasurement whose statistics come from the volume's voxels on that slice (time
    point 0): the pixels whose centres lie inside, as the viewer's ROI readout counts them."""
    import numpy as np

    from medviewer.core import geometry

    image = _slice_image(volume, slice_index)
    affine = np.asarray(volume.affine, float)
    known = getattr(volume, "spacing_known", True)  # else the area counts pixels (px2)
    spacing = (float(np.linalg.norm(affine[:3, 1])), float(np.linalg.norm(affine[:3, 0]))) \
        if known else (1.0, 1.0)
    mask = geometry.shape_mask(image.shape[:2], p0[0], p0[1], p1[0], p1[1],
                               ellipse=kind == ELLIPSE)
    stats = geometry.roi_stats(image if image.ndim == 2 else image[..., 0], mask, spacing)
    values = {name: stats[key] if image.ndim == 2 and stats["n"] else None
              for name, key in (("mean", "mean"), ("sd", "sd"), ("minimum", "min"),
                                ("maximum", "max"))}
    return AreaMeasurement(slice_index, kind, (float(p0[0]), float(p0[1])),
                           (float(p1[0]), float(p1[1])), stats["area_mm2"],
                           MM2 if known else PX2, **values,
                           units="HU" if getattr(volume, "modality", "") == "CT" else "",
                           label=label, sop_instance_uid=slice_uid(volume, slice_index))


def _slice_image(volume: Any, k: int) -> Any:
    """Slice k of time point 0: (rows, columns), or (rows, columns, 3) for colour."""
    voxels = volume.voxels
    colour = bool(getattr(volume, "is_colour", False))
    if voxels.ndim - colour == 2:
        return voxels
    return voxels[0, k] if voxels.ndim - colour == 4 else voxels[k]


def distance_line(volume: Any, slice_index: int, start: Sequence[float], end: Sequence[float],
                  label: str = "distance") -> DistanceLine:
    """A DistanceLine whose length comes from the volume's pixel spacing (its affine), in
    pixels when the series gives no pixel size."""
    import numpy as np

    affine = np.asarray(volume.affine, float)
    known = getattr(volume, "spacing_known", True)
    if not known:  # the affine's unit step is then a pixel, or a zero from a 0\0 header
        affine = np.eye(4)
    step = affine[:3, 0] * (end[0] - start[0]) + affine[:3, 1] * (end[1] - start[1])
    return DistanceLine(slice_index, (float(start[0]), float(start[1])),
                        (float(end[0]), float(end[1])), float(np.linalg.norm(step)), label,
                        slice_uid(volume, slice_index), unit=MM if known else PX)


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


def classes_from_model(result: Any, volume: Any = None) -> list[ClassLabel]:
    """A classifier's answer as class labels: a series-level verdict (no slice rows) becomes
    the series class, per-slice scores the classes of the slices it ran on. `result` is any
    object with scores, slice_indices, predicted(row), model_id and model_version (the
    inference layer's Result, for one)."""
    if getattr(result, "scores", None) is None:
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
