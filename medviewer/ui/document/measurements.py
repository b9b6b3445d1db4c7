"""The reader's measurements (rulers, rectangle and ellipse ROIs) as state of the open study.

A measurement belongs to one image of one plane of one series: `Measure` holds the plane
('stack' = the series as acquired, or an MPR plane), the image index in that plane and two
points in that image's pixels (x = column, y = row, pixel edges at integers). The document
keeps every series' measurements for the session (`MeasurementState`, a mixin of
`StudyDocument`), so they survive switching series; the views draw them, the Measurements
panel lists them, the Annotate feature saves those on the stack view in the SR.
`measure_values` is the one place their numbers come from (distance in mm, or mean / SD / min
/ max in modality units and area in mm²), so the label on the image, the panel and the SR
say the same. Edits announce `sigMeasurementsChanged(uid)` (None: the whole list changed).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from medviewer.core import geometry

KINDS = ("distance", "rect", "ellipse")
KIND_NAMES = {"distance": "Distance", "rect": "Rect ROI", "ellipse": "Ellipse ROI"}
Point = tuple[float, float]


@dataclass(frozen=True)
class Measure:
    """One ruler or area ROI: `kind` between `p0` and `p1` on image `k` of `plane`."""

    kind: str
    plane: str
    k: int
    p0: Point
    p1: Point
    uid: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown measurement {self.kind!r}; expected one of {KINDS}")
        if not self.uid:
            from pydicom.uid import generate_uid  # on first use, not at start-up

            object.__setattr__(self, "uid", generate_uid())  # the SR's tracking UID


def measure_values(doc: Any, m: Measure) -> dict[str, float]:
    """A distance: {'length': mm}. An area: {'n', 'area'} and, for grey images, 'mean', 'sd',
    'min', 'max' over its pixels of the image the plane shows (a thick slab's projection when
    one is on). Lengths and areas are in pixels when the image has no pixel size."""
    plane = doc.plane(m.plane)
    spacing = plane.spacing
    if m.kind == "distance":
        return {"length": geometry.distance_mm(m.p0, m.p1, spacing)}
    frame = doc.frame(m.plane, m.k) if 0 <= m.k < plane.count else None
    if frame is None:
        return {}
    mask = geometry.shape_mask(frame.shape[:2], *m.p0, *m.p1, ellipse=m.kind == "ellipse")
    stats = geometry.roi_stats(frame if frame.ndim == 2 else frame[..., 0], mask, spacing)
    values = {"n": stats["n"], "area": stats["area_mm2"]}
    if frame.ndim == 2:  # colour has no modality values; its area still means something
        values.update({key: stats[key] for key in ("mean", "sd", "min", "max") if key in stats})
    return values


def measure_text(doc: Any, m: Measure, values: dict[str, float] | None = None) -> str:
    """What the label on the image and the panel say."""
    values = measure_values(doc, m) if values is None else values
    in_mm = doc.volume is None or doc.volume.spacing_known
    if m.kind == "distance":
        return f"{values['length']:.1f} {'mm' if in_mm else 'px'}"
    if not values or not values["n"]:
        return "no pixels"
    area = f"area {values['area']:.1f} {'mm²' if in_mm else 'px²'}"
    if "mean" not in values:
        return area
    return (f"mean {values['mean']:.1f} {doc.units}  SD {values['sd']:.1f}\n"
            f"min {values['min']:.0f}  max {values['max']:.0f}\n{area}")


class MeasurementState:
    """The measurement part of a document: every series' measurements, by series."""

    def _init_measurements(self) -> None:
        self._measures: dict[object, list[Measure]] = {}

    def _measures_key(self, volume: Any = None) -> object:
        series = getattr(volume, "series", None) if volume is not None else \
            getattr(self, "series", None)
        if series is not None:
            return series.key
        return id(volume if volume is not None else getattr(self, "volume", None))

    @property
    def measurements(self) -> list[Measure]:
        """The open series' measurements, oldest first (a copy)."""
        return list(self._measures.get(self._measures_key(), ()))

    def measurements_of(self, volume: Any) -> list[Measure]:
        """The measurements of `volume`'s series, shown or not (a copy)."""
        return list(self._measures.get(self._measures_key(volume), ()))

    def measurements_known(self) -> bool:
        """Whether this session has the open series' measurements (drawn, or read back)."""
        return self._measures_key() in self._measures

    def measurement(self, uid: str) -> Measure | None:
        return next((m for m in self._measures.get(self._measures_key(), ()) if m.uid == uid),
                    None)

    def add_measurement(self, m: Measure) -> Measure:
        self._measures.setdefault(self._measures_key(), []).append(m)
        self._measure_edited(m)
        return m

    def move_measurement(self, uid: str, p0: Point, p1: Point) -> Measure | None:
        """New points for a measurement (a drag of its handles or body ended)."""
        items = self._measures.get(self._measures_key(), [])
        for i, m in enumerate(items):
            if m.uid == uid:
                if (m.p0, m.p1) == (p0, p1):
                    return m
                items[i] = replace(m, p0=tuple(p0), p1=tuple(p1))
                self._measure_edited(items[i])
                return items[i]
        return None

    def remove_measurement(self, uid: str) -> Measure | None:
        items = self._measures.get(self._measures_key(), [])
        gone = next((m for m in items if m.uid == uid), None)
        if gone is not None:
            items.remove(gone)
            self._measure_edited(gone)
        return gone

    def set_measurements(self, measures: list[Measure]) -> None:
        """The open series' measurements as read back (saved or recovered): not an edit."""
        self._measures[self._measures_key()] = list(measures)
        self.sigMeasurementsChanged.emit(None)

    def _measure_edited(self, m: Measure) -> None:
        """The reader drew, moved or deleted `m`. One on the stack view is saved in the SR
        with the annotations, so it is an edit of them (unsaved, autosaved, asked about on
        close) where the series can carry them."""
        if m.plane == "stack" and self.can_annotate() is None:
            self.mark_edited()
        self.sigMeasurementsChanged.emit(m.uid)
