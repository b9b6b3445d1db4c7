"""Rulers and area ROIs drawn on a SliceView: the drawing of the document's measurements.

The measurements themselves are document state (`document.measurements`): this layer draws
those of its view's plane as pyqtgraph ROIs in the view's millimetre coordinates, shows each
only on its own image, and turns the reader's gestures into document edits: a drag with a
measuring tool draws one (added when the drag ends), a drag of a shape or its handle moves it
(saved when the drag ends), Delete removes the selected one. Labels update live while a
shape is dragged; their numbers come from `measure_values`, like the panel's and the SR's.

A shape takes a mouse press only when the active tool may grab it (`ToolManager.may_grab`:
Navigate, or the shape's own tool), so a new ellipse drawn next to a ruler's handle is an
ellipse, not a moved ruler.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pyqtgraph as pg
from pyqtgraph.graphicsItems.ROI import Handle
from PySide6.QtCore import QObject, QPointF

from medviewer.ui.document.measurements import Measure, measure_text, measure_values
from medviewer.ui.viewing.layer_order import MEASUREMENTS_Z

if TYPE_CHECKING:
    from medviewer.ui.viewing.slice_view import SliceView

SHAPE_PEN = pg.mkPen((255, 210, 60), width=1.5)
SELECTED_PEN = pg.mkPen((255, 120, 40), width=2.5)
LABEL_COLOUR = (255, 230, 120)
Point = tuple[float, float]


class _Gate:
    """Mixin for pyqtgraph items: they answer the mouse only while `_open()`."""

    def _open(self) -> bool:
        return True

    def hoverEvent(self, ev) -> None:  # noqa: N802 - pyqtgraph naming
        if self._open() or ev.isExit():
            super().hoverEvent(ev)

    def mouseDragEvent(self, ev) -> None:  # noqa: N802
        if self._open():
            super().mouseDragEvent(ev)
        else:
            ev.ignore()

    def mouseClickEvent(self, ev) -> None:  # noqa: N802
        if self._open():
            super().mouseClickEvent(ev)
        else:
            ev.ignore()


class _GatedHandle(_Gate, Handle):
    """A handle that takes the mouse only when its shape may be grabbed now."""

    def _open(self) -> bool:
        return all(roi._open() for roi in self.rois)


class _Gated(_Gate):
    """Mixin for pyqtgraph ROIs: the body and handles answer the mouse only when `may_grab()`
    (set by the layer) says the active tool may grab this shape."""

    may_grab = staticmethod(lambda: True)

    def _open(self) -> bool:
        return self.may_grab()

    def addHandle(self, info, index=None):  # noqa: N802
        if info.get("item") is None:
            info["item"] = _GatedHandle(self.handleSize, typ=info["type"], pen=self.handlePen,
                                        hoverPen=self.handleHoverPen, parent=self,
                                        antialias=self._antialias)
        return super().addHandle(info, index)


class _Line(_Gated, pg.LineSegmentROI):
    pass


class _Rect(_Gated, pg.RectROI):
    pass


class _Ellipse(_Gated, pg.EllipseROI):
    pass


class Measurement(QObject):
    """The shape and live label of one document `Measure` on one view."""

    def __init__(self, view: SliceView, measure: Measure, roi: pg.ROI) -> None:
        super().__init__()
        self.view, self.measure, self.roi = view, measure, roi
        roi.may_grab = lambda: view.tools.may_grab(measure.kind)
        self.label = pg.TextItem(color=LABEL_COLOUR, anchor=(0, 1), fill=(0, 0, 0, 140))
        for item in (roi, self.label):
            item.setZValue(MEASUREMENTS_Z)  # over every result layer (layer_order)
        view.view_box.addItem(roi)
        view.view_box.addItem(self.label, ignoreBounds=True)
        roi.sigRegionChanged.connect(self.update_label)
        self.update_label()

    @property
    def uid(self) -> str:
        return self.measure.uid

    @property
    def k(self) -> int:
        return self.measure.k

    def _to_pixel(self, p: QPointF) -> Point:
        row_mm, col_mm = self.view.spacing
        return p.x() / col_mm, p.y() / row_mm

    def points_px(self) -> tuple[Point, Point]:
        """The shape's two defining points now, in image (x=column, y=row) pixels."""
        raise NotImplementedError

    def place(self, measure: Measure) -> None:
        """Put the shape where `measure` says (the document changed it)."""
        raise NotImplementedError

    def live(self) -> Measure:
        """The measure with the shape's points as they are now (mid-drag too)."""
        p0, p1 = self.points_px()
        return replace(self.measure, p0=p0, p1=p1)

    def values(self) -> dict[str, float]:
        return measure_values(self.view.document, self.live())

    def text(self) -> str:
        return measure_text(self.view.document, self.live())

    def anchor(self) -> QPointF:
        return self.roi.pos()

    def update_label(self, *_args: object) -> None:
        self.label.setText(self.text())
        self.label.setPos(self.anchor())

    def set_visible(self, visible: bool) -> None:
        """Shape and label on their own image; the label is text on the image, so the
        overlay switch (O) hides it too while the shape stays."""
        self.roi.setVisible(visible)
        self.label.setVisible(visible and self.view.document.overlays_visible)

    def set_selected(self, selected: bool) -> None:
        self.roi.setPen(SELECTED_PEN if selected else SHAPE_PEN)

    def remove(self) -> None:
        self.view.view_box.removeItem(self.roi)
        self.view.view_box.removeItem(self.label)


