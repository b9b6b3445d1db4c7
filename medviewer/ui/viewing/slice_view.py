"""One image plane of the open study, as a radiologist expects to read it.

A pyqtgraph ViewBox in millimetres (the image rectangle is its true physical size, so the
aspect is right for any pixel spacing) with the document's current image mapped to 8-bit grey
per frame. Plain wheel and arrows scroll in the document's image order (head first: wheel down
and ↓ towards the feet, image 1 the most cranial), Ctrl+wheel zooms, right-drag sets window/level,
left-drag pans (navigate), moves the crosshair (MPR) or draws a measurement. Corners carry the
series, slice, position, W/L and zoom; edges carry the orientation letters; the readout under
the cursor goes out through `sigCursorInfo` for the status bar.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QKeyEvent, QWheelEvent
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QLineEdit,
    QPlainTextEdit,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from medviewer.core import geometry
from medviewer.core import slab as slabs
from medviewer.core.display import Window, full_range_window
from medviewer.core.reslice import ResliceView
from medviewer.ui.document.study import STACK, StudyDocument
from medviewer.ui.viewing.image_items import GreyImageItem
from medviewer.ui.viewing.layer_order import CROSSHAIR_Z, IMAGE_Z
from medviewer.ui.viewing.measure_tools import MeasurementLayer
from medviewer.ui.viewing.overlays import ImageOverlays
from medviewer.ui.viewing.screen_pixels import screen_rgba
from medviewer.ui.viewing.tools import ToolManager

# The keys a view handles itself, by what they do; the Help ▸ Keyboard Shortcuts table
# (medviewer.ui.shell.shortcuts) is checked against this, so the two cannot drift apart.
VIEW_KEYS: dict[Qt.Key, str] = {
    Qt.Key.Key_Up: "previous", Qt.Key.Key_Down: "next", Qt.Key.Key_PageUp: "page back",
    Qt.Key.Key_PageDown: "page on", Qt.Key.Key_Home: "first", Qt.Key.Key_End: "last",
    Qt.Key.Key_Left: "earlier time", Qt.Key.Key_Right: "later time", Qt.Key.Key_F: "fit",
    Qt.Key.Key_1: "1:1", Qt.Key.Key_Delete: "delete measurement",
    Qt.Key.Key_Backspace: "delete measurement"}
# how the shortcuts table names each of those keys
KEY_NAMES: dict[Qt.Key, str] = {
    Qt.Key.Key_Up: "↑", Qt.Key.Key_Down: "↓", Qt.Key.Key_PageUp: "PgUp",
    Qt.Key.Key_PageDown: "PgDn", Qt.Key.Key_Home: "Home", Qt.Key.Key_End: "End",
    Qt.Key.Key_Left: "←", Qt.Key.Key_Right: "→", Qt.Key.Key_F: "F", Qt.Key.Key_1: "1",
    Qt.Key.Key_Delete: "Delete", Qt.Key.Key_Backspace: "Backspace"}
_ACTION_OF_KEY = {int(key.value): action for key, action in VIEW_KEYS.items()}
CROSSHAIR_PEN = pg.mkPen((80, 200, 255, 200), width=1, style=Qt.PenStyle.DashLine)
PAGE = 10  # slices per PgUp/PgDn
TYPING_WIDGETS = (QLineEdit, QAbstractSpinBox, QTextEdit, QPlainTextEdit)  # keep their focus


class _ImageViewBox(pg.ViewBox):
    """A ViewBox that hands drags, clicks and hover to its SliceView instead of zooming."""

    def __init__(self, owner: SliceView) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self._owner = owner

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 - Qt naming
        if not self._owner.handle_drag(ev):
            super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev) -> None:  # noqa: N802
        ev.accept()
        self._owner.handle_click(ev)


class SliceView(QWidget):
    """Shows image `plane` ('stack', 'axial', 'coronal', 'sagittal') of a StudyDocument."""

    sigCursorInfo = Signal(str)
    sigViewChanged = Signal()  # zoom or pan
    sigFocused = Signal(object)  # this view: the one Export View and the keys act on

    def __init__(self, document: StudyDocument, plane: str = STACK,
                 parent: QWidget | None = None, *, tools: ToolManager | None = None) -> None:
        super().__init__(parent)
        self.document, self.plane_name = document, plane
        self.tools = tools or ToolManager(document, self)  # shared by a panel's views
        self.crosshair_enabled = False  # MPR: left click/drag points the crosshair
        self._rendered_key: tuple | None = None
        self._rendered_crosshair: tuple | None = None
        self._wl_speed = 1.0
        self._drag_start_window: Window | None = None
        self._hover: QPointF | None = None  # scene point under the resting mouse, if over us
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(160, 160)
        self._build_scene()
        self.overlay_text = ImageOverlays(self)
        self.overlays = self.overlay_text.labels
        self.failure_label = self.overlay_text.failure_label
        self.measurements = MeasurementLayer(self)
        # what features draw over the image (AI results, the reader's labels and boxes), by
        # name, each with a refresh() called when the image changes (`add_layer`)
        self.layers: dict[str, Any] = {}
        self._connect_document()
        if document.has_image:
            self._on_volume_changed()

    # ----------------------------------------------------------------- construction
    def _build_scene(self) -> None:
        self.graphics = pg.GraphicsView(background="k")
        self.graphics.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.view_box = _ImageViewBox(self)
        self.graphics.setCentralItem(self.view_box)
        self.image_item = GreyImageItem(axisOrder="row-major")
        self.image_item.setZValue(IMAGE_Z)  # the layers over it: layer_order
        self.view_box.addItem(self.image_item)
        self.crosshair_lines = (pg.InfiniteLine(angle=90, pen=CROSSHAIR_PEN, movable=False),
                                pg.InfiniteLine(angle=0, pen=CROSSHAIR_PEN, movable=False))
        for line in self.crosshair_lines:
            line.setZValue(CROSSHAIR_Z)
            line.setVisible(False)
            self.view_box.addItem(line, ignoreBounds=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)
        self.graphics.viewport().installEventFilter(self)
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.view_box.sigRangeChanged.connect(self._on_range_changed)

    def _connect_document(self) -> None:
        doc = self.document
        doc.sigVolumeChanged.connect(self._on_volume_changed)
        for signal in (doc.sigSliceChanged, doc.sigCrosshairChanged, doc.sigTimeChanged,
                       doc.sigWindowChanged, doc.sigInvertChanged, doc.sigSlabChanged):
            signal.connect(self.refresh)
        doc.sigOverlaysChanged.connect(self._on_overlays_changed)
        doc.sigImageOrderChanged.connect(self._on_overlays_changed)  # "Axial 1 / n" renumbered

    def add_layer(self, name: str, make: Callable[[SliceView], Any]) -> Any:
        """Draw `make(self)` over the image; its refresh() runs whenever the image changes."""
        layer = self.layers[name] = make(self)
        if self.document.has_image:
            layer.refresh()
        return layer

    # ----------------------------------------------------------------- geometry helpers
    @property
    def plane(self) -> geometry.PlaneView:
        return self.document.plane(self.plane_name)

    @property
    def slice_index(self) -> int:
        return self.document.plane_index(self.plane_name)

    @property
    def spacing(self) -> tuple[float, float]:
        """(row mm, column mm) of this plane's images."""
        return self.plane.spacing

    def image_rect(self) -> QRectF:
        _, rows, cols = self.plane.shape
        return QRectF(0, 0, cols * self.spacing[1], rows * self.spacing[0])

    def scene_to_pixel(self, scene_pos: QPointF) -> tuple[float, float]:
        """(x=column, y=row) image coordinates, fractional, of a scene position."""
        p = self.view_box.mapSceneToView(scene_pos)
        return p.x() / self.spacing[1], p.y() / self.spacing[0]

    def pixel_to_view(self, x: float, y: float) -> QPointF:
        return QPointF(x * self.spacing[1], y * self.spacing[0])

    def zoom(self) -> float:
        """Screen pixels per image pixel (1.0 at 1:1)."""
        (x0, x1), _ = self.view_box.viewRange()
        width_px = self.view_box.width() or 1.0
        return float(width_px / max((x1 - x0) / self.spacing[1], 1e-9))

    # ----------------------------------------------------------------- rendering
    def _on_volume_changed(self) -> None:
        self._rendered_key = None
        if self.document.volume is not None and not self.document.is_colour:
            full = full_range_window(self.document.volume.voxels)  # small units: finer steps
            self._wl_speed = max(full.width / 512, min(0.05, full.narrowest))
        self.refresh()
        self.fit()

    def refresh(self, *_args: object) -> None:
        """Render the document's current image of this plane if anything it depends on moved."""
        doc = self.document
        if not doc.has_image:
            self.image_item.clear()
            self.failure_label.hide()
            return
        k = self.slice_index
        key = (id(doc.volume), id(doc.preview), k, doc.time_index, doc.window, doc.invert,
               doc.slab_mode, doc.slab_half_width(self.plane_name))
        same_series = self._rendered_key is not None and key[:2] == self._rendered_key[:2]
        if key != self._rendered_key:
            self._render(k)
            self._rendered_key = key
            self.measurements.show_slice(k)
            for layer in self.layers.values():
                layer.refresh()
            if self._hover is not None and self.isVisible():  # keys and wheel move the image
                self._on_mouse_moved(self._hover)
        elif doc.crosshair == self._rendered_crosshair:
            return  # a second signal for the same change: nothing new to draw
        self._rendered_crosshair = doc.crosshair
        self._update_crosshair()
        self.overlay_text.update(image_only=same_series)

    def _render(self, k: int) -> None:
        doc = self.document
        frame = doc.frame(self.plane_name, k)
        if frame is None:  # not decoded yet: keep the rect, show nothing stale
            self.image_item.clear()
            return
        volume = doc.volume
        shown = screen_rgba(frame, doc.window, invert=doc.invert,
                            voi_lut=volume.voi_lut if volume else None,
                            voi_lut_first=volume.voi_lut_first if volume else 0,
                            out=self.image_item.next_buffer(frame.shape))
        self.image_item.setImage(shown, autoLevels=False, levels=None)
        self.image_item.place(self.image_rect())  # setRect scales by the image's size

    @property
    def displayed(self) -> np.ndarray | None:
        """The 8-bit image on screen: (rows, cols) grey, or (rows, cols, 3) RGB for colour."""
        image = self.image_item.image
        if image is None:
            return None
        return image if image.shape[-1] == 3 else image[..., 0]

    def set_crosshair_enabled(self, on: bool) -> None:
        """MPR views show the crosshair and let a left click point it."""
        self.crosshair_enabled = on
        self._update_crosshair()

    def _update_crosshair(self) -> None:
        show = self.crosshair_enabled and self.document.volume is not None
        for line in self.crosshair_lines:
            line.setVisible(show)
        if show:
            if isinstance(self.plane, ResliceView):  # a true plane: the exact point
                _, row, col = self.plane.from_lps(self.document.crosshair_lps)
            else:
                _, row, col = self.plane.from_voxel(*self.document.crosshair)
            centre = self.pixel_to_view(col + 0.5, row + 0.5)
            self.crosshair_lines[0].setValue(centre.x())
            self.crosshair_lines[1].setValue(centre.y())

    def _on_overlays_changed(self, *_args: object) -> None:
        if self.document.has_image:
            self.overlay_text.update()
        else:
            for label in self.overlays.values():
                label.setVisible(self.document.overlays_visible)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self.overlay_text.place()

    def _on_range_changed(self, *_args: object) -> None:
        if self.document.has_image:
            self.overlay_text.update()
        self.sigViewChanged.emit()

    # ----------------------------------------------------------------- zoom and pan
    def fit(self) -> None:
        """Whole image in view."""
        if self.document.has_image:
            self.view_box.setRange(rect=self.image_rect(), padding=0.0)

    def actual_size(self) -> None:
        """1:1: one screen pixel per image pixel (along the columns), about the view centre."""
        (x0, x1), (y0, y1) = self.view_box.viewRange()
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        half_w = self.view_box.width() * self.spacing[1] / 2
        half_h = self.view_box.height() * self.spacing[1] / 2
        self.view_box.setRange(xRange=(cx - half_w, cx + half_w),
                               yRange=(cy - half_h, cy + half_h), padding=0.0)

    def zoom_by(self, factor: float, scene_pos: QPointF | None = None) -> None:
        """Zoom in (factor > 1) about a scene point (default: the view centre)."""
        centre = self.view_box.mapSceneToView(scene_pos) if scene_pos is not None else None
        self.view_box.scaleBy((1 / factor, 1 / factor), center=centre)

    # ----------------------------------------------------------------- input
    def step(self, n: int) -> None:
        """Move n images along this plane's reading order (head first: +1 is one image
        towards the feet on axial images; `ReadingAids` has the convention)."""
        self.document.step_images(self.plane_name, n)

    def go_to(self, k: int) -> None:
        if self.plane_name == STACK:
            self.document.set_slice(k)
        else:
            self.document.set_plane_slice(self.plane_name, k)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        if obj is self.graphics.viewport():
            if event.type() == QEvent.Type.Wheel:
                self.handle_wheel(event)
                return True
            if event.type() == QEvent.Type.MouseButtonPress:
                self.setFocus()  # keys go to the view the reader last touched
        return super().eventFilter(obj, event)

    def enterEvent(self, event) -> None:  # noqa: N802
        """The keys go to the view under the mouse, unless the reader is typing somewhere."""
        super().enterEvent(event)
        focus = QApplication.focusWidget()
        if not isinstance(focus, TYPING_WIDGETS) and (focus is None
                                                      or focus.window() is self.window()):
            self.setFocus(Qt.FocusReason.MouseFocusReason)

    def focusInEvent(self, event) -> None:  # noqa: N802
        super().focusInEvent(event)
        self.sigFocused.emit(self)

    def handle_wheel(self, event: QWheelEvent) -> None:
        """Plain wheel: next/previous image; Ctrl+wheel: zoom about the cursor."""
        notches = event.angleDelta().y() / 120
        if notches == 0:
            return
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            scene_pos = self.graphics.mapToScene(event.position().toPoint())
            self.zoom_by(1.15 ** notches, scene_pos)
        else:
            self.step(-int(np.sign(notches) * max(1, round(abs(notches)))))
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        """The keys of VIEW_KEYS; anything else goes up to the panel (its key actions)."""
        key = event.key()
        action = _ACTION_OF_KEY.get(int(getattr(key, "value", key)))
        if action is None:
            super().keyPressEvent(event)
            return
        p, n = self.document.image_position(self.plane_name), self.plane.count
        moves = {"previous": p - 1, "next": p + 1, "page back": p - PAGE, "page on": p + PAGE,
                 "first": 0, "last": n - 1}  # in the reading order, as the images are numbered
        if action in moves:
            self.document.go_to_position(self.plane_name, moves[action])
        elif action in ("earlier time", "later time"):
            step = 1 if action == "later time" else -1
            self.document.set_time(self.document.time_index + step)
        elif action == "fit":
            self.fit()
        elif action == "1:1":
            self.actual_size()
        elif not self.tools.delete_selected(self):  # the active tool's selection first
            self.measurements.remove_selected()

    def handle_drag(self, ev) -> bool:
        """Route a ViewBox drag: right is window/level, left goes to the active tool; False
        lets the ViewBox pan (middle, or left while navigating)."""
        if not self.document.has_image:
            return True
        if ev.button() == Qt.MouseButton.RightButton:
            self.drag_window_level(ev)
        elif ev.button() != Qt.MouseButton.LeftButton or not self.tools.handle_drag(self, ev):
            return False
        ev.accept()
        return True

    def handle_click(self, ev) -> None:
        self.setFocus()
        if self.document.has_image:
            self.tools.handle_click(self, ev)  # right: e.g. the Box tool's menu

    def drag_window_level(self, ev) -> None:
        """Horizontal: width; vertical: level (down = higher); speed scales with value range."""
        if ev.isStart() or self._drag_start_window is None:
            self._drag_start_window = self.document.window
        delta = ev.screenPos() - ev.buttonDownScreenPos(ev.button())
        start = self._drag_start_window
        self.document.set_window(Window(start.center + delta.y() * self._wl_speed,
                                        start.width + delta.x() * self._wl_speed,
                                        function=start.function))  # set_window keeps w >= min
        if ev.isFinish():
            self._drag_start_window = None

    def point_crosshair(self, scene_pos: QPointF) -> None:
        x, y = self.scene_to_pixel(scene_pos)
        _, rows, cols = self.plane.shape
        row, col = int(np.clip(y, 0, rows - 1)), int(np.clip(x, 0, cols - 1))
        self.document.set_crosshair_at(self.plane_name, self.slice_index, row, col)

    def leaveEvent(self, event) -> None:  # noqa: N802
        super().leaveEvent(event)
        self._hover = None

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        self._hover = QPointF(scene_pos)
        info = self.cursor_info(scene_pos)
        if info:
            self.sigCursorInfo.emit(info)

    def cursor_info(self, scene_pos: QPointF) -> str:
        """'voxel (c, r, s)  value  LPS (x, y, z) mm' for the pixel under the cursor; on a
        projection image (no patient geometry) 'pixel (c, r)  value  image (x, y) mm'."""
        if not self.document.has_image:
            return ""
        x, y = self.scene_to_pixel(scene_pos)
        _, rows, cols = self.plane.shape
        if not (0 <= x < cols and 0 <= y < rows):
            return ""
        col, row, slc = self.plane.to_voxel(self.slice_index, int(y), int(x))
        slab = self.document.slab_half_width(self.plane_name) > 0
        if slab:  # the projection's value, which is what the reader sees here
            value = float(self.document.frame(self.plane_name)[int(y), int(x)])
        else:
            value = self.document.voxel_value(col, row, slc)
        if value is None:
            shown = "…"
        elif isinstance(value, tuple):
            shown = "RGB ({}, {}, {})".format(*value)
        else:
            shown = f"{value:g} {self.document.units}".strip()
        if slab:
            shown = f"{slabs.MODE_LABELS[self.document.slab_mode]} value {shown}"
        if not self.document.has_geometry:  # a film: no patient coordinates to give
            mm = self.view_box.mapSceneToView(scene_pos)  # from the image's top left corner
            where = f"   image ({mm.x():.1f}, {mm.y():.1f}) mm" if self.document.spacing_known \
                else ""
            return f"pixel ({col}, {row})   {shown}{where}"
        lps = geometry.voxel_to_lps(self.document.affine, col, row, slc)
        return (f"voxel ({col}, {row}, {slc})   {shown}   "
                f"LPS ({lps[0]:.1f}, {lps[1]:.1f}, {lps[2]:.1f}) mm")
