"""The document's stack-view measurements as the SR's distance lines and area ROIs, and back.

Only measurements on the stack view (the series as acquired) are saved: each lies on one
source image, which the SR references. Points go from the stack plane's pixels to the slice's
own (`boxes.plane_to_slice`: the plane may show the slice flipped); an area's statistics are
those of the stored slice's pixels (`core.annotations.area_measurement`), whatever slab or
window is on screen. The SR's tracking UID is the measurement's uid, so a saved ruler read
back is the same ruler. No Qt.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from medviewer.core.annotations import (
    AnnotationError,
    AreaMeasurement,
    DistanceLine,
    area_measurement,
    distance_line,
)
from medviewer.ui.annotate.boxes import plane_to_slice, slice_to_plane
from medviewer.ui.document.measurements import Measure
from medviewer.ui.document.study import STACK, stack_plane

Saved = DistanceLine | AreaMeasurement


def saved_measurements(volume: Any, measures: Iterable[Measure]
                       ) -> tuple[list[DistanceLine], list[AreaMeasurement]]:
    """A series' stack-view rulers and ROIs as the SR holds them (`volume` is the series',
    which need not be the one on screen: leaving a series autosaves it)."""
    lines: list[DistanceLine] = []
    areas: list[AreaMeasurement] = []
    plane = stack_plane(volume)
    for m in measures:
        if m.plane != STACK:
            continue
        k = int(plane.to_voxel(m.k, 0, 0)[2])
        p0, p1 = plane_to_slice(plane, *m.p0), plane_to_slice(plane, *m.p1)
        if m.kind == "distance":
            lines.append(replace(distance_line(volume, k, p0, p1), uid=m.uid))
        elif (area := _area(volume, m, k, p0, p1)) is not None:
            areas.append(area)
    return lines, areas


def _area(volume: Any, m: Measure, k: int, p0: tuple[float, float],
          p1: tuple[float, float]) -> AreaMeasurement | None:
    """An area ROI with the statistics of slice k's own pixels (None: a shape too thin to
    hold any, which the SR cannot describe)."""
    try:
        return replace(area_measurement(volume, k, m.kind, p0, p1), uid=m.uid)
    except AnnotationError:
        return None


def document_measurements(volume: Any, saved: Iterable[Saved]) -> list[Measure]:
    """Saved (or autosaved) lines and ROIs as measurements on the stack view."""
    plane, out = stack_plane(volume), []
    for item in saved:
        k = int(plane.from_voxel(0, 0, item.slice_index)[0])
        if isinstance(item, DistanceLine):
            kind, a, b = "distance", item.start, item.end
        else:
            kind, a, b = item.kind, item.p0, item.p1
        out.append(Measure(kind, STACK, k, slice_to_plane(plane, *a),
                           slice_to_plane(plane, *b), item.uid))
    return out
