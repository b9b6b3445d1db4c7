"""Distance and ROI measurements drawn on a SliceView: only the drawing lives here.

Shapes are pyqtgraph ROIs in the view's millimetre coordinates; the numbers come from
`core.geometry` (distance_mm, shape_mask, roi_stats) in image pixel coordinates, so the same
figures are testable without a screen. A measurement belongs to one image of one plane and is
hidden on the others; labels update live while a shape is dragged. The layer says when its
shapes change: `sigMeasurementsChanged` (one added or removed) and
`sigMeasurementChangeFinished(m)` (a drag that drew, moved or resized `m` ended), so a listener
that keeps them (the annotation's rulers) counts one edit per drag, not one per mouse move.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QPointF, Signal

from medviewer.core import geometry

if TYPE_CHECKING:
    from medviewer.ui.viewing.slice_view import SliceView

SHAPE_PEN = pg.mkPen((255, 210, 60), width=1.5)
SELECTED_PEN = pg.mkPen((255, 120, 40), width=2.5)
LABEL_COLOUR = (255, 230, 120)


class Measurement(QObject):
    """One drawn shape on image `k` of its view's plane, with a live label."""

    sigChanged = Signal(object)

    def __init__(self, view: SliceView, k: int, roi: pg.ROI) -> None:
        super().__init__()
        self.view, self.k, self.roi = view, k, roi
        self.label = pg.TextItem(color=LABEL_COLOUR, anchor=(0, 1), fill=(0, 0, 0, 140))
        view.view_box.addItem(roi)
        view.view_box.addItem(self.label, ignoreBounds=True)
        roi.sigRegionChanged.connect(self.update_label)
        self.update_label()

    def _to_pixel(self, p: QPointF) -> tuple[float, float]:
        row_mm, col_mm = self.view.spacing
        return p.x() / col_mm, p.y() / row_mm

    def text(self) -> str:
        raise NotImplementedError

    def anchor(self) -> QPointF:
        raise NotImplementedError

    def update_label(self, *_args: object) -> None:
        self.label.setText(self.text())
        self.label.setPos(self.anchor())
        self.sigChanged.emit(self)

    def set_visible(self, visible: bool) -> None:
        self.roi.setVisible(visible)
        self.label.setVisible(visible)

    def set_selected(self, selected: bool) -> None:
        self.roi.setPen(SELECTED_PEN if selected else SHAPE_PEN)

    def remove(self) -> None:
        self.view.view_box.removeItem(self.roi)
        self.view.view_box.removeItem(self.label)


def _in_mm(view: SliceView) -> bool:
    """Whether the image's pixel size is known; if not, its 1 mm stands for one pixel."""
    volume = view.document.volume
    return volume is None or volume.spacing_known


