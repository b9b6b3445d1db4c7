"""The series' boxes: drawn on every view that cuts through them, listed in the Annotate dock.

A model's boxes arrive 'proposed' (dashed outline); the reader accepts (solid) or rejects
(hidden) them one by one, or accepts every proposed box at or above a score. Each decision is
a BoxEdit on the controller's undo order, so Ctrl+Z undoes it among the brush strokes.

A box is a rectangle in its slice's pixels, one slice thick. A plane cut along the acquired
slices (the stack view, MPR axial of an axial series) shows it whole on its slice; a plane
across the slices (coronal, sagittal of an axial series) shows the line where it cuts the box:
the box's extent at the height of its slice. The selected box is drawn highlighted, with
handles for the box tool. Resampled oblique MPR planes show no boxes (kept simple: the cut
of a tilted one-slice block is a polygon, and boxes are drawn on the acquired slices anyway).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDoubleSpinBox,
    QGraphicsItem,
    QGraphicsLineItem,
    QGraphicsRectItem,
    QHBoxLayout,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medviewer.core.annotations import ACCEPTED, PROPOSED, REJECTED, AnnotatedBox
from medviewer.core.geometry import PlaneView
from medviewer.ui.viewing.layer_order import ANNOTATION_BOXES_Z

if TYPE_CHECKING:
    from medviewer.ui.annotate.controller import AnnotateController
    from medviewer.ui.viewing.slice_view import SliceView

COLOURS = {PROPOSED: QColor(255, 200, 0), ACCEPTED: QColor(0, 220, 120)}
SELECTED_COLOUR = QColor(80, 200, 255)
HANDLE_SIZE = 8  # screen pixels
Rect = tuple[float, float, float, float]  # (x0, y0, x1, y1): x = column, y = row


# ----------------------------------------------------------------- slice pixels <-> planes
def _flipped(span: tuple[float, float], n: int, flip: bool) -> tuple[float, float]:
    """A pixel-edge interval on an axis of n pixels, as a plane that runs it backwards has it."""
    return (n - span[1], n - span[0]) if flip else span


def slice_to_plane(plane: PlaneView, x: float, y: float) -> tuple[float, float]:
    """A point (x = column, y = row, pixel edges) of an acquired slice on a plane cut along the
    slices (the stack view may flip or transpose the stored pixels to face the reader)."""
    row, col = (y, x) if plane.axes[1] == 1 else (x, y)
    _, rows, cols = plane.shape
    return (cols - col if plane.flips[1] else col), (rows - row if plane.flips[0] else row)


def plane_to_slice(plane: PlaneView, px: float, py: float) -> tuple[float, float]:
    """The inverse of `slice_to_plane`: a plane point as (x, y) in the slice's own pixels."""
    _, rows, cols = plane.shape
    row = rows - py if plane.flips[0] else py
    col = cols - px if plane.flips[1] else px
    return (col, row) if plane.axes[1] == 1 else (row, col)


def box_on_plane(box: AnnotatedBox, plane: object, k: int) -> tuple[Rect, str | None] | None:
    """Where image k of `plane` shows `box`: ((x0, y0, x1, y1) in that image's pixels, thin),
    thin being None (the whole box), 'row' or 'column' (the image's rows or columns run
    across slices: the box is the line at its slice's height), or None when it misses it."""
    if not isinstance(plane, PlaneView):
        return None  # resampled oblique plane: see the module docstring
    spans = {0: (box.slice_index, box.slice_index + 1), 1: (box.y0, box.y1),
             2: (box.x0, box.x1)}
    low, high = spans[plane.axes[0]]
    if not low <= k + 0.5 < high:  # the image's voxel centres are outside the box
        return None
    _, rows, cols = plane.shape
    r0, r1 = _flipped(spans[plane.axes[1]], rows, plane.flips[0])
    c0, c1 = _flipped(spans[plane.axes[2]], cols, plane.flips[1])
    thin = "row" if plane.axes[1] == 0 else "column" if plane.axes[2] == 0 else None
    return (c0, r0, c1, r1), thin


