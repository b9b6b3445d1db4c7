"""The Measurements panel: every ruler and ROI of the open series, with its value.

One row per measurement, in the order drawn: what it is, the plane and image it lies on, its
value (the same text as its label on the image, from `measure_values`). Double-click (or Go To)
shows that image, switching to MPR for one drawn on a reformatted plane; Delete (button or
key) removes it. The rows follow the document: a measurement drawn, moved or deleted in any
view, another time point or slab, another series.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medviewer.ui.document.measurements import KIND_NAMES, Measure, measure_text
from medviewer.ui.document.study import STACK, StudyDocument

COLUMNS = ("Type", "Image", "Value")
UID_ROLE = Qt.ItemDataRole.UserRole


class _Table(QTableWidget):
    sigDeletePressed = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self.sigDeletePressed.emit()
        else:
            super().keyPressEvent(event)


class MeasurementsPanel(QWidget):
    """The open series' measurements as a table bound to a StudyDocument."""

    sigStatusMessage = Signal(str)

    def __init__(self, document: StudyDocument, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.document = document
        self.table = _Table(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)  # the value, wrapped
        self.table.setWordWrap(True)
        self.table.cellDoubleClicked.connect(lambda row, _col: self.go_to(self.uid_at(row)))
        self.table.sigDeletePressed.connect(self.delete_selected)
        self.empty_label = QLabel("No measurements on this series: draw one with Distance, "
                                  "Rect ROI or Ellipse ROI.")
        self.empty_label.setWordWrap(True)
        self.go_button = QPushButton("Go To")
        self.go_button.clicked.connect(lambda: self.go_to(self.selected_uid()))
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self.delete_selected)
        buttons = QHBoxLayout()
        buttons.addWidget(self.go_button)
        buttons.addWidget(self.delete_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.empty_label)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        for signal in (document.sigMeasurementsChanged, document.sigVolumeChanged,
                       document.sigTimeChanged, document.sigSlabChanged):
            signal.connect(self.sync)
        self.sync()

    # ----------------------------------------------------------------- document -> rows
    def sync(self, *_args: object) -> None:
        doc, chosen = self.document, self.selected_uid()
        measures = doc.measurements if doc.has_image else []
        self.table.setRowCount(len(measures))
        for row, m in enumerate(measures):
            text = measure_text(doc, m)
            number = doc.image_position(m.plane, m.k) + 1  # as the view numbers it
            image = str(number) if m.plane == STACK else f"{number} {m.plane[:3]}"
            cells = (KIND_NAMES[m.kind], image, text)
            for col, cell in enumerate(cells):
                item = QTableWidgetItem(cell)
                item.setData(UID_ROLE, m.uid)
                item.setToolTip(f"{text}\nimage {self._where(m)}")
                self.table.setItem(row, col, item)
            if m.uid == chosen:
                self.table.selectRow(row)
        self.table.resizeRowsToContents()
        self.empty_label.setVisible(not measures)
        for button in (self.go_button, self.delete_button):
            button.setEnabled(bool(measures))

    def _where(self, m: Measure) -> str:
        count = self.document.plane(m.plane).count
        name = "as acquired" if m.plane == STACK else m.plane
        return f"{self.document.image_position(m.plane, m.k) + 1} / {count} ({name})"

    def uid_at(self, row: int) -> str | None:
        item = self.table.item(row, 0)
        return item.data(UID_ROLE) if item is not None else None

    def selected_uid(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() \
            else []
        return self.uid_at(rows[0].row()) if rows else None

    # ----------------------------------------------------------------- actions
    def go_to(self, uid: str | None) -> None:
        """Show the image the measurement lies on (MPR for a reformatted plane)."""
        doc = self.document
        m = doc.measurement(uid) if uid else None
        if m is None:
            return
        if m.plane == STACK:
            doc.set_layout("1x1")
            doc.set_slice(m.k)
        elif doc.set_layout("mpr"):
            doc.set_plane_slice(m.plane, m.k)
        self.sigStatusMessage.emit(f"{KIND_NAMES[m.kind]} on image {self._where(m)}")

    def delete_selected(self) -> None:
        uid = self.selected_uid()
        if uid is not None and self.document.remove_measurement(uid) is not None:
            self.sigStatusMessage.emit("Measurement deleted")