class DistanceMeasurement(Measurement):
    """A ruler between two points; reads in mm with the plane's (row, column) spacing."""

    def __init__(self, view: SliceView, measure: Measure) -> None:
        ends = [view.pixel_to_view(*measure.p0), view.pixel_to_view(*measure.p1)]
        super().__init__(view, measure, _Line(ends, pen=SHAPE_PEN))

    def endpoints_px(self) -> tuple[Point, Point]:
        """The two ends in image (x=column, y=row) coordinates."""
        ends = [self.roi.mapToParent(h["item"].pos()) for h in self.roi.handles[:2]]
        return self._to_pixel(ends[0]), self._to_pixel(ends[1])

    points_px = endpoints_px

    @property
    def length_mm(self) -> float:
        return self.values()["length"]

    def anchor(self) -> QPointF:
        return self.roi.mapToParent(self.roi.handles[1]["item"].pos())

    def move_end(self, x: float, y: float) -> None:
        handle = self.roi.handles[1]["item"]
        self.roi.movePoint(handle, self.view.pixel_to_view(x, y), finish=False)

    def place(self, measure: Measure) -> None:
        self.measure = measure
        for handle, p in zip(self.roi.handles[:2], (measure.p0, measure.p1), strict=True):
            self.roi.movePoint(handle["item"], self.view.pixel_to_view(*p), finish=False)


class AreaMeasurement(Measurement):
    """A rectangle or ellipse ROI: mean, SD, min, max in modality units and area in mm^2."""

    def __init__(self, view: SliceView, measure: Measure) -> None:
        cls = _Ellipse if measure.kind == "ellipse" else _Rect
        roi = cls(view.pixel_to_view(*measure.p0), view.pixel_to_view(1, 1), pen=SHAPE_PEN)
        for handle in [h["item"] for h in roi.handles if h["type"] == "r"]:
            roi.removeHandle(handle)  # statistics are for axis-aligned shapes
        super().__init__(view, measure, roi)
        self.set_corners(measure.p0, measure.p1)

    @property
    def kind(self) -> str:
        return self.measure.kind

    def corners_px(self) -> tuple[float, float, float, float]:
        pos, size = self.roi.pos(), self.roi.size()
        x0, y0 = self._to_pixel(pos)
        x1, y1 = self._to_pixel(pos + size)
        return x0, y0, x1, y1

    def points_px(self) -> tuple[Point, Point]:
        x0, y0, x1, y1 = self.corners_px()
        return (x0, y0), (x1, y1)

    def set_corners(self, p0: Point, p1: Point) -> None:
        (xa, xb), (ya, yb) = sorted((p0[0], p1[0])), sorted((p0[1], p1[1]))
        origin, far = self.view.pixel_to_view(xa, ya), self.view.pixel_to_view(xb, yb)
        self.roi.setPos(origin, update=False, finish=False)
        self.roi.setSize(far - origin, finish=False)

    def place(self, measure: Measure) -> None:
        self.measure = measure
        self.set_corners(measure.p0, measure.p1)

    @property
    def stats(self) -> dict:
        """{'n', 'area_mm2'} and, for grey images, 'mean', 'sd', 'min', 'max'."""
        values = self.values()
        if not values:
            return {}
        return {**{k: v for k, v in values.items() if k != "area"},
                "area_mm2": values["area"]}


def _shape(view: SliceView, measure: Measure) -> Measurement:
    if measure.kind == "distance":
        return DistanceMeasurement(view, measure)
    return AreaMeasurement(view, measure)


