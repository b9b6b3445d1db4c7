"""The Box tool's mouse on the stack view: draw, select, move, resize, delete, relabel.

Drag on the image where there is no box: a new box on this slice with the dock's box label.
Drag inside a box: move it; drag its edge or corner (within HANDLE_PX screen pixels): resize
it. A click selects the box under it (or none); Delete / Backspace deletes the selected box
and a right click offers its label, accept / reject and delete. While dragging only a dashed
preview moves; the release makes ONE edit through the box controller, so every gesture is one
undo item among the brush strokes. Positions are the slice's own pixel coordinates (x =
column, y = row, pixel edges; `annotate_boxes.plane_to_slice`), clamped to the image by
the controller's geometry helpers below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QPen
from PySide6.QtWidgets import QGraphicsRectItem, QInputDialog, QMenu

from medviewer.core.annotations import ACCEPTED, PROPOSED, REJECTED, AnnotatedBox
from medviewer.ui.annotate.boxes import SELECTED_COLOUR, Rect, plane_to_slice, slice_to_plane
from medviewer.ui.viewing.layer_order import TOOL_PREVIEW_Z
from medviewer.ui.viewing.tools import ViewTool

if TYPE_CHECKING:
    from medviewer.ui.annotate.box_controller import BoxController
    from medviewer.ui.viewing.slice_view import SliceView

HANDLE_PX = 6.0  # screen pixels around an edge that grab it
MIN_SIZE = 1.0  # slice pixels: a smaller drag draws no box
Point = tuple[float, float]


# ----------------------------------------------------------------- geometry (no Qt)
def clamp_rect(x0: float, y0: float, x1: float, y1: float, cols: int, rows: int) -> Rect:
    """Corners in any order -> (x0, y0, x1, y1) ordered and inside a cols x rows image."""
    xa, xb = sorted((min(max(x0, 0.0), cols), min(max(x1, 0.0), cols)))
    ya, yb = sorted((min(max(y0, 0.0), rows), min(max(y1, 0.0), rows)))
    return float(xa), float(ya), float(xb), float(yb)


def clamp_move(rect: Rect, dx: float, dy: float, cols: int, rows: int) -> Point:
    """The shift (dx, dy) limited so that the moved box stays inside the image."""
    x0, y0, x1, y1 = rect
    return (float(min(max(dx, -x0), cols - x1)), float(min(max(dy, -y0), rows - y1)))


def resized(rect: Rect, edges: frozenset[str], point: Point, cols: int, rows: int) -> Rect:
    """`rect` with its grabbed edges ('x0', 'y0', 'x1', 'y1') moved to `point`; dragging an
    edge past the opposite one turns the box over instead of failing."""
    values = dict(zip(("x0", "y0", "x1", "y1"), rect, strict=True))
    for edge in edges:
        values[edge] = point[0] if edge[0] == "x" else point[1]
    return clamp_rect(values["x0"], values["y0"], values["x1"], values["y1"], cols, rows)


def grab(box: AnnotatedBox, point: Point, tolerance: Point) -> frozenset[str] | None:
    """The edges of `box` a press at `point` grabs (empty: inside, to move it), None: a miss."""
    (x, y), (tx, ty) = point, tolerance
    if not (box.x0 - tx <= x <= box.x1 + tx and box.y0 - ty <= y <= box.y1 + ty):
        return None
    edges = set()
    for (low, high), at, reach, names in (((box.x0, box.x1), x, tx, ("x0", "x1")),
                                          ((box.y0, box.y1), y, ty, ("y0", "y1"))):
        if low <= at <= high:  # inside: a small box keeps its middle for moving
            reach = min(reach, (high - low) / 4)
        near = {names[0]: abs(at - low), names[1]: abs(at - high)}
        edge = min(near, key=near.get)
        if near[edge] <= reach:
            edges.add(edge)
    return frozenset(edges)


def is_big_enough(rect: Rect) -> bool:
    return rect[2] - rect[0] >= MIN_SIZE and rect[3] - rect[1] >= MIN_SIZE


@dataclass
class _Gesture:
    """One press-drag-release: what it started on and the box it proposes now."""

    kind: str  # "new" | "move" | "resize"
    start: Point
    uid: str | None = None
    edges: frozenset[str] = frozenset()
    rect: Rect | None = None


class BoxMouse(ViewTool):
    """The Box tool: the stack view's left drags and clicks (right: a box's menu) become box
    edits while it is the active tool (`viewing.tools`)."""

    name, label = "box", "Box"

    def __init__(self, view: SliceView, controller: BoxController) -> None:
        self.view, self.controller = view, controller
        self.gesture: _Gesture | None = None
        self.preview = QGraphicsRectItem()
        pen = QPen(SELECTED_COLOUR, 2, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self.preview.setPen(pen)
        self.preview.setZValue(TOOL_PREVIEW_Z)
        self.preview.setVisible(False)
        view.view_box.addItem(self.preview, ignoreBounds=True)

    # ----------------------------------------------------------------- coordinates
    def slice_point(self, scene_pos: QPointF) -> Point:
        """(x, y) slice pixel coordinates of a scene position."""
        return plane_to_slice(self.view.plane, *self.view.scene_to_pixel(scene_pos))

    def tolerance(self) -> Point:
        """HANDLE_PX screen pixels as slice pixels along x and y."""
        zoom = max(self.view.zoom(), 1e-6)  # screen pixels per image column
        row_mm, col_mm = self.view.spacing
        across, down = HANDLE_PX / zoom, HANDLE_PX / zoom * col_mm / row_mm
        return (across, down) if self.view.plane.axes[1] == 1 else (down, across)

    def boxes_here(self) -> list[AnnotatedBox]:
        """This slice's visible boxes, the selected one first (it wins a press on both)."""
        annotation, selected = self.view.document.annotation, self.view.document.selected_box
        if annotation is None:
            return []
        boxes = [b for b in annotation.boxes.on_slice(self.view.slice_index)
                 if b.state != REJECTED]
        return sorted(boxes[::-1], key=lambda b: b.uid != selected)  # top-most next

    def hit(self, point: Point) -> tuple[AnnotatedBox, frozenset[str]] | None:
        tolerance = self.tolerance()
        for box in self.boxes_here():
            edges = grab(box, point, tolerance)
            if edges is not None:
                return box, edges
        return None

    # ----------------------------------------------------------------- the tool manager's
    def why_not(self) -> str | None:
        return self.view.document.can_annotate()

    def acts_on(self, view: SliceView) -> bool:
        return view is self.view

    def drag(self, view: SliceView, ev: Any) -> bool:
        if self.why_not() is None:
            self.handle_drag(ev)
        return True

    def click(self, view: SliceView, ev: Any) -> None:
        if self.why_not() is None:
            self.handle_click(ev)

    def delete_selected(self, view: SliceView | None = None) -> bool:
        """Delete / Backspace: remove the selected box (False: none, the key does the rest)."""
        uid = self.view.document.selected_box
        return uid is not None and self.controller.delete_box(uid) is not None

    # ----------------------------------------------------------------- events
    def handle_drag(self, ev: Any) -> None:
        if ev.isStart():
            self.begin(self.slice_point(ev.buttonDownScenePos(ev.button())))
        if self.gesture is not None:
            self.drag_to(self.slice_point(ev.scenePos()))
        if ev.isFinish():
            self.finish()

    def handle_click(self, ev: Any) -> None:
        found = self.hit(self.slice_point(ev.scenePos()))
        self.view.document.select_box(found[0].uid if found else None)
        if found is not None and ev.button() == Qt.MouseButton.RightButton:
            self.context_menu(found[0]).popup(ev.screenPos().toPoint())

    # ----------------------------------------------------------------- one gesture
    def begin(self, point: Point) -> None:
        """Press: on an edge resizes, inside moves, elsewhere draws a new box."""
        found = self.hit(point)
        if found is None:
            self.view.document.select_box(None)
            self.gesture = _Gesture("new", point)
            return
        box, edges = found
        self.view.document.select_box(box.uid)
        self.gesture = _Gesture("resize" if edges else "move", point, box.uid, edges)
        self.view.layers["boxes"].hide_box(box.uid)  # the preview stands in until the release

    def drag_to(self, point: Point) -> None:
        g = self.gesture
        _, rows, cols = self.view.document.shape
        if g.kind == "new":
            g.rect = clamp_rect(*g.start, *point, cols, rows)
        else:
            box = self._box(g.uid)
            if box is None:
                return
            rect = (box.x0, box.y0, box.x1, box.y1)
            if g.kind == "move":
                dx, dy = clamp_move(rect, point[0] - g.start[0], point[1] - g.start[1],
                                    cols, rows)
                g.rect = (rect[0] + dx, rect[1] + dy, rect[2] + dx, rect[3] + dy)
            else:
                g.rect = resized(rect, g.edges, point, cols, rows)
        self._show_preview(g.rect)

    def finish(self) -> None:
        """Release: one edit for the whole gesture (nothing when it changed nothing)."""
        g, self.gesture = self.gesture, None
        self.preview.setVisible(False)
        if g is None or g.rect is None:
            self.view.layers["boxes"].refresh()
            return
        done = None
        if g.kind == "new" and is_big_enough(g.rect):
            done = self.controller.add_box(*g.rect, slice_index=self.view.slice_index)
        elif g.kind == "move" and (box := self._box(g.uid)) is not None:
            done = self.controller.move_box(g.uid, g.rect[0] - box.x0, g.rect[1] - box.y0)
        elif g.kind == "resize" and is_big_enough(g.rect):
            done = self.controller.resize_box(g.uid, *g.rect)
        if done is None:
            self.view.layers["boxes"].refresh()  # show the box where it was again

    def cancel(self) -> None:
        """The view lost the gesture (a series change mid-drag): nothing is edited."""
        self.gesture = None
        self.preview.setVisible(False)

    def _box(self, uid: str | None) -> AnnotatedBox | None:
        annotation = self.view.document.annotation
        try:
            return annotation.boxes.get(uid) if annotation is not None else None
        except KeyError:
            return None

    def _show_preview(self, rect: Rect) -> None:
        plane = self.view.plane
        (ax, ay), (bx, by) = slice_to_plane(plane, *rect[:2]), slice_to_plane(plane, *rect[2:])
        corner_a = self.view.pixel_to_view(min(ax, bx), min(ay, by))
        corner_b = self.view.pixel_to_view(max(ax, bx), max(ay, by))
        self.preview.setRect(QRectF(corner_a, corner_b))
        self.preview.setVisible(True)

    # ----------------------------------------------------------------- right click
    def context_menu(self, box: AnnotatedBox) -> QMenu:
        """Label (the known ones, or another), Accept / Reject, Delete Box."""
        c, uid = self.controller, box.uid
        menu = QMenu(self.view)
        labels = menu.addMenu("Label")
        for name in c.box_label_choices():
            action = labels.addAction(name)
            action.setCheckable(True)
            action.setChecked(name == box.label)
            action.triggered.connect(lambda _=False, n=name: c.relabel_box(uid, n))
        labels.addAction("Other\u2026").triggered.connect(lambda: self._ask_label(box))
        if box.state != ACCEPTED:
            menu.addAction("Accept").triggered.connect(lambda: c.accept_box(uid))
        if box.state in (PROPOSED, ACCEPTED) and box.is_from_model:
            menu.addAction("Reject").triggered.connect(lambda: c.reject_box(uid))
        menu.addSeparator()
        menu.addAction("Delete Box").triggered.connect(lambda: c.delete_box(uid))
        return menu

    def _ask_label(self, box: AnnotatedBox) -> None:
        text, ok = QInputDialog.getText(self.view, "Box Label", "Label of this box:",
                                        text=box.label)
        if ok and text.strip():
            self.controller.relabel_box(box.uid, text.strip())
