"""The AI dock's line for a result's measurements (lab 5's cardiothoracic ratio): value,
verdict and how it was measured, for the reader to report from. No Qt."""

from __future__ import annotations

from collections.abc import Callable
from html import escape

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