# ----------------------------------------------------------------- drawing
class BoxOverlay:
    """The series' boxes on the current image of one view (whole, or cut as a line)."""

    def __init__(self, view: SliceView) -> None:
        self.view = view
        self.items: dict[str, QGraphicsItem] = {}  # box uid -> its rectangle (or cut line)
        self.texts: dict[str, pg.TextItem] = {}  # box uid -> its label
        self.handles = pg.ScatterPlotItem(symbol="s", size=HANDLE_SIZE, pxMode=True,
                                          pen=pg.mkPen(SELECTED_COLOUR), brush=(0, 0, 0, 200))
        self.handles.setZValue(ANNOTATION_BOXES_Z + 1)
        self.handles.setVisible(False)
        view.view_box.addItem(self.handles, ignoreBounds=True)
        doc = view.document
        doc.sigLabelMapChanged.connect(self._on_annotation_changed)
        doc.sigSliceChanged.connect(lambda *_: self.refresh())
        doc.sigCrosshairChanged.connect(lambda *_: self.refresh())
        doc.sigAnnotateToolChanged.connect(self.refresh)  # the selection, the box tool
        doc.sigVolumeChanged.connect(self.refresh)

    def _on_annotation_changed(self, box: object) -> None:
        if box is None:  # box edits announce None; a brush dab's block leaves boxes alone
            self.refresh()

    def shapes(self) -> list[tuple[AnnotatedBox, Rect, str | None]]:
        """(box, rectangle in this image's pixels, thin) of each box this image cuts."""
        doc = self.view.document
        annotation = doc.annotation
        if annotation is None or doc.volume is None or not len(annotation.boxes):
            return []
        plane, k = self.view.plane, self.view.slice_index
        out = []
        for box in annotation.boxes:
            cut = box_on_plane(box, plane, k) if box.state != REJECTED else None
            if cut is not None:
                out.append((box, *cut))
        return out

    def boxes_shown(self) -> list[AnnotatedBox]:
        """Boxes drawn on this view's image (rejected ones are hidden)."""
        return [box for box, _rect, _thin in self.shapes()]

    def refresh(self, *_args: object) -> None:
        shapes = self.shapes()
        if not shapes and not self.items and not len(self.handles.data):
            return  # nothing drawn, nothing to draw: most slice changes of most series
        box_view = self.view.view_box
        for item in (*self.items.values(), *self.texts.values()):
            box_view.removeItem(item)
        self.items, self.texts = {}, {}
        handles: list[tuple[float, float]] = []
        doc = self.view.document
        selected = doc.selected_box
        editing = doc.annotate_tool == "box" and self.view.tools.active.acts_on(self.view)
        for box, rect, thin in shapes:
            self.items[box.uid] = self._draw(box, rect, thin, box.uid == selected)
            if thin is None:
                self.texts[box.uid] = self._label(box, rect)
                if box.uid == selected and editing:  # only where the Box tool works
                    handles += self._handle_points(rect)
        self._set_handles(handles)

    def hide_box(self, uid: str) -> None:
        """Hide a box, its label and handles while the Box tool's preview stands in for it."""
        for item in (self.items.get(uid), self.texts.get(uid)):
            if item is not None:
                item.setVisible(False)
        self._set_handles([])

    def _set_handles(self, points: list[tuple[float, float]]) -> None:
        """The selected box's handles; hidden when there are none (an empty scatter item
        still costs a paint on every slice change)."""
        self.handles.setData(pos=points)
        self.handles.setVisible(bool(points))

    def _draw(self, box: AnnotatedBox, rect: Rect, thin: str | None,
              selected: bool) -> QGraphicsItem:
        a = self.view.pixel_to_view(rect[0], rect[1])
        b = self.view.pixel_to_view(rect[2], rect[3])
        if thin == "row":
            y = (a.y() + b.y()) / 2
            item: QGraphicsItem = QGraphicsLineItem(a.x(), y, b.x(), y)
        elif thin == "column":
            x = (a.x() + b.x()) / 2
            item = QGraphicsLineItem(x, a.y(), x, b.y())
        else:
            item = QGraphicsRectItem(QRectF(a, b))
        pen = QPen(SELECTED_COLOUR if selected else COLOURS[box.state], 3 if selected else 2)
        pen.setCosmetic(True)
        if box.state == PROPOSED:
            pen.setStyle(Qt.PenStyle.DashLine)
        item.setPen(pen)
        item.setZValue(ANNOTATION_BOXES_Z)
        self.view.view_box.addItem(item, ignoreBounds=True)
        return item

    def _label(self, box: AnnotatedBox, rect: Rect) -> pg.TextItem:
        score = "" if box.score is None else f" {box.score:.2f}"
        text = pg.TextItem(box.label + score, color=COLOURS[box.state], anchor=(0, 1))
        text.setPos(self.view.pixel_to_view(rect[0], rect[1]))
        text.setZValue(ANNOTATION_BOXES_Z)
        self.view.view_box.addItem(text, ignoreBounds=True)
        return text

    def _handle_points(self, rect: Rect) -> list[tuple[float, float]]:
        """Corners and edge middles: where the box tool grabs to resize."""
        x0, y0, x1, y1 = rect
        xs, ys = (x0, (x0 + x1) / 2, x1), (y0, (y0 + y1) / 2, y1)
        points = [self.view.pixel_to_view(x, y) for i, x in enumerate(xs)
                  for j, y in enumerate(ys) if (i, j) != (1, 1)]  # not the centre
        return [(p.x(), p.y()) for p in points]


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
            number = self.document.image_position(k=box.slice_index) + 1  # as the views count
            for col, text in enumerate((str(number), box.label, score, box.state)):
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
