"""Model -> Versions...: every installed version of a model, its metrics, and the switch.

One row per version, oldest first: where it lives (the shipped read-only models/, the user's
model store, or a MEDVIEWER_MODELS_DIR folder), whether the viewer runs it, when it was made
(the date its manifest records, never a file's time: a copy is not a new model), its
held-out scalar metrics and a summary of how it was trained (a segmentation's per-label
scores: in a table of their own under it, for the selected version, labels as rows). Each
metric cell names how many samples it was measured on and on which validation set (A, B, ...
explained under the table): numbers measured on different sets are not comparable, and the
note under the table says which rows are and which are not. "Use this version" makes the
selected row active (a rollback or a roll forward: `versions.set_active`) and
`models_changed` switches the viewer to it without a restart. A pointer that names a missing
version is shown in words above the table. The logic is callable without clicking:
`show_model(model_id)`, `use_version(version)`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
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
from medviewer.training.segmentation_metrics import (
    headline_metrics,
    metric_heading,
    per_label_table,
)
from medviewer.ui.common.guard import guarded
from medviewer.ui.common.host import Host

ORIGIN_TEXT = {"shipped": "shipped (read-only)", "user": "your model store",
               "other": "MEDVIEWER_MODELS_DIR"}
FIXED_COLUMNS = ("Version", "Source", "In use", "Created", "Measured on")
MAX_METRICS = 10
DATE_KEYS = ("created", "date", "finished", "trained_at", "exported_at", "time")
SUMMARY_KEYS = ("init", "from_version", "epochs", "data", "job", "command", "pretrained")
ACTIVE_TEXT = "\u2713 active"
BASELINE_COLUMN = "Versus its baseline (same set)"


# ----------------------------------------------------------------------- what a row says
def scalar_metrics(manifest: Any) -> dict[str, float]:
    """The manifest's held-out numbers (not nested tables, texts, flags, the sample count
    or training-set figures, which are no held-out evidence); a segmentation's per-label
    scores are in the per-label table instead (`label_rows`)."""
    return {k: v for k, v in headline_metrics(manifest.metrics).items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k != "n"
            and "train" not in k}


def label_rows(manifest: Any) -> tuple[list[str], list[list[str]]]:
    """(headings, one row of text per label) of a segmentation's per-label held-out scores:
    labels as rows, metrics as columns with their units; ([], []) when it has none."""
    keys, table = per_label_table(manifest.metrics)
    if not table:
        return [], []
    headings = ["Label"] + [metric_heading(k, manifest.metrics) for k in keys]
    rows = [[name] + ["n/a" if s[k] is None else _number(s[k]) for k in keys]
            for name, s in table.items()]
    return headings, rows


def measured_on(manifest: Any) -> str:
    """Where the numbers come from: versions measured on different splits do not compare
    down a column, so the table says so on every row."""
    split, n = manifest.metrics.get("split", ""), manifest.metrics.get("n")
    text = f"{n} samples: {split}" if n is not None else str(split)
    return text if len(text) <= 60 else text[:59] + "\u2026"


def metric_columns(rows: list[ModelVersion]) -> list[str]:
    """Every scalar metric any version has, in the order first seen (at most MAX_METRICS)."""
    names: list[str] = []
    for row in rows:
        names += [k for k in scalar_metrics(row.manifest) if k not in names]
    return names[:MAX_METRICS]


def created(row: ModelVersion) -> str:
    """When the version was made, as its manifest records it ('unknown' when it does not:
    the file's time is when it was installed or copied, not made)."""
    for key in DATE_KEYS:
        value = row.manifest.provenance.get(key)
        if isinstance(value, str) and value[:4].isdigit():
            text = value[:16].replace("T", " ")
            return f"{text} UTC" if len(value) > 10 and value.endswith(("+00:00", "Z")) else text
    return "unknown"


def validation_sets(rows: list[ModelVersion]) -> dict[str, str]:
    """Each distinct validation set (the manifests' metrics "split") -> a letter, A, B, ...
    in the order the rows first name them."""
    out: dict[str, str] = {}
    for row in rows:
        split = str(row.manifest.metrics.get("split", "") or "not stated")
        if split not in out:
            out[split] = _letter(len(out))
    return out


def _letter(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"S{i + 1}"


def set_of(row: ModelVersion, sets: dict[str, str]) -> str:
    return sets[str(row.manifest.metrics.get("split", "") or "not stated")]


def metric_cell(value: float, manifest: Any, letter: str) -> str:
    """'0.9991 (716 samples, set A)': the number, how many images (slices, films, series:
    the set's description says) it was measured on, and which set."""
    n = manifest.metrics.get("n")
    return f"{_number(value)} ({n} samples, set {letter})" if n is not None else \
        f"{_number(value)} (set {letter})"


def versus_baseline(manifest: Any) -> str:
    """'vs 1.0.0: dice 0.9493 -> 0.9508, not enough validation cases to tell (2 cases)':
    the comparison its training run made on one set ('' for a version not retrained here)."""
    from medviewer.training.metrics import VERDICTS

    b = manifest.metrics.get("versus_baseline")
    if not isinstance(b, dict):
        return ""
    numbers = ""
    if isinstance(b.get("baseline"), int | float) and isinstance(b.get("candidate"), int | float):
        numbers = f"{b.get('metric')} {b['baseline']:.4g} \u2192 {b['candidate']:.4g}, "
    verdict = VERDICTS.get(str(b.get("verdict")), str(b.get("verdict")))
    return f"vs {b.get('version')}: {numbers}{verdict} ({b.get('cases')} cases)"


def comparability(rows: list[ModelVersion], sets: dict[str, str]) -> str:
    """The legend of the sets and which versions' numbers compare (only on one set)."""
    if not rows:
        return ""
    legend = "; ".join(f"set {letter}: {split}" for split, letter in sets.items())
    if len(sets) == 1:
        return f"All versions were measured on one validation set ({legend}): their numbers " \
            "compare down a column."
    groups = {letter: [r.version for r in rows if set_of(r, sets) == letter]
              for letter in sets.values()}
    parts = [f"{', '.join(v)} on set {letter}" for letter, v in groups.items()]
    return (f"Not comparable across sets: {'; '.join(parts)}. Numbers compare only between "
            f"versions measured on the same set; a retrained version's comparison with its "
            f"baseline on one set is in its training run's compare.json. Sets: {legend}")


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
        self.sets: dict[str, str] = {}
        self._build()
        self.resize(980, 480)

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
        self.labels_title = QLabel()
        self.labels_table = QTableWidget(0, 0)  # per-label scores of the selected version
        self.labels_table.setObjectName("versionLabels")
        self.labels_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.labels_table.verticalHeader().setVisible(False)
        self.labels_table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        layout.addWidget(self.labels_title)
        layout.addWidget(self.labels_table, 1)
        self.sets_label = QLabel()
        self.sets_label.setObjectName("versionsSets")
        self.sets_label.setWordWrap(True)
        self.sets_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.sets_label)
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
        self.sets = validation_sets(self.rows)
        self.sets_label.setText(comparability(self.rows, self.sets))
        headers = [*FIXED_COLUMNS, *metrics, BASELINE_COLUMN, "Training"]
        self.table.clearContents()
        self.table.setColumnCount(len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        self.table.setRowCount(len(self.rows))
        for r, row in enumerate(self.rows):
            for c, (text, tip) in enumerate(self._cells(row, metrics, self.sets)):
                item = QTableWidgetItem(text)
                item.setToolTip(tip)
                if len(FIXED_COLUMNS) <= c < len(headers) - 2:
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
    def _cells(row: ModelVersion, metrics: list[str], sets: dict[str, str]
               ) -> list[tuple[str, str]]:
        """(text, tooltip) of each column of one version."""
        values = scalar_metrics(row.manifest)
        split = row.manifest.metrics.get("split", "")
        letter = set_of(row, sets)
        provenance = json.dumps(row.manifest.provenance, indent=1, sort_keys=True, default=str)
        return [(row.version, str(row.folder)),
                (ORIGIN_TEXT.get(row.origin, row.origin), str(row.folder)),
                (ACTIVE_TEXT if row.active else "", ""),
                (created(row), "" if created(row) != "unknown" else
                 "The manifest records no creation date"),
                (f"set {letter}: {measured_on(row.manifest)}", str(split)),
                *[(metric_cell(values[m], row.manifest, letter) if m in values else "",
                   f"set {letter}: {split}") for m in metrics],
                (versus_baseline(row.manifest), "Both versions measured on this version's "
                 "validation set, by the training run that made it"),
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
        self._fill_labels(row)

    def _fill_labels(self, row: ModelVersion | None) -> None:
        """The selected version's per-label scores, when it has them."""
        headings, rows = label_rows(row.manifest) if row is not None else ([], [])
        table = self.labels_table
        table.clear()
        table.setColumnCount(len(headings))
        table.setRowCount(len(rows))
        table.setHorizontalHeaderLabels(headings)
        for r, cells in enumerate(rows):
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                          | Qt.AlignmentFlag.AlignVCenter)
                table.setItem(r, c, item)
        if rows:
            letter = set_of(row, self.sets)
            self.labels_title.setText(f"Per label, version {row.version} (set {letter}: "
                                      f"{measured_on(row.manifest)})")
        for widget in (self.labels_title, table):
            widget.setVisible(bool(rows))

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
