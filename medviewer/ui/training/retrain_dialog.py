"""Model -> Retrain...: choose the data and the recipe, watch the model learn, keep it or not.

The dialog is modeless and never waits: training runs in a child process
(`training_process.TrainingProcess`, `medviewer train JOB.json`) whose JSON lines drive the
progress bar, the curves and the log as they arrive. Like a Slicer module, the widgets are only
read when Start is pressed (`job_from_form`) and the logic does the rest; Cancel ends the child
and nothing is published. At the end the run's compare.json is shown side by side
(`train_compare.CompareView`); "Use this version" publishes the candidate into the user's model
store and the viewer switches to it without a restart, "Discard" leaves the store untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
)

from medviewer.inference import Manifest, ModelError, list_models
from medviewer.inference.versions import publish
from medviewer.training.metrics import comparison_text
from medviewer.ui.common.guard import guarded
from medviewer.ui.common.host import Host
from medviewer.ui.training.compare import CompareView, ProgressView, load_compare, paired_of
from medviewer.ui.training.label_mapping import LabelMappingBox
from medviewer.ui.training.process import (
    CANCELLED,
    FINISHED,
    RunHistory,
    TrainingProcess,
    describe_event,
    write_job,
)
from medviewer.ui.training.series_list import SeriesPicker

log = logging.getLogger(__name__)

OPTIMIZERS = {"Adam": "adam", "SGD (momentum 0.9, Nesterov)": "sgd"}
INITS = {"Fine-tune the current version": "current", "Train from scratch": "scratch"}


class RetrainDialog(QDialog):
    """The Retrain... window of one main window. `command` replaces the child's program (tests)."""

    sigRunFinished = Signal(str)  # "finished" | "failed" | "cancelled"
    sigPublished = Signal(object)  # the published Manifest

    def __init__(self, host: Host, model_id: str | None = None, *,
                 command: list[str] | None = None,
                 on_models_changed: Callable[[], None] = lambda: None) -> None:
        super().__init__(host.dialog_parent())
        self.host, self.on_models_changed = host, on_models_changed
        self.setWindowTitle("Retrain a model")
        self.setObjectName("retrainDialog")
        self.setModal(False)  # the viewer stays usable while a model trains
        self.history = RunHistory()
        self.process = TrainingProcess(self, command=command)
        self.process.sigEvent.connect(self._on_event)
        self.process.sigStderr.connect(lambda line: self.log_view.appendPlainText(line))
        self.process.sigFailed.connect(self._on_failed)
        self.process.sigFinished.connect(self._on_finished)
        self.job_path: Path | None = None
        self.extra_job: dict[str, Any] = {}  # merged into the job (scripts, tests)
        self.models: dict[str, Manifest] = {}
        self._segments_timer = QTimer(self)  # many check changes at once: one reading
        self._segments_timer.setSingleShot(True)
        self._segments_timer.timeout.connect(self.refresh_segments)
        self._build(model_id)
        self._segments_timer.stop()  # read once now, not again when the timer fires
        self.refresh_segments()
        self.resize(1100, 720)
        app = QCoreApplication.instance()
        if app is not None:  # the child must not outlive the viewer
            app.aboutToQuit.connect(self.shutdown)

    # ----------------------------------------------------------------- construction
    def _build(self, model_id: str | None) -> None:
        left = QVBoxLayout()
        left.addWidget(self._model_box(model_id))
        left.addWidget(self._data_box())
        self.mapping_box = LabelMappingBox()
        self.mapping_box.sigChanged.connect(self._sync_start)
        left.addWidget(self.mapping_box)
        left.addStretch(1)
        left.addWidget(self._recipe_box())
        left.addLayout(self._buttons())
        self.tabs = QTabWidget()
        self.progress_view = ProgressView()
        view = self.progress_view  # shortcuts used below and by tests
        self.progress_bar, self.eta_label = view.progress_bar, view.eta_label
        self.curves, self.log_view = view.curves, view.log_view
        self.tabs.addTab(view, "Progress")
        self.compare_view = CompareView()
        self.tabs.addTab(self.compare_view, "Comparison")
        self.tabs.setTabEnabled(1, False)
        layout = QHBoxLayout(self)
        layout.addLayout(left, 2)
        layout.addWidget(self.tabs, 5)
        self._set_running(False)

    def _model_box(self, model_id: str | None) -> QGroupBox:
        box = QGroupBox("Model")
        form = QFormLayout(box)
        self.model_combo = QComboBox()
        self.reload_models(model_id or "")
        self.model_combo.currentIndexChanged.connect(self._on_model_changed)
        form.addRow("Model", self.model_combo)
        self.init_combo = _combo(INITS)
        self.init_combo.currentIndexChanged.connect(self._on_model_changed)
        form.addRow("Start from", self.init_combo)
        return box

    def _data_box(self) -> QGroupBox:
        box = QGroupBox("Training data")
        form = QFormLayout(box)
        self.series_list = SeriesPicker()
        add = QPushButton("Add folder\u2026")
        add.clicked.connect(self.add_folder_dialog)
        form.addRow(self.series_list)
        form.addRow("Annotated series", add)
        self.demo_spin = _spin(0, 10_000, 8, "Generated demo cases added to the data (0: none)")
        self.val_spin = _double(0.05, 0.9, 0.25, 2, 0.05)
        self.seed_spin = _spin(0, 2**31 - 1, 0, "Same seed, same patients in the validation set")
        form.addRow("Demo cases", self.demo_spin)
        form.addRow("Validation fraction", self.val_spin)
        form.addRow("Split seed", self.seed_spin)
        self.refresh_series()
        self.series_list.itemChanged.connect(lambda _item: self._segments_timer.start(0))
        return box

    def _recipe_box(self) -> QGroupBox:
        box = QGroupBox("Training")
        form = QFormLayout(box)
        self.epochs_spin = _spin(1, 10_000, 3)
        self.lr_spin = _double(1e-6, 1.0, 1e-3, 6, 1e-4)
        self.batch_spin = _spin(1, 4096, 8)
        self.optimizer_combo = _combo(OPTIMIZERS)
        self.patience_spin = _spin(0, 1000, 3, "Stop after this many epochs without a better "
                                   "validation score (0: never stop early)")
        for label, widget in (("Epochs", self.epochs_spin), ("Learning rate", self.lr_spin),
                              ("Batch size", self.batch_spin),
                              ("Optimiser", self.optimizer_combo),
                              ("Early stopping patience", self.patience_spin)):
            form.addRow(label, widget)
        self._on_model_changed()
        return box

    def _buttons(self) -> QVBoxLayout:
        column = QVBoxLayout()
        row, end = QHBoxLayout(), QHBoxLayout()
        self.start_button = _button("Start", self.start, row)
        self.cancel_button = _button("Cancel", self.cancel, row)
        self.use_button = _button("Use this version", self.use_candidate, end)
        self.discard_button = _button("Discard", self.discard, end)
        self.status_label = QLabel("Choose the data and press Start.")
        self.status_label.setObjectName("retrainStatus")
        self.status_label.setWordWrap(True)
        column.addLayout(row)
        column.addLayout(end)
        column.addWidget(self.status_label)
        return column

    # ----------------------------------------------------------------- the form
    def reload_models(self, chosen: str | None = None) -> None:
        """List the installed models with their active versions (after publishing too)."""
        chosen = chosen or self.model_id
        manifests = [m for m in list_models()[0] if not m.external]  # imported files: no torch
        self.models = {m.id: m for m in manifests}
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for m in manifests:
            self.model_combo.addItem(f"{m.title}  v{m.version}", m.id)
        self.model_combo.setCurrentIndex(max(self.model_combo.findData(chosen), 0))
        self.model_combo.blockSignals(False)

    def active_changed(self) -> None:
        """The active versions changed elsewhere (a rollback in Versions): list them again,
        and when the chosen model now runs another version than this dialog showed, say so
        and clear the last run's curves and comparison, which were of the old one."""
        before = {k: m.version for k, m in self.models.items()}
        self.reload_models()
        manifest = self.models.get(self.model_id)
        if manifest is None or self.process.running or \
                before.get(manifest.id) == manifest.version:
            return
        self._reset_run()
        self._set_running(False)
        self._status(f"Now using {manifest.id} {manifest.version} (chosen in Model > "
                     "Versions); the last run's curves and comparison were cleared.")

    @property
    def model_id(self) -> str:
        return str(self.model_combo.currentData() or "")

    def _on_model_changed(self, _index: int = 0) -> None:
        """Defaults of the model's recipe: detection trains with SGD, the rest with Adam;
        fine-tuning takes a tenth of a fresh start's learning rate, so a few corrected cases
        adjust the model instead of overwriting what it knew."""
        manifest = self.models.get(self.model_id)
        if manifest is None or not hasattr(self, "optimizer_combo"):
            return
        sgd = manifest.task == "detection"
        self.optimizer_combo.setCurrentIndex(list(OPTIMIZERS.values()).index(
            "sgd" if sgd else "adam"))
        fresh = self.init_combo.currentData() == "scratch"
        self.lr_spin.setValue((5e-3 if sgd else 1e-3) * (1.0 if fresh else 0.1))
        self._check_matching_series()
        self._segments_timer.start(0)

    def refresh_series(self) -> None:
        """List the open study's annotated series again (after a save, another study)."""
        self.series_list.refresh(self.host.scan_result, self._reads())

    def _reads(self) -> set[str]:
        manifest = self.models.get(self.model_id)
        return set(manifest.input.modalities) if manifest is not None else set()

    # ----------------------------------------------------------------- the label mapping
    def _segmentation(self) -> bool:
        manifest = self.models.get(self.model_id)
        return manifest is not None and manifest.task == "segmentation"

    def refresh_segments(self) -> None:
        """Read the chosen series' segments into the label mapping (a worker); only a
        segmentation model trains on segments."""
        segmentation = self._segmentation()
        self.mapping_box.setVisible(segmentation)
        manifest = self.models.get(self.model_id)
        self.mapping_box.read(self.host.pool,
                              self.series_list.checked_entries() if segmentation else [],
                              manifest.label_names if manifest is not None else [])

    def start_refusal(self) -> str:
        """Why Start is refused now ('' when it is not)."""
        return self.mapping_box.refusal(self.model_id) if self._segmentation() else ""

    def _sync_start(self) -> None:
        reason = self.start_refusal()
        running = self.process.running
        self.start_button.setEnabled(not running and not reason)
        self.start_button.setToolTip(reason)
        if reason and not running:
            self._status(reason)
        elif not running and self.status_label.text().startswith(("Map or exclude",
                                                                   "Reading the segments")):
            self._status("Choose the data and press Start.")

    def _check_matching_series(self) -> None:
        self.series_list.check_matching(self._reads())

    def _series_items(self) -> list[QListWidgetItem]:
        return self.series_list.series_items()

    @guarded
    def add_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add annotated series folder")
        if folder:
            self.add_folder(folder)

    def add_folder(self, folder: str | Path) -> None:
        self.series_list.add_folder(folder)

    def job_from_form(self) -> dict[str, Any]:
        """The job file's content (training contract) from the widgets, nothing else."""
        series = self.series_list.checked_entries()
        patience = self.patience_spin.value()
        job = {"model": self.model_id, "init": self.init_combo.currentData(),
               "data": {"series": series, "demo": self.demo_spin.value(),
                        "max_cases": None, "val_fraction": round(self.val_spin.value(), 4),
                        "split_seed": self.seed_spin.value()},
               "epochs": self.epochs_spin.value(), "batch_size": self.batch_spin.value(),
               "lr": self.lr_spin.value(), "optimizer": self.optimizer_combo.currentData(),
               "schedule": "cosine",
               "early_stopping": {"patience": patience, "min_delta": 0.0} if patience else None,
               "augment": True, "seed": 0, "device": "auto", "max_steps_per_epoch": None}
        if self._segmentation():  # which model label each segment trains as
            job["data"]["segment_labels"] = self.mapping_box.mapping()
        return {**job, **self.extra_job}

    # ----------------------------------------------------------------- running
    @guarded
    def start(self) -> bool:
        """Write the job into a new run folder and start the child; False when refused."""
        if self.process.running:
            return False
        refusal = self.start_refusal()
        if refusal:
            self._status(refusal)
            return False
        job = self.job_from_form()
        if not job["model"]:
            self._status("No model is installed to retrain.")
            return False
        if not job["data"]["series"] and not job["data"]["demo"]:
            self._status("Nothing to train on: check an annotated series or add demo cases.")
            return False
        self._reset_run()
        try:
            self.job_path = write_job(job)
        except OSError as exc:
            self._status(f"Could not write the job file: {exc}")
            return False
        self.log_view.appendPlainText(f"Job: {self.job_path}")
        self.process.start(self.job_path)
        self._set_running(True)
        self._status(f"Training {job['model']}\u2026 the viewer stays usable meanwhile.")
        return True

    def cancel(self) -> None:
        if self.process.running:
            self._status("Cancelling\u2026")
            self.process.cancel()

    def _reset_run(self) -> None:
        self.history = RunHistory()
        self.progress_view.reset()
        self.compare_view.reset()
        self.tabs.setTabEnabled(1, False)
        self.tabs.setCurrentIndex(0)

    def _set_running(self, running: bool, ended: bool = False) -> None:
        for widget in (self.model_combo, self.init_combo, self.series_list, self.demo_spin,
                       self.val_spin, self.seed_spin, self.epochs_spin, self.lr_spin,
                       self.batch_spin, self.optimizer_combo, self.patience_spin,
                       self.mapping_box):
            widget.setEnabled(not running)
        self.start_button.setEnabled(not running and not self.start_refusal())
        self.cancel_button.setEnabled(running)
        self.use_button.setEnabled(ended)
        self.discard_button.setEnabled(ended)

    @guarded
    def _on_event(self, event: dict) -> None:
        self.history.add(event)
        line = describe_event(event)
        if line:
            self.log_view.appendPlainText(line)
        self.progress_view.show_history(self.history, curves=event.get("event") in
                                        ("step", "epoch"))

    def _on_failed(self, text: str) -> None:
        self.log_view.appendPlainText(f"Failed: {text}")
        self._status(f"Training failed: {text}")

    @guarded
    def _on_finished(self, exit_code: int, status: str) -> None:
        finished = status == FINISHED
        self._set_running(False, ended=finished)
        if status == CANCELLED:
            self._status("Cancelled: nothing was published; the current version is unchanged.")
        elif finished:
            self._show_result()
        self.sigRunFinished.emit(status)

    def _show_result(self) -> None:
        done = self.history.done or {}
        run_dir = Path(str(done.get("run_dir") or self.job_path.parent))  # type: ignore[union-attr]
        path = Path(str((self.history.compare or {}).get("file") or run_dir / "compare.json"))
        compare = self.history.compare or {}
        try:
            compare = load_compare(path)
            self.compare_view.show_compare(compare)
        except (OSError, ValueError) as exc:
            self.log_view.appendPlainText(f"Warning: no comparison to show ({exc})")
        else:
            self.tabs.setTabEnabled(1, True)
            self.tabs.setCurrentIndex(1)
        paired = paired_of(compare)
        self._status(f"Finished. {comparison_text(paired, 'the per-case scores')} "
                     "Use the new version, or discard it.")

    # ----------------------------------------------------------------- keep or discard
    @property
    def candidate_folder(self) -> Path | None:
        done = self.history.done or {}
        return Path(str(done["candidate"])) if done.get("candidate") else None

    @guarded
    def use_candidate(self) -> bool:
        """Publish the candidate as the model's active version (checksums and a copy of a
        model folder: in a worker) and switch the viewer to it; sigPublished when done."""
        folder = self.candidate_folder
        if folder is None:
            return False
        self.use_button.setEnabled(False)
        self.discard_button.setEnabled(False)
        self._status("Publishing the new version\u2026")
        self.host.pool.start(lambda _ctx: publish(folder), on_result=self._published,
                                    on_error=self._publish_failed)
        return True

    def _publish_failed(self, exc: BaseException) -> None:
        reason = exc.reason if isinstance(exc, ModelError) else str(exc)
        self._status(f"Could not use this version: {reason}")
        self.use_button.setEnabled(True)
        self.discard_button.setEnabled(True)

    def _published(self, manifest: Manifest) -> None:
        self.reload_models()  # first: models_changed must find this dialog up to date
        self.on_models_changed()
        self._set_running(False, ended=False)
        text = f"Now using {manifest.id} {manifest.version}"
        self._status(text + ".")
        self.host.set_status(text)
        self.sigPublished.emit(manifest)

    def discard(self) -> None:
        """Keep the current version; the run folder stays for reading, the store untouched."""
        self._set_running(False, ended=False)
        where = self.job_path.parent if self.job_path is not None else "its run folder"
        self._status(f"Discarded: the current version stays in use (run kept in {where}).")

    def _status(self, text: str) -> None:
        self.status_label.setText(text)

    def show_error(self, text: str) -> None:  # what `guarded` calls
        self._status(text)
        self.log_view.appendPlainText(text)

    def shutdown(self) -> None:
        """End a running child (the window is closing): it must not outlive the viewer."""
        self.process.cancel()
        self.process.wait(5000)


# ----------------------------------------------------------------------- small widgets
def _combo(choices: dict[str, str]) -> QComboBox:
    combo = QComboBox()
    for text, value in choices.items():
        combo.addItem(text, value)
    return combo


def _spin(low: int, high: int, value: int, tip: str = "") -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


def _double(low: float, high: float, value: float, decimals: int, step: float
            ) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setDecimals(decimals)
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setValue(value)
    return spin


def _button(text: str, slot: Any, row: QHBoxLayout) -> QPushButton:
    button = QPushButton(text)
    button.clicked.connect(lambda _checked=False: slot())
    row.addWidget(button)
    return button