class MeasurementLayer(QObject):
    """The document's measurements on one SliceView's plane: drawing, selection, gestures."""

    def __init__(self, view: SliceView) -> None:
        super().__init__(view)
        self.view = view
        self._shapes: dict[str, Measurement] = {}  # measure uid -> its shape here
        self.selected: Measurement | None = None
        self._drawing: Measurement | None = None  # a shape being drawn: not in the document yet
        self._start: Point | None = None  # where the shape being drawn began
        doc = view.document
        doc.sigMeasurementsChanged.connect(self.sync)
        doc.sigVolumeChanged.connect(self._on_volume_changed)
        doc.sigOverlaysChanged.connect(lambda *_: self.show_slice(self.view.slice_index))

    @property
    def items(self) -> list[Measurement]:
        """The shapes of this view's plane, in the order they were drawn."""
        return [self._shapes[m.uid] for m in self.view.document.measurements
                if m.uid in self._shapes]

    # ----------------------------------------------------------------- document -> shapes
    def sync(self, *_args: object) -> None:
        """Draw what the document holds for this plane: new shapes, moved ones, none of the
        deleted ones."""
        wanted = {m.uid: m for m in self.view.document.measurements
                  if m.plane == self.view.plane_name}
        for uid in [u for u in self._shapes if u not in wanted]:
            self._forget(self._shapes.pop(uid))
        for uid, m in wanted.items():
            shape = self._shapes.get(uid)
            if shape is None:
                self._shapes[uid] = self._make(m)
            elif shape.measure != m:
                shape.place(m)
        self.show_slice(self.view.slice_index)

    def _make(self, m: Measure) -> Measurement:
        if self._drawing is not None and self._drawing.uid == m.uid:
            shape, self._drawing = self._drawing, None  # the drawn shape is now the document's
            shape.measure = m
        else:
            shape = _shape(self.view, m)
        roi = shape.roi
        roi.sigRegionChangeStarted.connect(lambda *_: self.select(shape))
        roi.sigClicked.connect(lambda *_: self.select(shape))
        roi.sigRegionChangeFinished.connect(lambda *_: self._moved(shape))
        return shape

    def _moved(self, shape: Measurement) -> None:
        if shape.uid in self._shapes:  # a drag of the shape or a handle ended
            self.view.document.move_measurement(shape.uid, *shape.points_px())

    def _forget(self, shape: Measurement) -> None:
        shape.remove()
        if self.selected is shape:
            self.selected = None

    def _on_volume_changed(self) -> None:
        self.clear()
        self.sync()

    def clear(self) -> None:
        """Drop the shapes (not the document's measurements): another series is shown."""
        for shape in list(self._shapes.values()):
            self._forget(shape)
        self._shapes = {}
        if self._drawing is not None:
            self._forget(self._drawing)
        self._drawing = self._start = None

    def show_slice(self, k: int) -> None:
        """Only the shapes of image k are visible; their numbers follow the time point."""
        for shape in self._shapes.values():
            shape.set_visible(shape.k == k)
            if shape.k == k:
                shape.update_label()

    # ----------------------------------------------------------------- the reader's edits
    def add_distance(self, p0: Point, p1: Point, k: int | None = None) -> DistanceMeasurement:
        """A ruler from p0 to p1 in image (x=column, y=row) pixels on image k (default:
        current), added to the document."""
        return self._add(Measure("distance", self.view.plane_name, self._k(k), p0, p1))

    def add_area(self, kind: str, p0: Point, p1: Point, k: int | None = None) -> AreaMeasurement:
        """A 'rect' or 'ellipse' ROI spanning the pixel corners p0, p1."""
        return self._add(Measure(kind, self.view.plane_name, self._k(k), p0, p1))

    def _k(self, k: int | None) -> int:
        return self.view.slice_index if k is None else k

    def _add(self, m: Measure) -> Any:
        self.view.document.add_measurement(m)
        shape = self._shapes[m.uid]
        self.select(shape)
        return shape

    def select(self, shape: Measurement | None) -> None:
        for item in self._shapes.values():
            item.set_selected(item is shape)
        self.selected = shape

    def remove(self, shape: Measurement) -> None:
        self.view.document.remove_measurement(shape.uid)

    def remove_selected(self) -> None:
        if self.selected is not None:
            self.remove(self.selected)

    @property
    def drawing(self) -> bool:
        """A shape is being drawn with the mouse: its edit is the drag's end, not its start."""
        return self._start is not None

    def handle_drag(self, kind: str, ev: Any) -> None:
        """Left-drag with a measuring tool: press sets the first point, release the last and
        adds the shape to the document (one edit per drawn shape)."""
        x, y = self.view.scene_to_pixel(ev.scenePos())
        if ev.isStart() or self._drawing is None:
            self._start = self.view.scene_to_pixel(ev.buttonDownScenePos(ev.button()))
            measure = Measure(kind, self.view.plane_name, self.view.slice_index, self._start,
                              (x, y))
            self._drawing = _shape(self.view, measure)
            self._drawing.set_selected(True)
        elif isinstance(self._drawing, DistanceMeasurement):
            self._drawing.move_end(x, y)
        else:
            self._drawing.set_corners(self._start, (x, y))
        if ev.isFinish():
            drawn, self._start = self._drawing, None
            self.view.document.add_measurement(drawn.live())
            if drawn.uid in self._shapes:
                self.select(drawn)
