"""Model -> Versions...: every installed version of a model, its metrics, and the switch.

One row per version, oldest first: where it lives (the shipped read-only models/, the user's
model store, or a MEDVIEWER_MODELS_DIR folder), whether the viewer runs it, when it was made,
its held-out scalar metrics (one column each, so versions compare down a column) and a summary
of how it was trained. "Use this version" makes the selected row active (a rollback or a roll
forward: `versions.set_active`) and `models_changed` switches the viewer to it without a
restart. A pointer that names a missing version is shown in words above the table. The logic
is callable without clicking: `show_model(model_id)`, `use_version(version)`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from medviewer.inference import ModelError, registry, versions
from medviewer.inference.versions import ModelVersion
from medviewer.ui.common.guard import guarded
from medviewer.ui.common.host import Host

ORIGIN_TEXT = {"shipped": "shipped (read-only)", "user": "your model store",
               "other": "MEDVIEWER_MODELS_DIR"}
FIXED_COLUMNS = ("Version", "Source", "In use", "Created", "Measured on")
MAX_METRICS = 10
DATE_KEYS = ("created", "date", "finished", "trained_at", "exported_at", "time")
SUMMARY_KEYS = ("init", "from_version", "epochs", "data", "job", "command", "pretrained")
ACTIVE_TEXT = "\u2713 active"


# ----------------------------------------------------------------------- what a row says
def scalar_metrics(manifest: Any) -> dict[str, float]:
    """The manifest's held-out numbers (not nested tables, texts, flags, the sample count
    or training-set figures, which are no held-out evidence)."""
    return {k: v for k, v in manifest.metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k != "n"
            and "train" not in k}


def measured_on(manifest: Any) -> str:
    """Where the numbers come from: versions measured on different splits do not compare
    down a column, so the table says so on every row."""
    split, n = manifest.metrics.get("split", ""), manifest.metrics.get("n")
    text = f"n {n}: {split}" if n is not None else str(split)
    return text if len(text) <= 60 else text[:59] + "\u2026"


def metric_columns(rows: list[ModelVersion]) -> list[str]:
    """Every scalar metric any version has, in the order first seen (at most MAX_METRICS)."""
    names: list[str] = []
    for row in rows:
        names += [k for k in scalar_metrics(row.manifest) if k not in names]
    return names[:MAX_METRICS]


def created(row: ModelVersion) -> str:
    """When the version was made: a date in its provenance, else its manifest's file time."""
    for key in DATE_KEYS:
        value = row.manifest.provenance.get(key)
        if isinstance(value, str) and value[:4].isdigit():
            return value[:16].replace("T", " ")
    try:
        stamp = (row.folder / "manifest.json").stat().st_mtime
    except OSError:
        return ""
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")


def provenance_summary(provenance: dict[str, Any], limit: int = 140) -> str:
    """'init: current; epochs: 3; data: ...' from the keys a reader asks about first."""
    parts = [f"{k}: {_short(provenance[k])}" for k in SUMMARY_KEYS if k in provenance]
    text = "; ".join(parts) or "; ".join(f"{k}: {_short(v)}" for k, v in provenance.items())
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.4g}"


