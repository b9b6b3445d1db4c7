"""What compare.json says, without Qt: the metrics table's rows, the per-label cells, the
verdict sentence (`medviewer.ui.training.compare` draws them)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medviewer.training.metrics import comparison_text, lower_is_better, paired_comparison
from medviewer.training.segmentation_metrics import (
    headline_metrics,
    metric_heading,
    per_label_table,
)

SIDES = ("current", "candidate")
TIE = 1e-9  # equal to this: neither side is highlighted


@dataclass(frozen=True)
class MetricRow:
    """One line of the table: a metric, both values (None: not measured), whose is better:
    higher, or lower for a distance (in bold: an average, no verdict; the verdict is the
    paired comparison's)."""

    name: str
    current: float | None
    candidate: float | None
    better: str  # "current" | "candidate" | "" (tie or not comparable)


def load_compare(path: str | Path) -> dict[str, Any]:
    """compare.json as a dict; OSError / ValueError for a missing or broken file."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "candidate" not in data:
        raise ValueError(f"{path}: not a comparison file (no 'candidate')")
    return data


def _value(side: dict[str, Any] | None, name: str) -> float | None:
    value = ((side or {}).get("metrics") or {}).get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def _is_count(name: str) -> bool:
    """'n', 'n_cases': how many were scored, context rather than a score to compare."""
    return name == "n" or name.startswith("n_")


def split_text(compare: dict[str, Any]) -> str:
    """'10 validation cases (300 samples)' from compare.json's split summary ('' if none)."""
    split = compare.get("split") or {}
    cases, samples = split.get("validation_cases"), split.get("validation_samples")
    if cases is None:
        return ""
    extra = f" ({samples} samples)" if samples not in (None, cases) else ""
    return f"{cases} validation cases{extra}"


def metric_rows(compare: dict[str, Any]) -> list[MetricRow]:
    """Every numeric metric either side has (per-label ones aside: `label_cells`), the main
    metric first, the rest by name."""
    names: set[str] = set()
    for side in SIDES:
        names |= {k for k in headline_metrics((compare.get(side) or {}).get("metrics") or {})
                  if _value(compare.get(side), k) is not None and not _is_count(k)}
    main = str(compare.get("main_metric", ""))
    ordered = ([main] if main in names else []) + sorted(names - {main})
    rows = []
    for name in ordered:
        old, new = _value(compare.get("current"), name), _value(compare.get("candidate"), name)
        rows.append(MetricRow(name, old, new, _better(name, old, new)))
    return rows


def _better(name: str, old: float | None, new: float | None) -> str:
    if old is None or new is None or abs(new - old) <= TIE:
        return ""
    return "candidate" if (new < old if lower_is_better(name) else new > old) else "current"


def label_cells(metrics: dict[str, Any], other: dict[str, Any] | None = None
                ) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """(headings, rows of (text, bold)) of a segmentation's per-label scores: labels as rows,
    metrics as columns with their units. With `other` (the candidate's metrics, `metrics`
    the current's) each cell reads 'current -> candidate', bold where the candidate is
    better. ([], []) when neither has per-label scores."""
    keys, table = per_label_table(metrics)
    new_keys, new_table = per_label_table(other or {})
    keys = [k for k in dict.fromkeys(keys + new_keys)]
    labels = list(dict.fromkeys([*table, *new_table]))
    if not labels:
        return [], []
    headings = ["Label"] + [metric_heading(k, {**metrics, **(other or {})}) for k in keys]

    def text(value: Any) -> str:
        return "\u2014" if not isinstance(value, int | float) or value != value else f"{value:.4f}"

    rows = []
    for label in labels:
        row = [(label, False)]
        for k in keys:
            old = (table.get(label) or {}).get(k)
            if other is None:
                row.append((text(old), False))
                continue
            new = (new_table.get(label) or {}).get(k)
            pair = [v if isinstance(v, int | float) and v == v else None for v in (old, new)]
            row.append((f"{text(old)} \u2192 {text(new)}",
                        _better(k, *pair) == "candidate"))
        rows.append(row)
    return headings, rows


def paired_of(compare: dict[str, Any]) -> dict[str, Any]:
    """compare.json's paired comparison (computed from both sides' per-case scores for a
    file written before it was recorded)."""
    paired = compare.get("paired")
    if isinstance(paired, dict) and "verdict" in paired:
        return paired
    return paired_comparison((compare.get("current") or {}).get("per_case"),
                             (compare.get("candidate") or {}).get("per_case"))


def verdict_text(compare: dict[str, Any]) -> str:
    """The sentence above the tables: verdict, interval, cases, and what was compared."""
    paired = paired_of(compare)
    what = str(paired.get("per_case_score") or "the per-case score")
    where = split_text(compare) or "the same validation split"
    return (f"{comparison_text(paired, what)} Both versions were run through ONNX Runtime on "
            f"{where}; the table below lists the averages, the per-case table the evidence.")


def version_text(compare: dict[str, Any], side: str) -> str:
    version = (compare.get(side) or {}).get("version")
    title = "Current" if side == "current" else "Candidate"
    return f"{title} {version}" if version else f"{title} (none)"
