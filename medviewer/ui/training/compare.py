"""What a retraining run shows: live progress while it trains, both versions at the end.

`ProgressView`: progress bar with ETA, the loss curves (per step and per epoch, validation)
and the main metric per epoch, and the log; it draws a `training_process.RunHistory`.
`CompareView` reads the run's compare.json (both versions evaluated through ONNX Runtime on the same
validation split): a table of metrics, main metric first, the higher value of each row
marked; a segmentation's per-label scores in a table of their own (labels as rows, metrics
as columns: current -> candidate); ROC curves of both when the task has them, else the score
of every validation case as points; and the two confusion matrices where the task has one.
Every metric in compare.json is higher-is-better except the HD95 distances
(`training.metrics.lower_is_better`). `ProgressView` shows the latest epoch's per-label
scores the same way.

The verdict is never read off two averages: it is the paired comparison of the cases both
versions scored (`training.metrics.paired_comparison`: per-case differences, a seeded paired
bootstrap 95% interval of their mean, no verdict below MIN_PAIRED_CASES cases), shown with
its per-case table. A higher average inside the interval is "no clear difference".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medviewer.training.metrics import lower_is_better
from medviewer.training.segmentation_metrics import metric_heading
from medviewer.ui.training.compare_data import (  # noqa: F401 - load_compare: the dialog's
    SIDES,
    MetricRow,
    label_cells,
    load_compare,
    metric_rows,
    paired_of,
    verdict_text,
    version_text,
)

if TYPE_CHECKING:
    from medviewer.ui.training.process import RunHistory

CURVE_PENS = {"steps": "#5b6b7f", "train": "#4aa3ff", "val": "#f5a623", "metric": "#7ed957"}
COLOURS = {"current": "#9aa0a6", "candidate": "#4aa3ff"}


class ProgressView(QWidget):
    """Progress bar and ETA, loss and metric curves, log: a running job as it reports."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setFormat("%p%")
        self.eta_label = QLabel("")
        self.eta_label.setObjectName("retrainEta")
        self.eta_label.setMinimumWidth(170)  # a longer ETA text must not re-lay the page out
        self._metric_name = ""
        self.loss_plot = _plot("Loss", "epoch", "loss")
        self.metric_plot = _plot("Validation metric", "epoch", "")
        self.curves = {"steps": self.loss_plot.plot(pen=pg.mkPen(CURVE_PENS["steps"]),
                                                    name="train (steps)"),
                       "train": _points(self.loss_plot, "train", "train (epoch)"),
                       "val": _points(self.loss_plot, "val", "validation"),
                       "metric": _points(self.metric_plot, "metric", "main metric")}
        self.epoch_label = QLabel("")  # the latest epoch's per-label scores, when it has them
        self.epoch_table = _table()
        self.epoch_table.setObjectName("epochLabelScores")
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        top, plots, layout = QHBoxLayout(), QHBoxLayout(), QVBoxLayout(self)
        top.addWidget(self.progress_bar, 1)
        top.addWidget(self.eta_label)
        plots.addWidget(self.loss_plot)
        plots.addWidget(self.metric_plot)
        layout.addLayout(top)
        layout.addLayout(plots, 3)
        layout.addWidget(self.epoch_label)
        layout.addWidget(self.epoch_table, 2)
        layout.addWidget(self.log_view, 2)
        self._show_epoch({}, 0)

    def reset(self) -> None:
        self._metric_name = ""
        self._show_epoch({}, 0)
        self.log_view.clear()
        for curve in self.curves.values():
            curve.setData([], [])
        self.progress_bar.setValue(0)
        self.eta_label.setText("")

    def show_history(self, history: RunHistory, curves: bool = True) -> None:
        """Progress and ETA; the curves too when `curves` (a step or epoch came in)."""
        from medviewer.ui.training.process import format_eta

        self.progress_bar.setValue(int(round(history.progress * 1000)))
        self.eta_label.setText(format_eta(history.eta_s))
        if not curves:
            return
        for key, points in (("steps", history.step_loss), ("train", history.train_loss),
                            ("val", history.val_loss), ("metric", history.metric)):
            if len(points) != len(self.curves[key].xData if self.curves[key].xData is not None
                                  else ()):  # redraw only what changed: each costs ms
                self.curves[key].setData([p[0] for p in points], [p[1] for p in points])
        if history.main_metric and history.main_metric != self._metric_name:
            self._metric_name = history.main_metric  # a new label re-lays the plot out
            self.metric_plot.getPlotItem().setLabel("left", history.main_metric)
        self._show_epoch(history.metrics, len(history.val_loss) or len(history.metric))

    def _show_epoch(self, metrics: dict[str, Any], epoch: int) -> None:
        """Labels as rows, metrics as columns, the overall scores above (segmentation)."""
        headings, rows = label_cells(metrics)
        _fill(self.epoch_table, headings, rows)
        overall = ", ".join(f"{_lower_first(metric_heading(k))} {metrics[k]:.4f}"
                            for k in ("pixel_accuracy", "mean_pixel_accuracy", "mean_iou")
                            if isinstance(metrics.get(k), int | float))
        self.epoch_label.setText(f"Validation after epoch {epoch}, per label"
                                 + (f" (overall: {overall})" if overall else ""))
        for widget in (self.epoch_label, self.epoch_table):
            widget.setVisible(bool(rows))


