"""The Retrain dialog's list of training series: the open study's annotated series, checked
when the model reads their modality, plus folders the reader adds by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QListWidget, QListWidgetItem

from medviewer.ui.training.process import annotated_series, series_folder

FOLDER, MODALITY, BY_HAND, UID = (Qt.ItemDataRole.UserRole, Qt.ItemDataRole.UserRole + 1,
                                  Qt.ItemDataRole.UserRole + 2, Qt.ItemDataRole.UserRole + 3)
EMPTY_TEXT = ("No annotated series in the open study: save corrections first, add a folder, "
              "or use demo cases")


class SeriesPicker(QListWidget):
    """Checkable series folders; `checked_folders()` is what the job's data.series lists."""

    def __init__(self) -> None:
        super().__init__()
        self.setWordWrap(True)
        self.setMinimumHeight(90)
        self.setToolTip("Series whose saved annotations (SEG / SR) are the truth")

    def refresh(self, scan_result: Any, reads: set[str]) -> None:
        """List the scanned series with a SEG / SR, keeping the folders added by hand."""
        added = [(i.text(), i.data(FOLDER)) for i in self.series_items() if i.data(BY_HAND)]
        self.clear()
        for text, folder in added:
            self._add(text, folder, by_hand=True)
        for series, kinds in annotated_series(scan_result):
            text = (f"{series.modality} {series.description or series.series_instance_uid} "
                    f"[{series.patient_key}] ({', '.join(k.upper() for k in kinds)})")
            self._add(text, series_folder(series), series.modality,
                      uid=series.series_instance_uid)
        if self.count() == 0:
            placeholder = QListWidgetItem(EMPTY_TEXT)
            placeholder.setFlags(Qt.ItemFlag.NoItemFlags)
            self.addItem(placeholder)
        self.check_matching(reads)

    def add_folder(self, folder: str | Path) -> None:
        """A series folder chosen by hand: its workspace annotations become training data."""
        self._add(f"{Path(folder).name} (folder)", str(Path(folder).resolve()), by_hand=True)

    def check_matching(self, reads: set[str]) -> None:
        """Check the series of a modality the model reads (all of them when it names none)."""
        for item in self.series_items():
            modality = item.data(MODALITY)
            fits = not reads or not modality or modality in reads
            item.setCheckState(Qt.CheckState.Checked if fits else Qt.CheckState.Unchecked)

    def series_items(self) -> list[QListWidgetItem]:
        items = (self.item(i) for i in range(self.count()))
        return [i for i in items if i.data(FOLDER)]

    def checked_entries(self) -> list[Any]:
        """The job's data.series: a listed series as {"folder", "uid"} (a folder may hold
        series the reader left unchecked), a folder added by hand as its path."""
        out: list[Any] = []
        for item in self.series_items():
            if item.checkState() != Qt.CheckState.Checked:
                continue
            uid, folder = item.data(UID), item.data(FOLDER)
            entry = {"folder": folder, "uid": uid} if uid else folder
            if entry not in out:
                out.append(entry)
        return out

    def _add(self, text: str, folder: str, modality: str = "", by_hand: bool = False,
             uid: str = "") -> None:
        item = QListWidgetItem(text)
        item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
        item.setData(FOLDER, folder)
        item.setData(MODALITY, modality)
        item.setData(BY_HAND, by_hand)
        item.setData(UID, uid)
        item.setToolTip(folder)
        item.setCheckState(Qt.CheckState.Checked)
        self.addItem(item)
