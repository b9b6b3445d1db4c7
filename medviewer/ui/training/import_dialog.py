"""Model -> Import Model...: a checkpoint or a model file of one's own becomes a MedViewer model.

Pick a file (.pth/.pt/.ckpt/.safetensors/.onnx/.pt2/TorchScript): `importing.inspect` reads it in
a worker (torch's import alone takes seconds) and the form shows what MedViewer guesses: lab,
architecture (task), the number of classes, all editable. The labels start as "class 1..K",
flagged until named; the input spec, plugin and options come from an installed model of the
same lab and task (named in the dialog). Preview exports into a temporary folder and runs the
result on the slice on screen with the lab's plugin, before anything reaches the user's model
store; Import installs that folder (or exports straight into the store when the form changed
since) and `on_models_changed` lists the model in the AI menu without a restart. Every step
runs in a worker (import_tasks) with progress and Cancel; a `ModelError` is shown as its
sentence and the dialog stays usable. Callable without clicking: `choose_file(path)`,
`preview()`, `import_model()`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
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
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from medviewer.inference import Manifest, ModelError
from medviewer.inference.registry import user_models_dir
from medviewer.training import importing
from medviewer.ui.common.guard import guarded
from medviewer.ui.common.host import Host
from medviewer.ui.training.import_form import InputSpecBox, LabelsBox, ModelBox
from medviewer.ui.training.import_tasks import (
    PALETTE,
    Inspected,
    Preview,
    import_task,
    in_dialog_words,
    inspect_task,
    parse_maps,
    placeholder_labels,
    preview_task,
    report_text,
)

log = logging.getLogger(__name__)

FILE_FILTER = ("Model files (*.pth *.pt *.ckpt *.bin *.safetensors *.onnx *.pt2 *.ts *.jit);;"
               "All files (*)")
TRUST_TIP = ("Opening a pickle runs code hidden in the file: tick this only for a file you made "
             "or fully trust. Without it a torch.save state dict is still read safely "
             "(weights only).")
THUMB = 220  # pixels of the preview thumbnail


class ImportDialog(QDialog):
    """The Import Model window of one main window (modeless). `document` is the window's
    StudyDocument (the slice Preview runs on); None: Preview only exports."""

    sigInspected = Signal(object)  # Inspection, or None when the file could not be read
    sigPreviewed = Signal(object)  # import_tasks.Preview
    sigImported = Signal(object)  # the installed Manifest
    sigFailed = Signal(str)  # the sentence shown

    def __init__(self, host: Host, document: Any = None, *,
                 on_models_changed: Callable[[], None] = lambda: None) -> None:
        super().__init__(host.dialog_parent())
        self.host, self.document, self.on_models_changed = host, document, on_models_changed
        self.setWindowTitle("Import a model")
        self.setObjectName("importDialog")
        self.setModal(False)
        self.inspection: importing.Inspection | None = None
        self.models: list[Manifest] = []
        self.like: Manifest | None = None
        self.worker: Any = None
        self.running: str | None = None  # "inspect", "preview" or "import"
        self.previewed: tuple[str, Path] | None = None  # (form state, folder) of the preview
        self._target: Path | None = None  # the store folder an import is writing
        self.temp = Path(tempfile.mkdtemp(prefix="medviewer-import-"))
        self._filling = False
        self._reinspect = QTimer(self)  # architecture, key maps, trust edited: read again
        self._reinspect.setSingleShot(True)
        self._reinspect.setInterval(400)
        self._reinspect.timeout.connect(lambda: self.inspect_file(keep_form=True))
        self._build()
        self._set_busy(None)
        self.resize(1180, 800)

    # ----------------------------------------------------------------- construction
    def _build(self) -> None:
        form = QVBoxLayout()
        form.addWidget(self._file_box())
        self.model_box = box = ModelBox()
        box.sigChosen.connect(self._on_chosen)
        box.sigTaskChanged.connect(self._prefill)
        box.sigEdited.connect(self._form_edited)
        form.addWidget(box)
        # shortcuts used below and by tests
        self.lab_combo, self.arch_combo, self.task_combo = (box.lab_combo, box.arch_combo,
                                                            box.task_combo)
        self.id_edit, self.title_edit, self.version_edit = (box.id_edit, box.title_edit,
                                                            box.version_edit)
        self.labels_box = LabelsBox()
        self.labels_box.sigEdited.connect(self._form_edited)
        form.addWidget(self.labels_box)
        self.input_box = InputSpecBox()
        form.addWidget(self.input_box)
        form.addWidget(self._advanced_box())
        form.addStretch(1)
        left = QWidget()
        left.setLayout(form)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(left)
        right = QVBoxLayout()
        right.addWidget(QLabel("What MedViewer read from the file"))
        self.report_view = QPlainTextEdit()
        self.report_view.setObjectName("importReport")
        self.report_view.setReadOnly(True)
        self.report_view.setPlaceholderText("Choose a model file: what it is, its key report "
                                            "and any warnings appear here.")
        right.addWidget(self.report_view, 1)
        right.addWidget(self._preview_box())
        self.status_label = QLabel()
        self.status_label.setObjectName("importStatus")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress_bar = QProgressBar()
        right.addWidget(self.status_label)
        right.addWidget(self.progress_bar)
        right.addLayout(self._buttons())
        layout = QHBoxLayout(self)
        layout.addWidget(scroll, 1)
        layout.addLayout(right, 1)

    def _file_box(self) -> QGroupBox:
        box = QGroupBox("Model file")
        row = QHBoxLayout(box)
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText(".pth .pt .ckpt .safetensors .onnx .pt2 TorchScript")
        self.path_edit.returnPressed.connect(lambda: self.choose_file(self.path_edit.text()))
        browse = QPushButton("Choose\u2026")
        browse.clicked.connect(self.choose_file_dialog)
        row.addWidget(self.path_edit, 1)
        row.addWidget(browse)
        return box

    def _advanced_box(self) -> QGroupBox:
        box = QGroupBox("Advanced")
        form = QFormLayout(box)
        self.plugin_edit = QLineEdit()
        self.plugin_edit.setToolTip("The plugin whose pre- and post-processing run the model "
                                    "(default: the lab's, labN)")
        self.plugin_edit.textEdited.connect(self._form_edited)
        form.addRow("Plugin", self.plugin_edit)
        self.maps_edit = QPlainTextEdit()
        self.maps_edit.setPlaceholderText("Key maps, one per line: OLD=NEW (e.g. model.=)")
        self.maps_edit.setMaximumHeight(64)
        self.maps_edit.textChanged.connect(self._reinspect.start)
        form.addRow("Key maps", self.maps_edit)
        self.trust_check = QCheckBox("Trust this pickle (runs code in the file)")
        self.trust_check.setToolTip(TRUST_TIP)
        self.trust_check.toggled.connect(lambda _on: self._reinspect.start())
        form.addRow(self.trust_check)
        return box

    def _preview_box(self) -> QGroupBox:
        box = QGroupBox("Preview on the slice on screen (nothing is saved yet)")
        row = QHBoxLayout(box)
        self.thumb_label = QLabel("no preview yet")
        self.thumb_label.setFixedSize(THUMB, THUMB)
        self.thumb_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb_label.setStyleSheet("background: #111; color: #888;")
        self.result_label = QLabel()
        self.result_label.setObjectName("importResult")
        self.result_label.setWordWrap(True)
        self.result_label.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(self.thumb_label)
        row.addWidget(self.result_label, 1)
        return box

    def _buttons(self) -> QHBoxLayout:
        self.preview_button = QPushButton("Preview")
        self.preview_button.setToolTip("Export into a temporary folder and run the model on "
                                       "the slice on screen; nothing is saved")
        self.preview_button.clicked.connect(lambda _c=False: self.preview())
        self.import_button = QPushButton("Import")
        self.import_button.setToolTip("Put the model into your model store; the AI menu lists "
                                      "it at once")
        self.import_button.clicked.connect(lambda _c=False: self.import_model())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        row = QHBoxLayout()
        row.addStretch(1)
        for button in (self.preview_button, self.import_button, self.cancel_button, close):
            row.addWidget(button)
        return row

    # ----------------------------------------------------------------- choosing and reading
    def show_error(self, text: str) -> None:  # what `guarded` calls
        self.status_label.setStyleSheet("color: #e05050;")
        self.status_label.setText(text)
        self.sigFailed.emit(text)

    def _say(self, text: str) -> None:
        self.status_label.setStyleSheet("")
        self.status_label.setText(text)

    @guarded
    def choose_file_dialog(self) -> None:
        start = self.path_edit.text() or str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Model file to import", start, FILE_FILTER)
        if path:
            self.choose_file(path)

    @guarded
    def choose_file(self, path: str | Path) -> bool:
        """Read `path` in the background and fill the form with what it is; False when
        refused at once (the reason is shown)."""
        if self._importing():
            return False
        self.path_edit.setText(str(path))
        self.trust_check.blockSignals(True)
        self.trust_check.setChecked(False)  # trust is given per file, never carried over
        self.trust_check.blockSignals(False)
        self.inspection, self.previewed = None, None
        return self.inspect_file(keep_form=False)

    @guarded
    def inspect_file(self, keep_form: bool = True) -> bool:
        """Read the file again (keep_form: with the chosen architecture, key maps and trust,
        the reader's other entries kept)."""
        self._reinspect.stop()
        if self._importing():
            return False
        path = Path(self.path_edit.text().strip()).expanduser()
        if not path.is_file():
            self.show_error(f"{path} is not a file; choose the checkpoint or model file to "
                            "import.")
            return False
        try:
            maps = parse_maps(self.maps_edit.toPlainText())
        except ValueError as exc:
            self.show_error(str(exc))
            return False
        keep_form = keep_form and self.inspection is not None  # else: nothing filled yet
        arch = self.model_box.arch() if keep_form else None
        self._say(f"Reading {path.name}\u2026")
        self._start("inspect", inspect_task, str(path), self.trust_check.isChecked(), arch,
                    maps, on_result=lambda got: self._on_inspected(got, keep_form))
        return True

    def _on_inspected(self, got: Inspected, keep_form: bool) -> None:
        ins = self.inspection = got.inspection
        self.model_box.archs, self.models = got.arch_names, got.models
        self._filling = True
        try:
            if keep_form:
                self.input_box.follow_file(ins)  # the architecture now chosen may take others
            else:
                self.model_box.fill(ins)
                count = ins.num_classes or self.labels_box.classes_spin.value()
                self.labels_box.set_labels(placeholder_labels(count), PALETTE)
                self._prefill()
            self.labels_box.fix_count(ins.num_classes)
        finally:
            self._filling = False
        self.report_view.setPlainText(report_text(ins))
        fits = ins.report is None or ins.report.ok
        self._say("Check the fields, then Preview (runs it on this slice) or Import." if fits
                  else "The checkpoint does not fit the architecture (see the report): choose "
                  "another architecture, or add key maps under Advanced.")
        self._set_busy(None)
        self.sigInspected.emit(ins)

    def _on_chosen(self) -> None:
        """Another lab or architecture: the spec it suggests, its key report."""
        self._prefill()
        if self.inspection is not None and not self.model_box.self_contained:
            self._reinspect.start()

    def _prefill(self) -> None:
        """Input spec, plugin and label offer from an installed model like this one."""
        box = self.model_box
        lab, task = box.lab(), box.task()
        like = self.like = importing.similar_model(lab, task, box.arch(), self.models)
        self.plugin_edit.setText(like.plugin if like and like.lab == lab else f"lab{lab}")
        self.input_box.set_like(like, lab, task)
        if self.inspection is not None:
            self.input_box.follow_file(self.inspection)
        self.labels_box.offer(like)
        self._form_edited()

    # ----------------------------------------------------------------- the form as fields
    def form_fields(self) -> dict[str, Any]:
        """The manifest fields import_model completes; ValueError with a sentence."""
        lab, plugin = self.model_box.lab(), self.plugin_edit.text().strip()
        like = self.like if self.like is not None and self.like.plugin == plugin else None
        name = Path(self.path_edit.text().strip()).name
        fields = {**self.model_box.names(), "lab": lab, "plugin": plugin or f"lab{lab}",
                  "labels": self.labels_box.fields(), "input": self.input_box.spec(),
                  "options": {k: v for k, v in (like.options if like else {}).items()
                              if k != "build"},  # the build options come from the weights
                  "metrics": {"split": "not measured: imported from a file", "n": 0},
                  "provenance": {"via": "Model > Import Model",
                                 "input_spec_from": like.id if like else "the reader"},
                  "description": f"Imported from {name}."}
        if self.model_box.self_contained:  # a checkpoint's task is its architecture's
            fields["task"] = self.model_box.task()
        elif like is not None:
            fields["like"] = like.id  # the form's source: checked to do the same task
        return fields

    def import_options(self) -> dict[str, Any]:
        """import_model's keywords: architecture, key maps, trust."""
        return {"arch": self.model_box.arch(),
                "maps": parse_maps(self.maps_edit.toPlainText()),
                "trust_pickle": self.trust_check.isChecked()}

    def _form_edited(self, *_args: Any) -> None:
        """Another entry: a preview made before no longer shows what Import would install."""
        if not self._filling and self.previewed is not None:
            self._say("The form changed since the preview: Preview again, or Import exports "
                      "with the new entries.")

    def _importing(self) -> bool:
        """An import is writing into the store: nothing else starts (the reason is shown)."""
        if self.running == "import":
            self.show_error("An import is running: wait until it has finished (or Cancel it).")
        return self.running == "import"

    def _request(self) -> tuple[dict, dict, str] | None:
        """(fields, options, state) from the form, or None with the reason shown."""
        if self._importing():
            return None
        if self.inspection is None:
            self.show_error("Choose a model file first (and wait until it has been read).")
            return None
        try:
            fields, options = self.form_fields(), self.import_options()
        except ValueError as exc:
            self.show_error(str(exc))
            return None
        return fields, options, repr((self.path_edit.text(), fields, options))

    # ----------------------------------------------------------------- preview and import
    @guarded
    def preview(self) -> bool:
        """Export into a temporary folder and run it on the slice on screen (worker)."""
        request = self._request()
        if request is None:
            return False
        fields, options, state = request
        doc = self.document
        volume = getattr(doc, "volume", None)
        k = doc.slice_index if volume is not None else 0
        frame = doc.frame(k=k) if volume is not None else None
        number = doc.image_position(k=k) + 1 if volume is not None else 0
        out = Path(tempfile.mkdtemp(dir=self.temp)) / fields["id"] / fields["version"]
        self._say("Exporting into a temporary folder\u2026")
        self._start("preview", preview_task, self.path_edit.text().strip(), fields, str(out),
                    options, volume, k, frame, number,
                    on_result=lambda got: self._on_previewed(got, state, out))
        return True

    def _on_previewed(self, got: Preview, state: str, folder: Path) -> None:
        self.previewed = (state, folder)
        self.result_label.setText(got.summary)
        if got.thumbnail is not None:
            rgb = got.thumbnail
            image = QImage(rgb.data, rgb.shape[1], rgb.shape[0], 3 * rgb.shape[1],
                           QImage.Format.Format_RGB888).copy()
            self.thumb_label.setPixmap(QPixmap.fromImage(image).scaled(
                THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation))
        else:
            self.thumb_label.setText("no slice shown")
        self.report_view.setPlainText(report_text(got.inspection))
        self._say("Preview ready; nothing is saved yet. Import puts this model into your "
                  "model store.")
        self._set_busy(None)
        self.sigPreviewed.emit(got)

    @guarded
    def import_model(self) -> bool:
        """Install the previewed folder (form unchanged) or export into the store (worker)."""
        request = self._request()
        if request is None:
            return False
        fields, options, state = request
        previewed = self.previewed
        folder = str(previewed[1]) if previewed is not None and previewed[0] == state and (
            previewed[1].is_dir()) else None
        self._say("Importing into your model store\u2026")
        self._target = user_models_dir() / fields["id"] / fields["version"]
        self._start("import", import_task, folder, self.path_edit.text().strip(), fields,
                    options, on_result=self._on_imported)
        return True

    def _on_imported(self, manifest: Manifest) -> None:
        self.previewed, self._target = None, None
        self.on_models_changed()  # the AI menu lists it now
        self._say(f"Imported {manifest.title} {manifest.version} into {manifest.folder}. "
                  f"The AI menu lists it under Lab {manifest.lab}.")
        self.host.set_status(f"Imported model {manifest.title} {manifest.version}")
        self._set_busy(None)
        self.sigImported.emit(manifest)

    # ----------------------------------------------------------------- workers
    def _start(self, kind: str, fn: Callable[..., Any], *args: Any,
               on_result: Callable[[Any], None]) -> None:
        if self.worker is not None:
            self.worker.cancel()  # e.g. a new file chosen while the last one is read

        def current(slot: Callable[..., None]) -> Callable[..., None]:
            return lambda *a: slot(*a) if self.worker is worker else None

        worker = self.worker = self.host.pool.start(
            fn, *args, on_result=current(on_result), on_error=current(self._on_error),
            on_partial=current(self._on_progress), on_cancelled=current(self._on_cancelled))
        self._set_busy(kind)

    def _on_progress(self, step: tuple[str, float]) -> None:
        text, fraction = step
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setValue(int(100 * min(max(fraction, 0.0), 1.0)))
        self._say(f"{text[:1].upper()}{text[1:]}\u2026")

    def _on_error(self, exc: BaseException) -> None:
        self._set_busy(None)
        if isinstance(exc, ModelError):
            text = in_dialog_words(exc.reason)
        elif isinstance(exc, OSError):
            text = (f"{exc.filename or 'A file'} cannot be read or written "
                    f"({exc.strerror or exc}).")
        else:
            log.error("model import failed", exc_info=exc)
            text = f"The import failed: {exc}"
        if self.inspection is None:  # the file itself could not be read
            self.report_view.setPlainText(text)
            self.sigInspected.emit(None)
        self.show_error(text)

    def _on_cancelled(self) -> None:
        target, self._target = self._target, None
        self._set_busy(None)
        if target is not None and (target / "manifest.json").is_file():  # cancelled too late
            self.on_models_changed()
            self._say(f"Cancelled too late: the model was already in your store at {target}; "
                      "the AI menu lists it.")
        else:
            self._say("Cancelled; nothing was saved in your model store.")

    @guarded
    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self._say("Cancelling (at the next step)\u2026")

    def _set_busy(self, kind: str | None) -> None:
        self.running, busy = kind, kind is not None
        if not busy:
            self.worker = None  # its outcome is in: a late signal of it is dropped
        ready = not busy and self.inspection is not None
        self.preview_button.setEnabled(ready)
        self.import_button.setEnabled(ready)
        self.cancel_button.setEnabled(busy)
        self.progress_bar.setVisible(busy)
        self.progress_bar.setRange(0, 0)  # "busy" until the first progress report

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def shutdown(self) -> None:
        """The window closes: stop the worker, remove the temporary folders."""
        worker = self.worker
        if worker is not None:
            worker.cancel()
            worker.done.wait(10)
        shutil.rmtree(self.temp, ignore_errors=True)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        """A preview is not kept once the dialog is closed (its worker's folder neither)."""
        if self.worker is not None:
            self.worker.cancel()
        elif self.temp.is_dir():
            for folder in self.temp.iterdir():
                shutil.rmtree(folder, ignore_errors=True)
        self.previewed = None
        super().closeEvent(event)
