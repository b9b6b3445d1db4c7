"""The Export Dataset dialog: which series, which formats, de-identification, where to.

The Export button only reads the widgets into ExportOptions and runs core.dataset.export in a
worker; progress and Cancel are the dialog's own, and the report is shown when it ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from medviewer.core.dataset.export import ExportItem, ExportOptions, read_split
from medviewer.ui.common.host import Host

FORMAT_TITLES = {"nnunet": "nnU-Net v2 raw (imagesTr, labelsTr, dataset.json)",
                 "monai": "MONAI datalist.json", "dicom": "De-identified DICOM (images, SEG, SR)"}


class ExportDatasetDialog(QDialog):
    """`current`: the open series' items; `annotated`: a callable giving every annotated
    series of the open studies (scanned for workspaces when the export starts)."""

    sigFinished = Signal(object)  # the ExportReport, or the error's sentence (str)

    def __init__(self, host: Host, current: list[ExportItem], annotated: Any) -> None:
        super().__init__(host.dialog_parent())
        self.host, self.current, self.annotated = host, current, annotated
        self.worker: Any = None
        self.setWindowTitle("Export Dataset")
        self.setObjectName("exportDatasetDialog")
        layout = QVBoxLayout(self)
        layout.addWidget(self._scope_box())
        layout.addWidget(self._format_box())
        layout.addWidget(self._deid_box())
        layout.addLayout(self._output_form())
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("")
        self.status.setObjectName("exportStatus")
        self.status.setWordWrap(True)
        self.report = QPlainTextEdit()
        self.report.setReadOnly(True)
        self.report.setVisible(False)
        self.report.setMaximumHeight(120)
        self.export_button = QPushButton("&Export")
        self.export_button.setDefault(True)
        self.export_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.progress, 1)
        for b in (self.export_button, self.cancel_button, self.close_button):
            buttons.addWidget(b)
        self.cancel_button.setEnabled(False)
        for w in (self.status, self.report):
            layout.addWidget(w)
        layout.addLayout(buttons)
        self.resize(560, 0)

    # --- widgets ---------------------------------------------------------------------------
    def _scope_box(self) -> QGroupBox:
        box = QGroupBox("Series")
        self.this_series = QRadioButton("The open series")
        self.all_annotated = QRadioButton("All annotated series of the open studies")
        group = QButtonGroup(box)
        for b in (self.this_series, self.all_annotated):
            group.addButton(b)
        self.this_series.setEnabled(bool(self.current))
        (self.this_series if self.current else self.all_annotated).setChecked(True)
        lay = QVBoxLayout(box)
        lay.addWidget(self.this_series)
        lay.addWidget(self.all_annotated)
        return box

    def _format_box(self) -> QGroupBox:
        box = QGroupBox("Formats")
        lay = QVBoxLayout(box)
        self.formats = {key: QCheckBox(title) for key, title in FORMAT_TITLES.items()}
        for key, check in self.formats.items():
            check.setChecked(key in ("nnunet", "monai"))
            lay.addWidget(check)
        return box

    def _deid_box(self) -> QGroupBox:
        box = self.deid = QGroupBox("De-identify (DICOM PS3.15 basic profile)")
        box.setCheckable(True)
        box.setChecked(True)
        form = QFormLayout(box)
        self.key = QLineEdit()
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setPlaceholderText("a secret phrase: the same key gives the same pseudonyms")
        self.dates = QComboBox()
        self.dates.addItem("Shift per patient (keep intervals)", "shift")
        self.dates.addItem("Remove", "remove")
        self.clean = QCheckBox("Keep descriptions, cleaned of names, IDs and dates")
        self.clean.setToolTip("PS3.15 Clean Descriptors option; unchecked, descriptions and "
                              "comments are emptied")
        self.clean.setChecked(True)
        self.burned_in = QComboBox()
        self.burned_in.addItem("Refuse images that may show burned-in text", "refuse")
        self.burned_in.addItem("Export them with a warning", "warn")
        form.addRow("Key", self.key)
        form.addRow("Dates", self.dates)
        form.addRow("", self.clean)
        form.addRow("Burned-in text", self.burned_in)
        return box

    def _output_form(self) -> QFormLayout:
        form = QFormLayout()
        self.out = QLineEdit()
        self.out.setPlaceholderText("an empty folder outside the data")
        browse = QPushButton("Browse\u2026")
        browse.clicked.connect(self._browse)
        row = QWidget()
        lay = QHBoxLayout(row)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.out, 1)
        lay.addWidget(browse)
        self.dataset_id = QSpinBox()
        self.dataset_id.setRange(1, 999)
        self.dataset_name = QLineEdit("MedViewer")
        self.split = QLineEdit()
        self.split.setPlaceholderText("optional: a training run's split.json")
        self.split.setToolTip("The patients that run validated on go to MONAI's validation list")
        split_row = QWidget()
        lay = QHBoxLayout(split_row)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.split, 1)
        choose = QPushButton("Choose\u2026")
        choose.clicked.connect(self._choose_split)
        lay.addWidget(choose)
        form.addRow("Export to", row)
        form.addRow("nnU-Net dataset number", self.dataset_id)
        form.addRow("Dataset name", self.dataset_name)
        form.addRow("Keep the split of", split_row)
        return form

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export the dataset to")
        if folder:
            self.out.setText(folder)

    def _choose_split(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "A training run's split", "",
                                              "split.json (split.json);;JSON (*.json)")
        if path:
            self.split.setText(path)

    # --- running ---------------------------------------------------------------------------
    def options(self) -> ExportOptions:
        return ExportOptions(
            Path(self.out.text().strip()),
            formats=tuple(k for k, c in self.formats.items() if c.isChecked()),
            deidentify=self.deid.isChecked(), key=self.key.text(),
            dates=self.dates.currentData(), clean_descriptors=self.clean.isChecked(),
            burned_in=self.burned_in.currentData(), dataset_id=self.dataset_id.value(),
            dataset_name=self.dataset_name.text().strip() or "MedViewer",
            split=read_split(self.split.text().strip()) if self.split.text().strip() else None)

    def start(self) -> None:
        if not self.out.text().strip():
            self._say("Choose the folder to export to.")
            return
        from medviewer.core.dataset.export import ExportError, export_dataset

        try:
            options = self.options()
        except ExportError as exc:  # an unreadable split file
            self._say(str(exc))
            return
        current = self.this_series.isChecked()
        items, annotated = self.current, self.annotated

        def run(ctx: Any) -> Any:
            chosen = items if current else annotated()
            return export_dataset(chosen, options, progress=ctx.progress,
                                  cancelled=ctx.is_cancelled)

        self._busy(True)
        self._say("Exporting\u2026")
        self.worker = self.host.pool.start(
            run, on_result=self._done, on_error=self._failed, on_progress=self._progress,
            on_cancelled=lambda: self._failed(None))

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self._say("Cancelling after the file being written\u2026")

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _done(self, report: Any) -> None:
        self._busy(False)
        self.report.setPlainText(report.text())
        self.report.setVisible(True)
        self._say("Cancelled: only whole files were kept." if report.cancelled else
                  f"Exported {len(report.cases)} case(s) to {report.out}.")
        self.sigFinished.emit(report)

    def _failed(self, exc: BaseException | None) -> None:
        self._busy(False)
        from medviewer.core.dataset.export import ExportError

        text = "Cancelled: only whole files were kept." if exc is None else str(exc) \
            if isinstance(exc, ExportError) else f"The export stopped: {exc}"
        self._say(text)
        self.sigFinished.emit(text)

    def _busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.progress.setRange(0, 0)
        self.export_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        if not busy:
            self.worker = None

    def _say(self, text: str) -> None:
        self.status.setText(text)
        self.host.set_status(text)
