"""pyqtgraph ImageItems that draw a SliceView's layers faster: the grey image in the format
Qt's raster engine draws as it is, a label map only where it has labels, premultiplied."""

from __future__ import annotations

import sys

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage

from medviewer.ui.viewing.label_images import ColouredLabels, straight_rgba

LITTLE_ENDIAN = sys.byteorder == "little"  # grey (g, g, g, 255) bytes read as RGB32


class PlacedImageItem(pg.ImageItem):
    """An ImageItem that `place`s itself: `setRect` only when the rectangle or the image's
    size changed (each call is a geometry change, even to the same rectangle)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._placed: tuple | None = None

    def place(self, rect: QRectF) -> None:
        placed = (rect, None if self.image is None else self.image.shape[:2])
        if placed != self._placed:
            self.setRect(rect)
            self._placed = placed


class GreyImageItem(PlacedImageItem):
    """The image: grey packed as opaque RGBA (`screen_pixels.screen_rgba`) is handed to Qt as
    RGB32, the format its raster engine draws without converting; pyqtgraph's choice for four
    channels, RGBA8888, is converted on every paint (2x the time of the whole draw).

    `next_buffer` lends one of two buffers of the item's own to render the next image into,
    in turn (the image on screen is left alone until the next one replaces it)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._buffers: list[np.ndarray] = []

    def next_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """A (rows, cols, 4) uint8 array that is not the image shown now."""
        wanted = (*shape[:2], 4)
        if not self._buffers or self._buffers[0].shape != wanted:
            self._buffers = [np.empty(wanted, np.uint8) for _ in range(2)]
        shown = self.image
        return next(b for b in self._buffers if shown is None or not (
            shown is b or shown.base is b))

    def render(self) -> None:
        super().render()
        image, qimage = self.image, self.qimage
        if (qimage is not None and image is not None and image.ndim == 3 and image.shape[2] == 4
                and qimage.format() == QImage.Format.Format_RGBA8888 and LITTLE_ENDIAN):
            qimage.reinterpretAsFormat(QImage.Format.Format_RGB32)  # B, G, R, 255: the same


class LabelImageItem(PlacedImageItem):
    """A label map's colours, drawn only inside `paint_box` (image pixels; None: all of it):
    the rest is clear, and Qt blends every pixel it is asked to draw (two lungs cover a third
    of a CT slice: a third of the time).

    `show_labels` draws a `label_images.ColouredLabels` into a buffer of the item's own,
    reused from image to image (clearing only what was drawn: a fresh 1 MB array per slice
    cost more in page faults than colouring it), handed to Qt as ARGB32 premultiplied, its
    raster engine's own format. `image` is that buffer (B, G, R, A bytes on a little-endian
    machine); `rgba()` reads it as straight RGBA."""

    paint_box: QRectF | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._buffer: np.ndarray | None = None  # the item's own, premultiplied ARGB32
        self._drawn: tuple[slice, slice] | None = None  # where _buffer may not be clear

    def show_labels(self, coloured: ColouredLabels) -> None:
        """Draw `coloured` (its box; the rest of the image clear)."""
        shape = (*coloured.shape, 4)
        buffer = self._buffer
        if buffer is None or buffer.shape != shape:
            buffer = self._buffer = np.zeros(shape, np.uint8)
        elif self._drawn is not None:
            buffer[self._drawn] = 0
        if coloured.box is not None:
            buffer[coloured.box] = coloured.crop
        self.setImage(buffer, autoLevels=False, levels=None)
        self.set_paint_box(coloured.box)

    def set_paint_box(self, box: tuple[slice, slice] | None) -> None:
        """Draw (rows, cols) only; None: nothing is labelled, draw nothing."""
        self.paint_box = QRectF() if box is None else _rect(*box)
        if self._showing_buffer():
            self._drawn = box

    def grow_paint_box(self, rows: slice, cols: slice) -> None:
        """Also draw rows x cols (an edit there)."""
        if self.paint_box is not None:
            self.paint_box = self.paint_box.united(_rect(rows, cols))
            if self._showing_buffer():
                self._drawn = _slices(self.paint_box)

    def render(self) -> None:
        super().render()
        if self.qimage is not None and self._showing_buffer():
            self.qimage.reinterpretAsFormat(QImage.Format.Format_ARGB32_Premultiplied)

    def _showing_buffer(self) -> bool:
        """Whether the image is the item's own premultiplied buffer (setImage keeps a view
        of what it is given)."""
        image, buffer = self.image, self._buffer
        return image is not None and buffer is not None and (
            image is buffer or image.base is buffer)

    def rgba(self) -> np.ndarray | None:
        """The image as straight RGBA (rows, cols, 4) uint8, whichever way it is stored."""
        if self.image is None or not self._showing_buffer():
            return self.image
        return straight_rgba(self.image)

    def paint(self, painter, *args) -> None:
        """The paint box's part of the image onto the same part of the item (a source
        rectangle: no clip to set up and restore)."""
        box = self.paint_box
        if box is None:
            super().paint(painter, *args)
            return
        if box.isEmpty() or self.image is None:
            return
        # as pyqtgraph's own paint: render first when the image changed, nothing when it
        # cannot (its private flags, read defensively for a pyqtgraph without them)
        if getattr(self, "_renderRequired", self.qimage is None):
            self.render()
        if getattr(self, "_unrenderable", False) or self.qimage is None:
            return
        painter.drawImage(box, self.qimage, box)


def _rect(rows: slice, cols: slice) -> QRectF:
    """rows x cols in image pixel coordinates (x along the columns)."""
    return QRectF(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)


def _slices(rect: QRectF) -> tuple[slice, slice]:
    """(rows, cols) of a rectangle `_rect` made (or a union of them)."""
    return (slice(int(rect.top()), int(rect.bottom())),
            slice(int(rect.left()), int(rect.right())))