# ----------------------------------------------------------------------- the dialog
class VersionsDialog(QDialog):
    """The Versions window of one main window (modeless: the viewer stays usable)."""

    sigActiveChanged = Signal(str, str)  # model id, the version now in use

    def __init__(self, host: Host, *,
                 on_models_changed: Callable[[], None] = lambda: None) -> None:
        super().__init__(host.dialog_parent())
        self.host, self.on_models_changed = host, on_models_changed
        self.setWindowTitle("Model versions")
        self.setObjectName("versionsDialog")
        self.setModal(False)
        self.rows: list[ModelVersion] = []
        self._build()
        self.resize(980, 360)

    def _build(self) -> None:
        self.model_combo = QComboBox()
        self.model_combo.currentIndexChanged.connect(lambda _i: self.reload())
        top = QHBoxLayout()
        top.addWidget(QLabel("Model"))
        top.addWidget(self.model_combo, 1)
        self.message = QLabel()
        self.message.setObjectName("versionsMessage")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #e0a030;")
        self.table = QTableWidget(0, len(FIXED_COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.itemSelectionChanged.connect(self._sync_button)
        self.table.cellDoubleClicked.connect(lambda row, _col: self.use_version(self._at(row)))
        self.use_button = QPushButton("Use this version")
        self.use_button.setToolTip("Run this version from now on (roll back or forward); "
                                   "no version is deleted")
        self.use_button.clicked.connect(lambda _checked=False: self.use_version())
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.use_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.message)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)

    def show_error(self, text: str) -> None:  # what `guarded` calls
        self.message.setText(text)
        self.message.setVisible(True)

    # ----------------------------------------------------------------- models and rows
    def _fill_models(self) -> None:
        """Every model id with an installed version, by lab (reading manifests only)."""
        grouped, _ = registry.model_versions()
        newest = sorted((ms[-1] for ms in grouped.values()), key=lambda m: (m.lab, m.id))
        current = self.model_id
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for m in newest:
            self.model_combo.addItem(f"Lab {m.lab}: {m.title} ({m.id})", m.id)
        self.model_combo.setCurrentIndex(max(self.model_combo.findData(current), 0))
        self.model_combo.blockSignals(False)

    @property
    def model_id(self) -> str | None:
        return self.model_combo.currentData()

    @guarded
    def show_model(self, model_id: str | None) -> None:
        """List the models again and show the versions of `model_id` (None: keep the pick)."""
        self._fill_models()
        if model_id is not None:
            index = self.model_combo.findData(model_id)
            if index >= 0:
                self.model_combo.setCurrentIndex(index)
        self.reload()

    @guarded
    def reload(self) -> None:
        """Read the chosen model's versions again and rebuild the table."""
        model_id = self.model_id
        self.rows = versions.list_versions(model_id) if model_id else []
        problem = versions.active_problem(model_id) if model_id else ""
        self.message.setText(problem or ("" if self.rows else "No models are installed."))
        self.message.setVisible(bool(self.message.text()))
        self._fill_table()

    def _fill_table(self) -> None:
        metrics = metric_columns(self.rows)
        headers = [*FIXED_COLUMNS, *metrics, "Training"]
        self.table.clearContents()
        self.table.setColumnCount(len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        self.table.setRowCount(len(self.rows))
        for r, row in enumerate(self.rows):
            for c, (text, tip) in enumerate(self._cells(row, metrics)):
                item = QTableWidgetItem(text)
                item.setToolTip(tip)
                if c >= len(FIXED_COLUMNS) and c < len(headers) - 1:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                          | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(headers) - 1, QHeaderView.ResizeMode.Stretch)
        active = next((r for r, row in enumerate(self.rows) if row.active), -1)
        if active >= 0:
            self.table.selectRow(active)
        self._sync_button()

    @staticmethod
    def _cells(row: ModelVersion, metrics: list[str]) -> list[tuple[str, str]]:
        """(text, tooltip) of each column of one version."""
        values = scalar_metrics(row.manifest)
        split = row.manifest.metrics.get("split", "")
        provenance = json.dumps(row.manifest.provenance, indent=1, sort_keys=True, default=str)
        return [(row.version, str(row.folder)),
                (ORIGIN_TEXT.get(row.origin, row.origin), str(row.folder)),
                (ACTIVE_TEXT if row.active else "", ""),
                (created(row), ""),
                (measured_on(row.manifest), str(split)),
                *[(_number(values[m]) if m in values else "", str(split)) for m in metrics],
                (provenance_summary(row.manifest.provenance), provenance)]

    # ----------------------------------------------------------------- switching
    def _at(self, row: int) -> str | None:
        return self.rows[row].version if 0 <= row < len(self.rows) else None

    def selected_version(self) -> str | None:
        selected = self.table.selectionModel().selectedRows()
        return self._at(selected[0].row()) if selected else None

    def _sync_button(self) -> None:
        version = self.selected_version()
        row = next((r for r in self.rows if r.version == version), None)
        self.use_button.setEnabled(row is not None and not row.active)

    @guarded
    def use_version(self, version: str | None = None) -> bool:
        """Make `version` (default: the selected row) the one the viewer runs; False when
        refused (the reason is shown above the table)."""
        model_id, version = self.model_id, version or self.selected_version()
        if not model_id or not version:
            return False
        try:
            manifest = versions.set_active(model_id, version)
        except ModelError as exc:
            self.show_error(f"Cannot use {model_id} {version}: {exc.reason}")
            return False
        self.on_models_changed()
        self.reload()
        self.host.set_status(f"{manifest.title}: now using version {version}")
        self.sigActiveChanged.emit(model_id, version)
        return True
