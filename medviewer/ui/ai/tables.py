"""The AI dock's read-only tables: rows selected whole, columns as wide as their contents (a
dock is narrow: headers and texts are short), the last one taking what is left."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget


def results_table(headers: Sequence[str], *, single: bool = False) -> QTableWidget:
    """A read-only table of `headers`; `single`: one row at a time can be chosen."""
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(list(headers))
    table.verticalHeader().hide()
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    if single:
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setMinimumSectionSize(24)
    header.setStretchLastSection(True)
    return table


def fit_rows(table: QTableWidget, most: int = 6) -> None:
    """As tall as its rows (up to `most`, then it scrolls): no empty grid under two rows."""
    rows = min(table.rowCount(), most)
    height = table.horizontalHeader().sizeHint().height() + 2 * table.frameWidth() + sum(
        table.rowHeight(r) for r in range(rows))
    table.setFixedHeight(height + table.horizontalScrollBar().sizeHint().height())
