"""A result's measurements (lab 5's cardiothoracic ratio) for the reader: the AI dock's line
(value, verdict, how it was measured) and the segments measured, placed on a view's plane for
the AI layer to draw. No Qt."""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

from medviewer.core.geometry import PlaneView
from medviewer.inference.results import Result


def measurements_html(result: Result | None, slice_number: Callable[[int], int]) -> str:
    """One line per measurement: "<b>Cardiothoracic ratio 0.62</b>: PA film: suggests
    cardiomegaly (> 0.50)", with its slice when the result covers several."""
    if result is None:
        return ""
    several = len({m.slice_index for m in result.measurements}) > 1
    lines = []
    for m in result.measurements:
        where = f"Slice {slice_number(m.slice_index)}: " if several else ""
        value = f"{m.value:.2f}" if m.unit == "ratio" else f"{m.value:.4g} {m.unit}"
        lines.append(f"{where}<b>{escape(m.name)} {value}</b>"
                     + (f": {escape(m.verdict)}" if m.verdict else ""))
    return "<br>".join(lines)


def measurements_tooltip(result: Result | None) -> str:
    """How each measurement was made (the method sentences, once each)."""
    if result is None:
        return ""
    return "\n".join(dict.fromkeys(m.method for m in result.measurements if m.method))


Segment = tuple[tuple[float, float], tuple[float, float]]


def lines_on_plane(document: Any, name: str, k: int) -> list[Segment]:
    """The segments the shown result's measurements were taken along, on image k of plane
    `name`, in that image's pixels (flipped as the plane is); only on planes cut along the
    acquired slices, as the boxes are."""
    result, plane = document.ai_result, document.plane(name)
    if result is None or not result.measurements or not isinstance(plane, PlaneView):
        return []
    if tuple(plane.axes) != (0, 1, 2):
        return []
    slice_index = plane.to_voxel(k, 0, 0)[2]
    _, rows, cols = plane.shape

    def flip(x: float, y: float) -> tuple[float, float]:
        return (cols - x if plane.flips[1] else x, rows - y if plane.flips[0] else y)

    return [(flip(*start), flip(*end)) for m in result.measurements
            if m.slice_index == slice_index for start, end in m.lines]
