"""The AI dock's model comparison: lab 4's segmenters on one series, one row per model.

`AiController.compare_segmenters()` runs every lab 4 segmentation model on the whole series
(the same worker and AiOutput "compare" scope as lab 3's fusion methods); this table shows,
per model, each label's volume and, when the series has a mask of its own (the annotation),
each label's Dice against it, every other score in the cell's tooltip. One overlay at a time:
choosing a row emits `sigResultChosen(row)`, and the document draws that model's label map.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QGroupBox,
    QLabel,
    QTableWidgetItem,
    QVBoxLayout,
)

from medviewer.inference.metrics import overall_text, table_header, table_rows
from medviewer.ui.ai.tables import results_table

NOTE = "Choose a model to draw its overlay (one at a time)."


def is_segmenter_comparison(output: Any) -> bool:
    """An AiOutput comparing label maps (lab 4), not verdicts (lab 3)."""
    return (output is not None and output.scope == "compare"
            and all(r.label_map is not None for r in output.results))


def short_title(title: str) -> str:
    """'Chest CT labels (U-Net, lab 4 demo)' -> 'U-Net': the network, what the rows differ by."""
    if "(" not in title:
        return title
    return title[title.index("(") + 1:].split(",")[0].rstrip(")").strip() or title


def _volume(stats: tuple[dict, ...], name: str) -> str:
    found = next((s for s in stats if s.get("name") == name), None)
    if found is None:
        return "0"
    ml = found.get("volume_ml")
    return f"{found.get('voxels', 0)} vx" if ml is None else f"{ml:.1f}"


def _label_tip(title: str, name: str, report: dict[str, Any]) -> str:
    """Every score of one label of one model, with units and tolerance."""
    scores = report.get("labels", {}).get(name) if report else None
    if scores is None:
        return f"{title}: {name}"
    heads = table_header(report["unit"], report["tolerance"])[1:]
    cells = table_rows({name: scores})[0][1:]
    return f"{title}: {name} against the mask\n" + "\n".join(
        f"{h}: {c}" for h, c in zip(heads, cells, strict=True))


class ModelComparison(QGroupBox):
    """'Segmentation models compared': the table and the models that could not run."""

    sigResultChosen = Signal(int)  # the row (= index of the result) to draw

    def __init__(self) -> None:
        super().__init__("Segmentation models compared")
        self.table = results_table(["Model"], single=True)
        self.table.setObjectName("modelComparison")
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.note = QLabel(NOTE)
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(self.note)
        self._filling = False

    def show_output(self, output: Any) -> None:
        """Shown for a comparison of segmenters (filled from `output`), hidden otherwise."""
        self.setVisible(is_segmenter_comparison(output))
        if self.isHidden():
            return
        self._filling = True
        try:
            self._fill(output)
        finally:
            self._filling = False

    def _fill(self, output: Any) -> None:
        labels = list(dict.fromkeys(n for r in output.results for n in r.labels[1:]))
        scores = output.scores_by_result or tuple({} for _ in output.results)
        scored = any(scores)
        suffix = " (mL · Dice)" if scored else " (mL)"
        table = self.table
        table.setColumnCount(1 + len(labels))
        table.setHorizontalHeaderLabels(["Model"] + [n + suffix for n in labels])
        table.setRowCount(len(output.results))
        for row, result in enumerate(output.results):
            title = result.title or result.model_id
            model = QTableWidgetItem(short_title(title))
            report = scores[row] if row < len(scores) else {}
            overall = f"\n{overall_text(report['overall'])}" if report else ""
            model.setToolTip(f"{title} ({result.model_id} {result.model_version}){overall}")
            table.setItem(row, 0, model)
            stats = output.stats_by_result[row] if row < len(output.stats_by_result) else ()
            for col, name in enumerate(labels, start=1):
                text = _volume(stats, name) if name in result.labels else "\u2013"
                dice = report.get("labels", {}).get(name, {}).get("dice") if report else None
                if dice is not None:
                    text += f" · {dice:.3f}"
                item = QTableWidgetItem(text)
                item.setToolTip(_label_tip(title, name, report))
                table.setItem(row, col, item)
        table.selectRow(output.shown)
        rows = min(table.rowCount(), 6)
        table.setFixedHeight(table.horizontalHeader().sizeHint().height() + 2 * table.frameWidth()
                             + sum(table.rowHeight(r) for r in range(rows))
                             + table.horizontalScrollBar().sizeHint().height())
        failures = "<br>".join(f"Could not run {f}" for f in output.failures)
        self.note.setText(f"{NOTE}<br>{failures}" if failures else NOTE)

    def _on_selection(self) -> None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        if not self._filling and len(rows) == 1:
            self.sigResultChosen.emit(rows.pop())

    def choose(self, row: int) -> None:
        """What a click on a row does (for tests and scripts)."""
        self.table.selectRow(row)
