"""The annotate tools' mouse handling on one SliceView: brush, eraser, flood and polygon fill.

Only the stack view (the series as acquired) paints: its images are the label map's slices.
Press-drag-release is one stroke, one undo item: the History stroke opens on the press and
closes on the release, and each mouse move adds the dabs `stroke_centres` puts between the last
point and this one (at most half a radius apart, so a fast drag leaves no gaps). The box every
dab changed goes to the document, which tells the views to redraw just that rectangle. A
click is a one-dab stroke (brush, eraser) or a flood fill from that pixel; the polygon tool
draws a lasso while dragging and fills it on release. Positions are voxel indices (slice, row,
column) with the pixel centre at the integer, as the core tools take them. Each of the four
tools is a `PaintTool` in the view's tool manager (`viewing.tools`): the manager hands it the
stack view's presses only while it is the active tool.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt

from medviewer.core.annotations import (
    AnnotationError,
    brush_stroke,
    flood_fill,
    polygon_fill,
    stroke_centres,
)
from medviewer.core.annotations.history import union_box
from medviewer.ui.document.annotate_state import TOOL_NAMES
from medviewer.ui.viewing.layer_order import TOOL_PREVIEW_Z
from medviewer.ui.viewing.tools import ViewTool

if TYPE_CHECKING:
    from medviewer.ui.viewing.slice_view import SliceView

LASSO_PEN = pg.mkPen((255, 255, 255), width=1.5, style=Qt.PenStyle.DashLine)
Point = tuple[float, float, float]
PAINT_TOOLS = ("brush", "eraser", "flood", "polygon")  # the Box tool is annotate.box_tool's


class PaintTool(ViewTool):
    """Brush, eraser, flood fill or polygon fill on the stack view (`mouse.view`)."""

    def __init__(self, name: str, mouse: AnnotateMouse) -> None:
        self.name, self.label, self.mouse = name, TOOL_NAMES[name], mouse

    def why_not(self) -> str | None:
        return self.mouse.view.document.can_annotate()

    def acts_on(self, view: SliceView) -> bool:
        return view is self.mouse.view

    def drag(self, view: SliceView, ev: Any) -> bool:
        """Paint; no edit (and no panning) while the series cannot take one, e.g. while its
        saved annotations are being read."""
        if (why := self.why_not()) is None:
            self.mouse.handle_drag(ev)
        elif ev.isStart():
            view.sigCursorInfo.emit(why)
        return True

    def click(self, view: SliceView, ev: Any) -> None:
        if self.why_not() is None:
            self.mouse.handle_click(ev)

    def cancel(self) -> None:
        self.mouse.cancel()


class AnnotateMouse:
    """The stack view's painting: strokes, fills and the lasso of the active paint tool."""

    def __init__(self, view: SliceView) -> None:
        self.view = view
        self._stroke: contextlib.ExitStack | None = None
        self._last: Point | None = None
        self.points: list[Point] = []  # voxel positions of the current / last stroke
        self.lasso = pg.PlotCurveItem(pen=LASSO_PEN)
        self.lasso.setZValue(TOOL_PREVIEW_Z)
        self.lasso.setVisible(False)
        view.view_box.addItem(self.lasso, ignoreBounds=True)

    # ----------------------------------------------------------------- coordinates
    def voxel_at(self, scene_pos: QPointF) -> Point:
        """(slice, row, column) voxel position, fractional, of a scene point on this image."""
        x, y = self.view.scene_to_pixel(scene_pos)
        plane = self.view.plane
        col, row, slc = plane.to_voxel(self.view.slice_index, y - 0.5, x - 0.5)
        return float(slc), float(row), float(col)

    # ----------------------------------------------------------------- events
    def handle_drag(self, ev: Any) -> None:
        tool = self.view.document.annotate_tool
        if ev.isStart():
            self.begin(self.voxel_at(ev.buttonDownScenePos(ev.button())))
        if tool == "polygon":
            self._lasso_to(self.voxel_at(ev.scenePos()))
        elif self._stroke is not None:
            self.paint_to(self.voxel_at(ev.scenePos()))
        if ev.isFinish():
            self.finish()

    def handle_click(self, ev: Any) -> None:
        """A click: one dab (brush, eraser) or a flood fill from that pixel."""
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        point = self.voxel_at(ev.scenePos())
        if self.view.document.annotate_tool == "flood":
            self.flood(point)
        elif self.view.document.annotate_tool in ("brush", "eraser"):
            self.begin(point)
            self.finish()

    # ----------------------------------------------------------------- brush and eraser
    def begin(self, point: Point) -> None:
        """Press: open one undo item for the whole drag and dab at the press point."""
        doc = self.view.document
        self.points = [point]
        if doc.annotate_tool == "polygon":
            self.lasso.setVisible(True)
            self._draw_lasso()
            return
        if doc.annotate_tool not in ("brush", "eraser"):
            return
        annotation = doc.ensure_annotation()
        if doc.annotate_tool == "brush" and doc.active_label not in annotation.labelmap.table:
            doc.add_default_label()
        self._stroke = contextlib.ExitStack()
        self._stroke.enter_context(annotation.history.stroke(doc.annotate_tool))
        self._last = point
        self._dab([point])

    def paint_to(self, point: Point) -> None:
        """A mouse move: the dabs from the last point to this one, then one redraw."""
        if self._last is None or point == self._last:
            return
        settings = self.view.document.tool_settings
        spacing = self.view.document.labelmap.spacing
        centres = stroke_centres([self._last, point], settings.radius_mm, spacing)[1:]
        self.points.append(point)
        self._last = point
        self._dab(centres)

    def _dab(self, centres: list[Point]) -> None:
        doc = self.view.document
        settings, labelmap = doc.tool_settings, doc.labelmap
        value = doc.active_label if doc.annotate_tool == "brush" else 0
        options: dict[str, Any] = {"sphere": settings.sphere}
        if value:
            options["overwrite"] = settings.overwrite
            if settings.value_range is not None:
                options.update(image=doc.time_point_voxels(), value_range=settings.value_range)
        box = brush_stroke(labelmap, doc.history, centres, settings.radius_mm, value, **options)
        if box is not None:
            doc.labelmap_changed(box)

    def finish(self) -> None:
        """Release: close the stroke (one undo item) or fill the lasso."""
        if self.view.document.annotate_tool == "polygon" and self.points:
            self._fill_lasso()
        if self._stroke is not None:
            stroke, self._stroke = self._stroke, None
            stroke.close()
            self.view.document.sigAnnotateToolChanged.emit()  # undo / redo enablement
        self._last = None

    def cancel(self) -> None:
        """End a stroke the view lost (a series change mid-drag, another tool): keep what was
        painted."""
        self.lasso.setVisible(False)
        self.points = []
        self.finish()

    # ----------------------------------------------------------------- fills
    def flood(self, point: Point) -> None:
        doc = self.view.document
        annotation = doc.ensure_annotation()
        if doc.active_label not in annotation.labelmap.table:
            doc.add_default_label()
        settings = doc.tool_settings
        options: dict[str, Any] = {}
        if settings.value_range is not None:
            options.update(image=doc.time_point_voxels(), value_range=settings.value_range)
        try:
            box = flood_fill(annotation.labelmap, annotation.history, point, doc.active_label,
                             **options)
        except AnnotationError as exc:
            self.view.sigCursorInfo.emit(exc.reason)
            return
        if box is not None:
            doc.labelmap_changed(box)
        doc.sigAnnotateToolChanged.emit()

    def _lasso_to(self, point: Point) -> None:
        if not self.points or point != self.points[-1]:
            self.points.append(point)
            self._draw_lasso()

    def _draw_lasso(self) -> None:
        plane = self.view.plane
        shown = [plane.from_voxel(c, r, s) for s, r, c in self.points]
        xs = [self.view.pixel_to_view(c + 0.5, r + 0.5) for _k, r, c in shown]
        closed = xs + xs[:1]
        self.lasso.setData([p.x() for p in closed], [p.y() for p in closed])

    def _fill_lasso(self) -> None:
        doc = self.view.document
        self.lasso.setVisible(False)
        points, self.points = self.points, []
        if len(points) < 3:
            return
        annotation = doc.ensure_annotation()
        if doc.active_label not in annotation.labelmap.table:
            doc.add_default_label()
        k = int(round(points[0][0]))
        settings = doc.tool_settings
        options: dict[str, Any] = {"overwrite": settings.overwrite}
        if settings.value_range is not None:
            options.update(image=doc.time_point_voxels(), value_range=settings.value_range)
        vertices = np.array([(r, c) for _s, r, c in points])
        box = polygon_fill(annotation.labelmap, annotation.history, k, vertices,
                           doc.active_label, **options)
        self.points = points
        if box is not None:
            doc.labelmap_changed(union_box(None, box))
        doc.sigAnnotateToolChanged.emit()
