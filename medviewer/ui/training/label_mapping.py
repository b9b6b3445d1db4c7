"""The Retrain dialog's label mapping: which model label each annotation segment trains as.

One row per segment of the chosen series' SEGs: its name, its voxels, and a choice of the
model's labels plus "exclude". Rows start on the label the segment matches by name or SNOMED
code (`training.labels.auto_label`); one that matches none starts on "choose a label", and
the dialog will not start while such a segment holds voxels (`refusal()`): its voxels would
otherwise be trained as background. The choices become the job's data.segment_labels
(`mapping()`). `read()` reads the chosen series' SEGs in a worker (pydicom only, the source
images are not loaded); a newer `read()` drops the answer of an older one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGroupBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from medviewer.training.labels import Segment, auto_label, series_segments

CHOOSE = "\u2014 choose a label \u2014"
EXCLUDE_TEXT = "exclude (ignored in training)"
_UNDECIDED, _EXCLUDED = "", "\x00exclude"  # combo data: no choice yet / excluded


class LabelMappingBox(QGroupBox):
    """Segment | voxels | model label; `mapping()` for the job, `unmapped()` blocks Start."""

    sigChanged = Signal()

    def __init__(self) -> None:
        super().__init__("Label mapping (annotation segment \u2192 model label)")
        self.setObjectName("labelMapping")
        self.segments: list[Segment] = []
        self.labels: list[str] = []
        self._chosen: dict[str, str] = {}  # the reader's own choices, kept across refreshes
        self.pending = False  # a read of the series' SEGs is under way
        self._reads = 0
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Segment", "Voxels", "Model label"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        for column, mode in enumerate((QHeaderView.ResizeMode.ResizeToContents,
                                       QHeaderView.ResizeMode.ResizeToContents,
                                       QHeaderView.ResizeMode.Stretch)):
            header.setSectionResizeMode(column, mode)
        self.table.setMinimumHeight(70)
        self.note.setVisible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(self.note)
        layout.addWidget(self.table)
        self.combos: list[QComboBox] = []

    def read(self, pool: Any, entries: Sequence[Any], labels: Sequence[str]) -> None:
        """The segments of the SEGs of `entries` (the job's data.series), in a worker of
        `pool`; sigChanged when they are shown."""
        self._reads += 1
        if not entries:
            self.pending = False
            self.set_segments([], labels)
            return
        self.pending = True
        self._note("Reading the segments of the chosen series\u2026")
        self.sigChanged.emit()
        run, entries = self._reads, list(entries)
        pool.start(lambda _ctx: series_segments(entries),
                   on_result=lambda found: self._on_read(run, labels, *found),
                   on_error=lambda exc: self._on_read(run, labels, [], [str(exc)]))

    def _on_read(self, run: int, labels: Sequence[str], segments: list[Segment],
                 problems: list[str]) -> None:
        if run == self._reads:  # else the series or the model changed meanwhile
            self.pending = False
            self.set_segments(segments, labels, problems)

    def refusal(self, model: str) -> str:
        """Why training must not start yet ('' when it may)."""
        if self.pending:
            return "Reading the segments of the chosen series\u2026"
        undecided = self.unmapped()
        if not undecided:
            return ""
        names = ", ".join(f"{s.name!r} ({s.voxels:,} voxels)" for s in undecided)
        return (f"Map or exclude {names} in the label mapping: it matches no label of {model}, "
                "and unmapped its voxels would train as background.")

    def set_segments(self, segments: Sequence[Segment], labels: Sequence[str],
                     problems: Sequence[str] = ()) -> None:
        """One row per segment, each on the reader's earlier choice, else the automatic
        match, else "choose a label"."""
        self.segments, self.labels = list(segments), list(labels)
        self.table.setRowCount(len(self.segments))
        self.combos = []
        for row, segment in enumerate(self.segments):
            self.table.setItem(row, 0, QTableWidgetItem(segment.name))
            voxels = QTableWidgetItem(f"{segment.voxels:,}")
            voxels.setToolTip("\n".join(segment.files))
            self.table.setItem(row, 1, voxels)
            combo = self._combo(segment)
            self.table.setCellWidget(row, 2, combo)
            self.combos.append(combo)
        parts = list(problems) or ([] if self.segments else
                                   ["The chosen series hold no saved segmentation."])
        self._note("\n".join(parts))
        self.sigChanged.emit()

    def _note(self, text: str) -> None:
        self.note.setText(text)
        self.note.setVisible(bool(text))

    def _combo(self, segment: Segment) -> QComboBox:
        combo = QComboBox()
        combo.addItem(CHOOSE, _UNDECIDED)
        for label in self.labels:
            combo.addItem(label, label)
        combo.addItem(EXCLUDE_TEXT, _EXCLUDED)
        wanted = self._chosen.get(segment.name.lower())
        if wanted is None:
            wanted = auto_label(segment.name, segment.code, self.labels) or _UNDECIDED
        combo.setCurrentIndex(max(combo.findData(wanted), 0))
        combo.currentIndexChanged.connect(
            lambda _i, s=segment.name, c=combo: self._on_choice(s, c))
        return combo

    def _on_choice(self, segment: str, combo: QComboBox) -> None:
        self._chosen[segment.lower()] = str(combo.currentData())
        self.sigChanged.emit()

    def choose(self, segment: str, label: str | None) -> None:
        """What picking in a row's list does (None: exclude); for tests and scripts."""
        row = next(i for i, s in enumerate(self.segments) if s.name.lower() == segment.lower())
        combo = self.combos[row]
        combo.setCurrentIndex(combo.findData(_EXCLUDED if label is None else label))

    def mapping(self) -> dict[str, str | None]:
        """data.segment_labels: every decided row (a label name, or None: excluded)."""
        out: dict[str, str | None] = {}
        for segment, combo in zip(self.segments, self.combos, strict=True):
            value = str(combo.currentData())
            if value != _UNDECIDED:
                out[segment.name] = None if value == _EXCLUDED else value
        return out

    def unmapped(self) -> list[Segment]:
        """Segments with voxels still on "choose a label"."""
        return [s for s, c in zip(self.segments, self.combos, strict=True)
                if s.voxels > 0 and c.currentData() == _UNDECIDED]
