"""Reviewing the series' boxes: drawn on the stack view, listed in the Annotate dock.

A model's boxes arrive 'proposed' (dashed outline); the reader accepts (solid) or rejects
(hidden) them one by one, or accepts every proposed box at or above a score. Each decision is
a BoxEdit on the controller's undo order, so Ctrl+Z undoes it among the brush strokes.
Boxes are in the acquired slice's pixels, so only the stack view draws them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDoubleSpinBox,
    QGraphicsRectItem,
    QHBoxLayout,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medviewer.core.annotations import ACCEPTED, PROPOSED, REJECTED, AnnotatedBox

if TYPE_CHECKING:
    from medviewer.ui.annotate_controller import AnnotateController
    from medviewer.ui.slice_view import SliceView

BOX_Z = 9  # above the AI boxes (8)
COLOURS = {PROPOSED: QColor(255, 200, 0), ACCEPTED: QColor(0, 220, 120)}


class BoxOverlay:
    """The series' boxes on the current slice of one (stack) view."""

    def __init__(self, view: SliceView) -> None:
        self.view = view
        self.items: dict[str, QGraphicsRectItem] = {}  # box uid -> its rectangle
        doc = view.document
        doc.sigLabelMapChanged.connect(lambda *_: self.refresh())
        doc.sigSliceChanged.connect(lambda *_: self.refresh())
        doc.sigVolumeChanged.connect(self.refresh)

    def boxes_shown(self) -> list[AnnotatedBox]:
        """Boxes of the current slice that are drawn (rejected ones are hidden)."""
        doc = self.view.document
        annotation = doc.annotation
        if annotation is None or doc.volume is None or self.view.plane_name != "stack":
            return []
        k = self.view.slice_index
        return [b for b in annotation.boxes.on_slice(k) if b.state != REJECTED]

    def refresh(self) -> None:
        for item in self.items.values():
            self.view.view_box.removeItem(item)
        self.items = {}
        for box in self.boxes_shown():
            rect = QRectF(self.view.pixel_to_view(box.x0, box.y0),
                          self.view.pixel_to_view(box.x1, box.y1))
            item = QGraphicsRectItem(rect)
            pen = QPen(COLOURS[box.state], 2)
            pen.setCosmetic(True)
            if box.state == PROPOSED:
                pen.setStyle(Qt.PenStyle.DashLine)
            item.setPen(pen)
            item.setZValue(BOX_Z)
            self.view.view_box.addItem(item, ignoreBounds=True)
            self.items[box.uid] = item


class BoxReview(QWidget):
    """The dock's box list: Accept / Reject per box and 'Accept all above score'."""

    def __init__(self, controller: AnnotateController) -> None:
        super().__init__()
        self.controller, self.document = controller, controller.document
        self._signature: tuple = ()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["Slice", "Label", "Score", "State", ""])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.cellDoubleClicked.connect(self._go_to)
        row = QHBoxLayout()
        self.score_spin = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.05, value=0.5)
        self.accept_above_button = QPushButton("Accept All Above Score")
        self.accept_above_button.clicked.connect(
            lambda: controller.accept_boxes_above(self.score_spin.value()))
        row.addWidget(self.score_spin)
        row.addWidget(self.accept_above_button)
        layout.addWidget(self.table)
        layout.addLayout(row)

    def boxes(self) -> list[AnnotatedBox]:
        annotation = self.document.annotation
        return list(annotation.boxes) if annotation is not None else []

    def sync(self) -> None:
        boxes = self.boxes()
        signature = tuple((b.uid, b.state, b.label) for b in boxes)
        if signature == self._signature:
            return
        self._signature = signature
        self.table.setRowCount(len(boxes))
        for row, box in enumerate(boxes):
            score = "" if box.score is None else f"{box.score:.2f}"
            for col, text in enumerate((str(box.slice_index + 1), box.label, score, box.state)):
                self.table.setItem(row, col, QTableWidgetItem(text))
            self.table.setCellWidget(row, 4, self._buttons(box))
        self.accept_above_button.setEnabled(any(b.state == PROPOSED for b in boxes))

    def _buttons(self, box: AnnotatedBox) -> QWidget:
        cell = QWidget()
        row = QHBoxLayout(cell)
        row.setContentsMargins(0, 0, 0, 0)
        for text, slot in (("Accept", self.controller.accept_box),
                           ("Reject", self.controller.reject_box)):
            button = QPushButton(text)
            button.setEnabled(box.state != (ACCEPTED if text == "Accept" else REJECTED))
            button.clicked.connect(lambda _=False, s=slot, uid=box.uid: s(uid))
            row.addWidget(button)
        return cell

    def _go_to(self, row: int, _column: int) -> None:
        boxes = self.boxes()
        if 0 <= row < len(boxes):
            self.document.set_slice(boxes[row].slice_index)
