"""pyqtgraph ImageItems that draw a SliceView's layers faster: the grey image in the format
Qt's raster engine draws as it is, a label map only where it has labels."""

from __future__ import annotations

import sys

import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QImage

LITTLE_ENDIAN = sys.byteorder == "little"  # grey (g, g, g, 255) bytes read as RGB32


class GreyImageItem(pg.ImageItem):
    """The image: grey packed as opaque RGBA (`screen_pixels.screen_rgba`) is handed to Qt as
    RGB32, the format its raster engine draws without converting; pyqtgraph's choice for four
    channels, RGBA8888, is converted on every paint (2x the time of the whole draw)."""

    def render(self) -> None:
        super().render()
        image, qimage = self.image, self.qimage
        if (qimage is not None and image is not None and image.ndim == 3 and image.shape[2] == 4
                and qimage.format() == QImage.Format.Format_RGBA8888 and LITTLE_ENDIAN):
            qimage.reinterpretAsFormat(QImage.Format.Format_RGB32)  # B, G, R, 255: the same


class LabelImageItem(pg.ImageItem):
    """A label map's RGBA, drawn only inside `paint_box` (image pixels; None: all of it): the
    rest is clear, and Qt converts and blends every pixel it is asked to draw (two lungs cover
    a third of a CT slice: a third of the time)."""

    paint_box: QRectF | None = None

    def set_paint_box(self, box: tuple[slice, slice] | None) -> None:
        """Draw (rows, cols) only; None: nothing is labelled, draw nothing."""
        self.paint_box = QRectF() if box is None else _rect(*box)

    def grow_paint_box(self, rows: slice, cols: slice) -> None:
        """Also draw rows x cols (an edit there)."""
        if self.paint_box is not None:
            self.paint_box = self.paint_box.united(_rect(rows, cols))

    def paint(self, painter, *args) -> None:
        if self.paint_box is None:
            super().paint(painter, *args)
            return
        if self.paint_box.isEmpty():
            return
        painter.save()
        painter.setClipRect(self.paint_box, Qt.ClipOperation.IntersectClip)
        super().paint(painter, *args)
        painter.restore()


def _rect(rows: slice, cols: slice) -> QRectF:
    """rows x cols in image pixel coordinates (x along the columns)."""
    return QRectF(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
