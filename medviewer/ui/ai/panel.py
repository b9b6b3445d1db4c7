"""The "AI results" dock: what the model said about the open series, and how it is drawn.

A subscriber of the document like the views: it reads `document.ai_output`, the explanation
and the AI display settings, and every control only calls a document setter (opacity, fill,
label visibility, box threshold), so the views follow. Sections show only when the result has
that kind of answer: class scores of the current slice (and their course over the series,
`ScoreCurve`: a click goes to that slice), series verdicts side by side (lab 3's methods, each
exportable as CSV), labels with colour, visibility, voxel count and volume (drawn as outlines
or filled), boxes with a score threshold, and the heatmap's opacity.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QScrollArea,
    QSlider,
    QStyle,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from medviewer.inference.results import Result
from medviewer.ui.ai.agreement import agreement_html, agreement_tooltip
from medviewer.ui.ai.compare_table import ModelComparison, is_segmenter_comparison, short_title
from medviewer.ui.ai.lesions_table import LesionTable
from medviewer.ui.ai.measurements import measurements_html, measurements_tooltip
from medviewer.ui.ai.score_curve import PLOT_EVERY_LABEL, ScoreCurve
from medviewer.ui.ai.tables import fit_rows, results_table
from medviewer.ui.document.ai_state import rgb
from medviewer.ui.document.reading_aids import STACK
from medviewer.ui.document.study import StudyDocument

EMPTY_TEXT = ("No AI result on this series. Choose a model in the AI menu, then Run on "
              "Current Slice (Ctrl+R) or Run on Whole Series (Ctrl+Shift+R).")


def _item(text: object, align_right: bool = False) -> QTableWidgetItem:
    item = QTableWidgetItem(str(text))
    if align_right:
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


def _swatch(colour: tuple[int, int, int]) -> QIcon:
    pixmap = QPixmap(12, 12)
    pixmap.fill(QColor(*colour))
    return QIcon(pixmap)


def _slider(value: int) -> QSlider:
    slider = QSlider(Qt.Orientation.Horizontal)
    slider.setRange(0, 100)
    slider.setValue(value)
    return slider


def _ran_on(result: Result) -> str:
    """'CPU, ONNX Runtime int8': the device and, when known, the runtime and precision."""
    device = result.provider.replace("ExecutionProvider", "")
    return f"{device}, {result.runtime}" if result.runtime else device


def timings_text(result: Result) -> str:
    t = result.timings
    parts = [f"{name} {t[key] * 1000:.0f} ms" for key, name in
             (("preprocess", "pre"), ("inference", "inference"), ("postprocess", "post"))
             if key in t]
    return " · ".join(parts)


class AiPanel(QWidget):
    """The results dock's content, for one document."""

    sigExportVerdict = Signal(object)  # Result: the window asks where to save its CSV
    sigGoToSlice = Signal(int)

    def __init__(self, document: StudyDocument, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.document = document
        self._filling = False
        inner = QWidget()
        self.sections = QVBoxLayout(inner)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.sections.addWidget(self.summary)
        self._build_scores()
        self._build_verdicts()
        self.comparison = ModelComparison()  # lab 4's segmenters side by side
        self.comparison.sigResultChosen.connect(document.show_ai_result)
        self.sections.addWidget(self.comparison)
        self._build_labels()
        self.lesion_table = LesionTable()  # a segmentation's lesions, one row each
        self.sections.addWidget(self.lesion_table)
        self._build_boxes()
        self._build_heatmap()
        self.sections.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)
        document.sigAiResultChanged.connect(self.rebuild)
        document.sigAiDisplayChanged.connect(self._sync_display)
        document.sigSliceChanged.connect(self._on_slice_changed)
        self.sigGoToSlice.connect(document.set_slice)
        self.rebuild()

    # ----------------------------------------------------------------- construction
    def _group(self, title: str) -> tuple[QGroupBox, QVBoxLayout]:
        group = QGroupBox(title)
        layout = QVBoxLayout(group)
        self.sections.addWidget(group)
        return group, layout

    def _build_scores(self) -> None:
        self.scores_group, layout = self._group("Class scores")
        self.predicted_label = QLabel()
        self.scores_table = results_table(["Label", "Probability"])
        self.series_plot = ScoreCurve()
        self.slice_line = self.series_plot.slice_line
        self.series_plot.sigImageClicked.connect(
            lambda number: self.sigGoToSlice.emit(
                self.document.index_at_position(STACK, number - 1)))
        for widget in (self.predicted_label, self.scores_table, self.series_plot):
            layout.addWidget(widget)

    def _build_verdicts(self) -> None:
        self.verdicts_group, layout = self._group("Series verdicts (one per method)")
        self.verdicts_table = results_table(["Method", "Verdict", "Prob.", ""])
        self.verdicts_table.horizontalHeaderItem(2).setToolTip("Probability of the verdict")
        self.verdicts_table.horizontalHeader().setStretchLastSection(False)
        self.failures_label = QLabel()
        self.failures_label.setWordWrap(True)
        layout.addWidget(self.verdicts_table)
        layout.addWidget(self.failures_label)

    def _build_labels(self) -> None:
        self.labels_group, layout = self._group("Labels")
        self.labels_table = results_table(["Show", "Label", "Voxels", "Volume (mL)"])
        self.labels_table.itemChanged.connect(self._on_label_toggled)
        self.labels_note = QLabel()
        self.opacity_slider = _slider(int(self.document.ai_display.opacity * 100))
        self.opacity_slider.valueChanged.connect(
            lambda v: self.document.set_ai_display(opacity=v / 100))
        self.opacity_slider.setToolTip("Opacity of filled labels (outlines are drawn solid)")
        self.agreement_label = QLabel()  # scores against a mask, when one was compared
        self.fill_check = QCheckBox("Fill labels")
        self.fill_check.setToolTip("Tint the whole area of each label; off, only its outline "
                                   "is drawn and the anatomy inside stays readable.")
        self.fill_check.setChecked(self.document.ai_display.label_fill)
        self.fill_check.toggled.connect(lambda on: self.document.set_ai_display(label_fill=on))
        layout.addWidget(self.labels_table)
        layout.addWidget(self.labels_note)
        layout.addWidget(self.agreement_label)
        row = self._row("Opacity", self.opacity_slider)
        row.addWidget(self.fill_check)
        layout.addLayout(row)

    def _build_boxes(self) -> None:
        self.boxes_group, layout = self._group("Boxes")
        self.threshold_slider = _slider(int(self.document.ai_display.min_score * 100))
        self.threshold_slider.valueChanged.connect(
            lambda v: self.document.set_ai_display(min_score=v / 100))
        self.threshold_label = QLabel()
        row = self._row("Score ≥", self.threshold_slider)
        row.addWidget(self.threshold_label)
        self.boxes_table = results_table(["Slice", "Label", "Score", "Box (px)"])
        self.boxes_table.horizontalHeaderItem(3).setToolTip("x0,y0\u2013x1,y1 in pixels of the "
                                                            "image")
        self.boxes_table.cellDoubleClicked.connect(self._on_box_chosen)
        self.measurements_label = QLabel()  # lab 5's cardiothoracic ratio and its verdict
        self.measurements_label.setWordWrap(True)
        layout.addLayout(row)
        layout.addWidget(self.measurements_label)
        layout.addWidget(self.boxes_table)

    def _build_heatmap(self) -> None:
        self.heatmap_group, layout = self._group("Explanation (heatmap)")
        self.heatmap_label = QLabel()
        self.heatmap_label.setWordWrap(True)
        self.heatmap_slider = _slider(int(self.document.ai_display.heatmap_opacity * 100))
        self.heatmap_slider.valueChanged.connect(
            lambda v: self.document.set_ai_display(heatmap_opacity=v / 100))
        layout.addWidget(self.heatmap_label)
        layout.addLayout(self._row("Opacity", self.heatmap_slider))

    @staticmethod
    def _row(text: str, widget: QWidget) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(QLabel(text))
        row.addWidget(widget, 1)
        return row

    # ----------------------------------------------------------------- document -> widgets
    def rebuild(self) -> None:
        """A new result (or none): show the sections it has answers for."""
        output, result = self.document.ai_output, self.document.ai_result
        self.summary.setText(self._summary_text())
        compare = output is not None and (output.scope == "compare" or (
            result is not None and result.scores is not None and not result.slice_indices))
        per_slice = result is not None and result.scores is not None and not compare
        self.scores_group.setVisible(per_slice)
        segmenters = is_segmenter_comparison(output)
        self.verdicts_group.setVisible(compare and not segmenters)
        self.labels_group.setVisible(result is not None and result.label_map is not None)
        self.boxes_group.setVisible(result is not None and result.task == "detection")
        self.heatmap_group.setVisible(self.document.explanation is not None)
        if per_slice:
            self._fill_series_plot(result)
        if compare and not segmenters:
            self._fill_verdicts()
        self.comparison.show_output(output)
        if not self.labels_group.isHidden():
            self._fill_labels()
        self.lesion_table.show_output(output, self._number, self.document.modality)
        self._sync_display()
        self._on_slice_changed(self.document.slice_index)

    def _summary_text(self) -> str:
        output, result = self.document.ai_output, self.document.ai_result
        if result is None:
            return "" if self.document.explanation is not None else EMPTY_TEXT
        if output.scope == "compare":
            seconds = sum(r.timings.get("total", 0.0) for r in output.results)
            shown = short_title(result.title or result.model_id)
            what = (f"segmentation models</b>, showing {shown}"
                    if is_segmenter_comparison(output) else "fusion methods</b>")
            return (f"<b>{len(output.results)} {what} on the whole series<br>"
                    f"{_ran_on(result)} · {seconds * 1000:.0f} ms in all")
        if output.scope == "series" or not result.slice_indices:
            where = "the whole series"
        else:
            where = f"slice {self._number(result.slice_indices[0])}"
        return (f"<b>{result.title or result.model_id}</b> {result.model_version} on {where}"
                f"<br>{_ran_on(result)} · {timings_text(result)}")

    def _number(self, k: int) -> int:
        """The image number the views show for slice index k (the reading order)."""
        return self.document.image_position(k=k) + 1

    def _on_slice_changed(self, k: int) -> None:
        if not self.scores_group.isHidden():
            self._fill_scores(self.document.ai_result, k)
        if not self.heatmap_group.isHidden():
            self._fill_heatmap(k)

    def _fill_scores(self, result: Result, k: int) -> None:
        self.slice_line.setValue(self._number(k))
        if k not in result.slice_indices:
            run = sorted(self._number(i) for i in result.slice_indices)
            self.predicted_label.setText(f"Not run on this slice (run on {len(run)} slice(s): "
                                         f"{', '.join(str(n) for n in run[:5])}"
                                         f"{'…' if len(run) > 5 else ''}).")
            self.scores_table.setRowCount(0)
            return
        row = result.slice_indices.index(k)
        label, probability = result.predicted(row)
        self.predicted_label.setText(f"Slice {self._number(k)}: <b>{label}</b> "
                                     f"({probability:.3f})")
        pairs = list(zip(result.labels, result.scores[row], strict=True))
        if len(pairs) > PLOT_EVERY_LABEL:  # many classes: the likely ones first
            pairs.sort(key=lambda pair: -pair[1])
        self.scores_table.setRowCount(len(pairs))
        for i, (name, p) in enumerate(pairs):
            self.scores_table.setItem(i, 0, _item(name))
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setValue(int(round(float(p) * 1000)))
            bar.setFormat(f"{float(p):.3f}")
            self.scores_table.setCellWidget(i, 1, bar)
        fit_rows(self.scores_table)

    def _fill_series_plot(self, result: Result) -> None:
        many = len(result.slice_indices) > 1
        self.series_plot.setVisible(many)
        if many:
            numbers = np.asarray([self._number(k) for k in result.slice_indices])
            self.series_plot.plot_scores(numbers, result.scores, result.labels, result.colours)

    def _fill_verdicts(self) -> None:
        output = self.document.ai_output
        table = self.verdicts_table
        table.setRowCount(len(output.results))
        for row, result in enumerate(output.results):
            label, probability = result.predicted(0)
            title = result.title or result.model_id
            method = _item(title.split(":")[0])  # "Early fusion: nodule >= 10 mm" -> the method
            method.setToolTip(f"{title} ({result.model_id} {result.model_version})")
            table.setItem(row, 0, method)
            table.setItem(row, 1, _item(label))
            table.setItem(row, 2, _item(f"{probability:.3f}", align_right=True))
            table.setCellWidget(row, 3, self._csv_button(result))
        # a cell widget is no content to ResizeToContents: its column gets the button's width
        table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Fixed)
        table.setColumnWidth(3, max((table.cellWidget(r, 3).sizeHint().width()
                                     for r in range(table.rowCount())), default=60) + 6)
        fit_rows(table)
        self.failures_label.setText("<br>".join(f"Could not run {f}" for f in output.failures))
        self.failures_label.setVisible(bool(output.failures))

    def _csv_button(self, result: Result) -> QToolButton:
        """A save icon (a dock is narrow: a text button's column would be cut off)."""
        button = QToolButton()
        button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_DialogSaveButton))
        button.setText("CSV")
        button.setAutoRaise(True)
        button.setObjectName("verdictCsvButton")
        button.setToolTip(f"Export the verdict of {result.title or result.model_id} as CSV")
        button.clicked.connect(lambda _=False, r=result: self.sigExportVerdict.emit(r))
        return button

    def show_agreement(self, report: dict) -> None:
        """The per-label table and overall scores of `agreement_task` (ui.ai.agreement)."""
        self.agreement_label.setText(agreement_html(report))
        self.agreement_label.setToolTip(agreement_tooltip(report))

    def _fill_labels(self) -> None:
        self.agreement_label.clear()
        output, result = self.document.ai_output, self.document.ai_result
        hidden = self.document.ai_display.hidden_labels
        self._filling = True
        table = self.labels_table
        table.setRowCount(max(len(result.labels) - 1, 0))
        for row, name in enumerate(result.labels[1:]):
            i = row + 1  # label value 0 is "nothing found"
            show = _item("")
            show.setIcon(_swatch(rgb(result.colours[i] if i < len(result.colours) else "", i)))
            show.setFlags(show.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            show.setCheckState(Qt.CheckState.Unchecked if name in hidden
                               else Qt.CheckState.Checked)
            show.setData(Qt.ItemDataRole.UserRole, name)
            stats = next((s for s in output.label_stats if s["value"] == i), {})
            voxels, ml = stats.get("voxels", 0), stats.get("volume_ml")
            ml = "–" if ml is None else f"{ml:.2f}"
            for col, item in enumerate((show, _item(name), _item(voxels, True), _item(ml, True))):
                table.setItem(row, col, item)
        self._filling = False
        fit_rows(table)
        run = len(result.slice_indices)
        self.labels_note.setText(f"Counted over the {run} slice(s) segmented."
                                 if output.scope == "slice" else "Counted over the series.")

    def _fill_heatmap(self, k: int) -> None:
        exp = self.document.explanation
        shown = self._number(exp.slice_index)
        where = (f"slice {shown}" if exp.slice_index == k else
                 f"slice {shown} (you are on slice {self._number(k)}; go back to see it)")
        target = f" for {exp.target}" if exp.target else ""
        notes = f"<br>{exp.notes}" if exp.notes else ""
        self.heatmap_label.setText(f"<b>{exp.method}</b> of {exp.model_id}{target} on {where}, "
                                   f"{exp.seconds:.1f} s{notes}<br>Colours 0..1, scaled per "
                                   "slice (the bar on the image): 1 where it looked most.")

    def _sync_display(self) -> None:
        """Sliders and the box list follow the document's display settings."""
        display = self.document.ai_display
        self.fill_check.blockSignals(True)
        self.fill_check.setChecked(display.label_fill)
        self.fill_check.blockSignals(False)
        self.opacity_slider.setEnabled(display.label_fill)
        for slider, value in ((self.opacity_slider, display.opacity),
                              (self.threshold_slider, display.min_score),
                              (self.heatmap_slider, display.heatmap_opacity)):
            slider.blockSignals(True)
            slider.setValue(int(round(value * 100)))
            slider.blockSignals(False)
        self.threshold_label.setText(f"{display.min_score:.2f}")
        if not self.boxes_group.isHidden():
            self._fill_boxes()

    def _fill_boxes(self) -> None:
        result = self.document.ai_result
        shown = [b for b in result.boxes if b.score >= self.document.ai_display.min_score]
        table = self.boxes_table
        table.setRowCount(len(shown))
        for row, b in enumerate(sorted(shown, key=lambda b: (self._number(b.slice_index),
                                                              -b.score))):
            values = (self._number(b.slice_index), b.label, f"{b.score:.3f}",
                      f"{b.x0:.0f},{b.y0:.0f}\u2013{b.x1:.0f},{b.y1:.0f}")
            for col, value in enumerate(values):
                table.setItem(row, col, _item(value, col != 1))
        fit_rows(table, 8)
        self.boxes_group.setTitle(f"Boxes ({len(shown)} of {len(result.boxes)} shown)")
        self.measurements_label.setText(measurements_html(result, self._number))
        self.measurements_label.setToolTip(measurements_tooltip(result))
        self.measurements_label.setVisible(bool(result.measurements))

    # ----------------------------------------------------------------- widgets -> document
    def _on_label_toggled(self, item: QTableWidgetItem) -> None:
        if self._filling or item.column() != 0:
            return
        name = item.data(Qt.ItemDataRole.UserRole)
        self.document.set_label_visible(name, item.checkState() == Qt.CheckState.Checked)

    def _on_box_chosen(self, row: int, _col: int) -> None:
        item = self.boxes_table.item(row, 0)
        if item is not None:
            self.sigGoToSlice.emit(self.document.index_at_position(STACK, int(item.text()) - 1))

    def set_label_checked(self, name: str, visible: bool) -> None:
        """What a click on a label's Show box does (for tests and scripts)."""
        for row in range(self.labels_table.rowCount()):
            item = self.labels_table.item(row, 0)
            if item.data(Qt.ItemDataRole.UserRole) == name:
                item.setCheckState(Qt.CheckState.Checked if visible else Qt.CheckState.Unchecked)