class DistanceMeasurement(Measurement):
    """A ruler between two points; reads in mm with the plane's (row, column) spacing."""

    def __init__(self, view: SliceView, k: int, p0: tuple[float, float],
                 p1: tuple[float, float]) -> None:
        roi = pg.LineSegmentROI([view.pixel_to_view(*p0), view.pixel_to_view(*p1)], pen=SHAPE_PEN)
        super().__init__(view, k, roi)

    def endpoints_px(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """The two ends in image (x=column, y=row) coordinates."""
        ends = [self.roi.mapToParent(h["item"].pos()) for h in self.roi.handles[:2]]
        return self._to_pixel(ends[0]), self._to_pixel(ends[1])

    @property
    def length_mm(self) -> float:
        p0, p1 = self.endpoints_px()
        return geometry.distance_mm(p0, p1, self.view.spacing)

    def text(self) -> str:
        return f"{self.length_mm:.1f} {'mm' if _in_mm(self.view) else 'px'}"

    def anchor(self) -> QPointF:
        return self.roi.mapToParent(self.roi.handles[1]["item"].pos())

    def move_end(self, x: float, y: float) -> None:
        handle = self.roi.handles[1]["item"]
        self.roi.movePoint(handle, self.view.pixel_to_view(x, y), finish=False)


class AreaMeasurement(Measurement):
    """A rectangle or ellipse ROI: mean, SD, min, max in modality units and area in mm^2."""

    def __init__(self, view: SliceView, k: int, kind: str, p0: tuple[float, float],
                 p1: tuple[float, float]) -> None:
        self.kind = kind
        cls = pg.EllipseROI if kind == "ellipse" else pg.RectROI
        roi = cls(view.pixel_to_view(*p0), view.pixel_to_view(1, 1), pen=SHAPE_PEN)
        for handle in [h["item"] for h in roi.handles if h["type"] == "r"]:
            roi.removeHandle(handle)  # statistics are for axis-aligned shapes
        self._stats: dict = {}
        super().__init__(view, k, roi)
        self.set_corners(p0, p1)

    def corners_px(self) -> tuple[float, float, float, float]:
        pos, size = self.roi.pos(), self.roi.size()
        x0, y0 = self._to_pixel(pos)
        x1, y1 = self._to_pixel(pos + size)
        return x0, y0, x1, y1

    def set_corners(self, p0: tuple[float, float], p1: tuple[float, float]) -> None:
        (xa, xb), (ya, yb) = sorted((p0[0], p1[0])), sorted((p0[1], p1[1]))
        origin, far = self.view.pixel_to_view(xa, ya), self.view.pixel_to_view(xb, yb)
        self.roi.setPos(origin, update=False, finish=False)
        self.roi.setSize(far - origin, finish=False)

    @property
    def stats(self) -> dict:
        frame = self.view.document.frame(self.view.plane_name, self.k)
        if frame is None:
            return {}
        mask = geometry.shape_mask(frame.shape[:2], *self.corners_px(),
                                   ellipse=self.kind == "ellipse")
        if frame.ndim == 3:  # colour: no modality values, the area still means something
            return {"n": int(mask.sum()), "area_mm2": float(mask.sum()) * np.prod(
                self.view.spacing)}
        return geometry.roi_stats(frame, mask, self.view.spacing)

    def text(self) -> str:
        s = self.stats
        if not s or not s["n"]:
            return "no pixels"
        area = f"area {s['area_mm2']:.1f} {'mm²' if _in_mm(self.view) else 'px²'}"
        if "mean" not in s:
            return area
        units = self.view.document.units
        return (f"mean {s['mean']:.1f} {units}  SD {s['sd']:.1f}\n"
                f"min {s['min']:.0f}  max {s['max']:.0f}\n{area}")

    def anchor(self) -> QPointF:
        return self.roi.pos()


class MeasurementLayer(QObject):
    """The measurements of one SliceView: creation by drag, selection, per-image visibility."""

    sigMeasurementsChanged = Signal()
    sigMeasurementChangeFinished = Signal(object)  # the Measurement a drag drew or moved

    def __init__(self, view: SliceView) -> None:
        super().__init__(view)
        self.view = view
        self.items: list[Measurement] = []
        self.selected: Measurement | None = None
        self._drawing: Measurement | None = None
        self._start: tuple[float, float] | None = None  # where the shape being drawn began

    def add_distance(self, p0: tuple[float, float], p1: tuple[float, float],
                     k: int | None = None) -> DistanceMeasurement:
        """A ruler from p0 to p1 in image (x=column, y=row) pixels on image k (default: current)."""
        return self._add(DistanceMeasurement(self.view, self._k(k), p0, p1))

    def add_area(self, kind: str, p0: tuple[float, float], p1: tuple[float, float],
                 k: int | None = None) -> AreaMeasurement:
        """A 'rect' or 'ellipse' ROI spanning the pixel corners p0, p1."""
        return self._add(AreaMeasurement(self.view, self._k(k), kind, p0, p1))

    def _k(self, k: int | None) -> int:
        return self.view.slice_index if k is None else k

    def _add(self, m: Measurement) -> Measurement:
        self.items.append(m)
        m.roi.sigRegionChangeStarted.connect(lambda *_: self.select(m))
        m.roi.sigClicked.connect(lambda *_: self.select(m))
        m.roi.sigRegionChangeFinished.connect(lambda *_: self.sigMeasurementChangeFinished.emit(m))
        m.roi.setAcceptedMouseButtons(pg.QtCore.Qt.MouseButton.LeftButton)
        self.select(m)
        self.sigMeasurementsChanged.emit()
        return m

    def select(self, m: Measurement | None) -> None:
        for item in self.items:
            item.set_selected(item is m)
        self.selected = m

    def remove(self, m: Measurement) -> None:
        m.remove()
        self.items.remove(m)
        if self.selected is m:
            self.selected = None
        self.sigMeasurementsChanged.emit()

    def remove_selected(self) -> None:
        if self.selected is not None:
            self.remove(self.selected)

    def clear(self) -> None:
        self._drawing = self._start = None
        for m in list(self.items):
            self.remove(m)

    @property
    def drawing(self) -> bool:
        """A shape is being drawn with the mouse: its edit is the drag's end, not its start."""
        return self._start is not None

    def show_slice(self, k: int) -> None:
        """Only the measurements of image k are visible; their numbers follow the time point."""
        for m in self.items:
            m.set_visible(m.k == k)
            if m.k == k:
                m.update_label()

    def handle_drag(self, tool: str, ev) -> None:
        """Left-drag with a measuring tool: press sets the first point, release the last."""
        x, y = self.view.scene_to_pixel(ev.scenePos())
        if ev.isStart() or self._drawing is None:
            self._start = self.view.scene_to_pixel(ev.buttonDownScenePos(ev.button()))
            if tool == "distance":
                self._drawing = self.add_distance(self._start, (x, y))
            else:
                self._drawing = self.add_area(tool, self._start, (x, y))
        elif isinstance(self._drawing, DistanceMeasurement):
            self._drawing.move_end(x, y)
        else:
            self._drawing.set_corners(self._start, (x, y))
        if ev.isFinish():
            drawn, self._drawing, self._start = self._drawing, None, None
            self.sigMeasurementChangeFinished.emit(drawn)