class CompareView(QWidget):
    """Metrics table, ROC / per-case plot and confusion matrices of one compare.json."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.compare: dict[str, Any] = {}
        self.verdict = QLabel("")
        self.verdict.setObjectName("compareVerdict")
        self.verdict.setWordWrap(True)
        self.table = _table()
        self.labels_title = QLabel("")
        self.labels_table = _table()
        self.labels_table.setObjectName("perLabelScores")
        self.cases_table = _table()
        self.cases_table.setObjectName("perCaseDifferences")
        self.plot = pg.PlotWidget()
        _plain_numbers(self.plot)
        self.plot.setMinimumHeight(180)
        self.plot.addLegend(offset=(-10, 10))
        self.confusion_box = QGroupBox("Confusion matrices (rows: truth, columns: predicted)")
        self.confusion_tables = {side: _table(compact=True) for side in SIDES}
        boxes = QHBoxLayout(self.confusion_box)
        for side in SIDES:
            column = QVBoxLayout()
            column.addWidget(QLabel(side.capitalize()))
            column.addWidget(self.confusion_tables[side])
            boxes.addLayout(column)
        layout = QVBoxLayout(self)
        layout.addWidget(self.verdict)
        layout.addWidget(self.table, 2)
        layout.addWidget(self.labels_title)
        layout.addWidget(self.labels_table, 2)
        layout.addWidget(self.cases_table, 2)
        layout.addWidget(self.plot, 3)
        layout.addWidget(self.confusion_box, 4)

    def reset(self) -> None:
        """Nothing compared (a new run starts, or the versions it compared changed)."""
        self.compare = {}
        self.verdict.setText("")
        for table in (self.table, self.labels_table, self.cases_table,
                      *self.confusion_tables.values()):
            table.clear()
            table.setRowCount(0)
        self.plot.clear()
        self.confusion_box.setVisible(False)

    def show_compare(self, compare: dict[str, Any]) -> None:
        self.compare = compare
        self.verdict.setText(verdict_text(compare))
        self._fill_table(metric_rows(compare))
        headings, rows = label_cells(*(((compare.get(side) or {}).get("metrics") or {})
                                       for side in SIDES))
        _fill(self.labels_table, headings, rows)
        self.labels_title.setText(f"Per label: {version_text(compare, 'current')} \u2192 "
                                  f"{version_text(compare, 'candidate')} (bold: the candidate "
                                  "is better)")
        for widget in (self.labels_title, self.labels_table):
            widget.setVisible(bool(rows))
        self._fill_cases(paired_of(compare))
        self._fill_plot(compare)
        self._fill_confusion(compare)

    def _fill_table(self, rows: list[MetricRow]) -> None:
        self.table.clear()
        self.table.setColumnCount(3)
        self.table.setRowCount(len(rows))
        self.table.setHorizontalHeaderLabels(
            ["Metric", version_text(self.compare, "current"),
             version_text(self.compare, "candidate")])
        for r, row in enumerate(rows):
            self.table.setItem(r, 0, _item(row.name + (" (main)" if r == 0 else ""), r == 0))
            for c, side in enumerate(SIDES, start=1):
                value = getattr(row, side)
                item = _item("\u2014" if value is None else f"{value:.4f}", row.better == side)
                if row.better == side:
                    lower = lower_is_better(row.name)
                    item.setToolTip(("the lower average (a distance: lower is better)" if lower
                                     else "the higher average") + "; whether the difference "
                                    "is real is what the paired interval above says")
                self.table.setItem(r, c, item)

    def _fill_cases(self, paired: dict[str, Any]) -> None:
        """Case | current | candidate | difference: what the verdict rests on."""
        table = self.cases_table
        table.clear()
        table.setColumnCount(4)
        table.setHorizontalHeaderLabels(["Validation case", version_text(self.compare, "current"),
                                         version_text(self.compare, "candidate"),
                                         "Difference"])
        cases = paired.get("cases") or []
        table.setRowCount(len(cases))
        for r, case in enumerate(cases):
            values = (paired["current"][r], paired["candidate"][r], paired["differences"][r])
            table.setItem(r, 0, _item(str(case)))
            for c, value in enumerate(values, start=1):
                table.setItem(r, c, _item(f"{value:+.4f}" if c == 3 else f"{value:.4f}"))

    def _fill_plot(self, compare: dict[str, Any]) -> None:
        self.plot.clear()
        item = self.plot.getPlotItem()
        rocs = {s: (compare.get(s) or {}).get("roc") for s in SIDES}
        if any(roc and roc.get("fpr") for roc in rocs.values()):
            item.setTitle("ROC on the validation split")
            item.setLabel("bottom", "false positive rate")
            item.setLabel("left", "true positive rate")
            self.plot.plot([0, 1], [0, 1], pen=pg.mkPen("#555", style=Qt.PenStyle.DashLine))
            for side, roc in rocs.items():
                if roc and roc.get("fpr"):
                    self.plot.plot(roc["fpr"], roc["tpr"], name=version_text(compare, side),
                                   pen=pg.mkPen(COLOURS[side], width=2))
            return
        self._fill_per_case(compare)

    def _fill_per_case(self, compare: dict[str, Any]) -> None:
        item = self.plot.getPlotItem()
        cases = sorted({c for s in SIDES for c in ((compare.get(s) or {}).get("per_case") or {})})
        item.setTitle("Score of each validation case" if cases
                      else "No per-case scores in this comparison")
        item.setLabel("bottom", "validation case")
        item.setLabel("left", "dice" if compare.get("main_metric") == "dice" else "score")
        named = len(cases) <= 6  # more names than that overlap: numbers, names in the tooltip
        item.getAxis("bottom").setTicks([list(enumerate(cases))] if named else None)
        self.plot.setToolTip("\n".join(f"{i}: {c}" for i, c in enumerate(cases)))
        for k, side in enumerate(SIDES):
            per_case = (compare.get(side) or {}).get("per_case") or {}
            xs = [i + (k - 0.5) * 0.2 for i, c in enumerate(cases) if c in per_case]
            ys = [float(per_case[c]) for c in cases if c in per_case]
            if xs:
                self.plot.plot(xs, ys, pen=None, symbol="o", symbolSize=8,
                               symbolBrush=COLOURS[side], name=version_text(compare, side))

    def _fill_confusion(self, compare: dict[str, Any]) -> None:
        shown = False
        for side, table in self.confusion_tables.items():
            confusion = (compare.get(side) or {}).get("confusion") or {}
            matrix, labels = confusion.get("matrix") or [], confusion.get("labels") or []
            table.clear()
            table.setRowCount(len(matrix))
            table.setColumnCount(len(matrix[0]) if matrix else 0)
            names = [str(x) for x in labels] or [str(i) for i in range(len(matrix))]
            table.setHorizontalHeaderLabels(names)
            table.setVerticalHeaderLabels(names)
            for r, row in enumerate(matrix):
                for c, count in enumerate(row):
                    table.setItem(r, c, _item(str(count), r == c))
            shown = shown or bool(matrix)
        self.confusion_box.setVisible(shown)


def _table(compact: bool = False) -> QTableWidget:
    """Read-only; `compact`: columns as narrow as their counts (a 10 x 10 matrix fits)."""
    table = QTableWidget()
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    mode = QHeaderView.ResizeMode.ResizeToContents if compact else QHeaderView.ResizeMode.Stretch
    table.horizontalHeader().setSectionResizeMode(mode)
    if compact:
        table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.verticalHeader().setMinimumSectionSize(12)
        table.horizontalHeader().setMinimumSectionSize(12)
    return table


def _lower_first(text: str) -> str:
    """'Mean IoU' -> 'mean IoU' (inside a sentence)."""
    return text[:1].lower() + text[1:]


def _fill(table: QTableWidget, headings: list[str], rows: list[list[tuple[str, bool]]]
          ) -> None:
    """A table of (text, bold) cells under `headings`."""
    table.clear()
    table.setColumnCount(len(headings))
    table.setRowCount(len(rows))
    table.setHorizontalHeaderLabels(headings)
    for r, row in enumerate(rows):
        for c, (text, bold) in enumerate(row):
            table.setItem(r, c, _item(text, bold))


def _item(text: str, bold: bool = False) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    if bold:
        font = QFont()
        font.setBold(True)
        item.setFont(font)
    return item


def _plot(title: str, bottom: str, left: str) -> pg.PlotWidget:
    plot = pg.PlotWidget(title=title)
    plot.setLabel("bottom", bottom)
    if left:
        plot.setLabel("left", left)
    plot.addLegend(offset=(-10, 10))
    plot.showGrid(x=True, y=True, alpha=0.2)
    _plain_numbers(plot)
    return plot


def _plain_numbers(plot: pg.PlotWidget) -> None:
    """Dice 0.94 reads 0.94, not 940 with an 'x0.001' unit prefix."""
    for side in ("left", "bottom"):
        plot.getAxis(side).enableAutoSIPrefix(False)


def _points(plot: pg.PlotWidget, key: str, name: str) -> pg.PlotDataItem:
    colour = CURVE_PENS[key]
    return plot.plot(pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=6,
                     symbolBrush=colour, name=name)
