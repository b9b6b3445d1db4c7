"""How a segmentation's agreement with a mask reads in the AI panel: one compact table, the
metrics as columns and the labels as rows, units and the boundary tolerance in the headings,
the overall scores in a small table below it; what the less familiar columns mean is the
label's tooltip."""

from __future__ import annotations

from html import escape
from typing import Any

from medviewer.inference.metrics import OVERALL, table_header, table_rows


def _row(cells: list[str], tag: str = "td") -> str:
    return "<tr>" + "".join(f"<{tag} align={'left' if i == 0 else 'right'}>{escape(c)}&nbsp;"
                            f"</{tag}>" for i, c in enumerate(cells)) + "</tr>"


def agreement_html(report: dict[str, Any]) -> str:
    """Rich text for a QLabel from `medviewer.inference.metrics.against_mask`'s report."""
    head = _row(table_header(report["unit"], report["tolerance"]), "th")
    rows = "".join(_row(r) for r in table_rows(report["labels"]))
    overall = "".join(_row([name[0].upper() + name[1:], f"{report['overall'][key]:.3f}"])
                      for key, name in OVERALL)
    return (f"<b>Against the mask</b><table cellspacing=2>{head}{rows}</table>"
            f"<table cellspacing=2>{overall}</table><small>(background included)</small>")


def agreement_tooltip(report: dict[str, Any]) -> str:
    """What BF1 and HD95 measure, in the report's unit and tolerance."""
    unit, tolerance = report["unit"], report["tolerance"]
    where = "\nNo patient geometry: distances are in pixels." if unit == "px" else ""
    return (f"Precision: share of the model's voxels the mask also labels; recall: share of "
            f"the mask's voxels the model found.\nBF1 (boundary F1): share of outline points "
            f"within {tolerance:g} {unit} of the other outline, both ways, as an F1.\n"
            f"HD95: 95th-percentile distance between the outlines (3D over the series); n/a "
            f"when the model or the mask has none of the label.{where}")
