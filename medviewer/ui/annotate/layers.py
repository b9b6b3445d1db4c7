"""The reader's label map drawn on one SliceView, redrawing only what an edit changed.

The item keeps a buffer of the current image (premultiplied ARGB32, `label_images`). A
brush dab announces the (slice, row, column) box it changed; if that box crosses the image on
screen, only the matching rectangle of the buffer is recoloured through the label table's
lookup table, then `updateImage()` hands the same buffer to Qt: a dab plus refresh costs a few
hundred pixels of numpy, not a frame. A new image, a new series or a table / display change
redraws the whole buffer, from the images kept coloured (`viewing.label_images`: an edit drops
the ones its box crosses, so a correction shows when the reader pages back to it). Outline
mode marks the pixels whose right, left, upper or lower neighbour has another value; a dirty
rectangle is grown by one pixel so the outline around it follows. Opacity is the item's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from medviewer.ui.document.annotate_state import rgba_lut
from medviewer.ui.viewing.image_items import LabelImageItem
from medviewer.ui.viewing.label_images import LABEL_IMAGES, screen_lut
from medviewer.ui.viewing.layer_order import ANNOTATION_MASK_Z, label_rgba

if TYPE_CHECKING:
    from medviewer.ui.viewing.slice_view import SliceView


class AnnotationLayer:
    """The label map item of one view, following the document's annotation signals."""

    def __init__(self, view: SliceView) -> None:
        self.view = view
        self.item = LabelImageItem(axisOrder="row-major")
        self.item.setZValue(ANNOTATION_MASK_Z)
        self.item.setVisible(False)
        view.view_box.addItem(self.item, ignoreBounds=True)
        self.buffer: np.ndarray | None = None  # (rows, cols, 4) RGBA of image `_shown_k`
        self._shown_k: int | None = None
        view.document.sigLabelMapChanged.connect(self.on_changed)

    # ----------------------------------------------------------------- full redraw
    def refresh(self, *_args: object) -> None:
        """Redraw the whole current image (a new slice, series, table or display setting)."""
        doc, view = self.view.document, self.view
        k = view.slice_index
        labels = doc.annotation_image(view.plane_name, k)
        if labels is None:
            self.item.setVisible(False)
            self.buffer, self._shown_k = None, None
            return
        coloured = LABEL_IMAGES.coloured(doc.labelmap.array, labels, (view.plane.axes[0], k),
                                         rgba_lut(doc.labelmap.table), self._outline_width())
        self.item.show_labels(coloured)
        self.buffer, self._shown_k = self.item.image, k
        self.item.place(view.image_rect())
        self.item.setOpacity(doc.labelmap.opacity)
        self.item.setVisible(True)

    def _outline_width(self) -> int:
        return int(self.view.document.labelmap.display == "outline")

    # ----------------------------------------------------------------- partial redraw
    def on_changed(self, box: Any) -> None:
        """An edit of `box` (slice, row, col slices in voxels); None redraws everything."""
        labelmap = self.view.document.labelmap
        if labelmap is not None:  # the images kept coloured of what changed are stale
            LABEL_IMAGES.forget(labelmap.array, box)
        if box is None or self.buffer is None or self._shown_k != self.view.slice_index:
            self.refresh()
            return
        area = self._plane_area(box)
        if area is None:
            return  # the edit is on other images of this plane
        self.update_area(*area)

    def _plane_area(self, box: Any) -> tuple[slice, slice] | None:
        """The (rows, cols) of the shown image that `box` covers; None when it misses it.

        Only planes cut straight along the acquired slices redraw part of the image; the MPR
        planes (rows and columns from other axes) redraw whole."""
        plane = self.view.plane
        if tuple(plane.axes) != (0, 1, 2):
            return (slice(0, plane.shape[1]), slice(0, plane.shape[2])) \
                if self._crosses(box) else None
        k = self._shown_k
        if not box[0].start <= k < box[0].stop:
            return None
        _, nr, nc = plane.shape
        rows, cols = box[1], box[2]
        if plane.flips[0]:
            rows = slice(nr - rows.stop, nr - rows.start)
        if plane.flips[1]:
            cols = slice(nc - cols.stop, nc - cols.start)
        return rows, cols

    def _crosses(self, box: Any) -> bool:
        """Whether a voxel box reaches the image shown on an MPR plane."""
        axis = self.view.plane.axes[0]  # image k of a plane is index k along this axis
        return box[axis].start <= self._shown_k < box[axis].stop

    def update_area(self, rows: slice, cols: slice) -> None:
        """Recolour rows x cols of the buffer (plus one pixel for the outline) and show it."""
        doc, view = self.view.document, self.view
        labels = doc.annotation_image(view.plane_name, self._shown_k)
        if labels is None:
            self.refresh()
            return
        grow = self._outline_width()
        rows = slice(max(0, rows.start - grow), min(labels.shape[0], rows.stop + grow))
        cols = slice(max(0, cols.start - grow), min(labels.shape[1], cols.stop + grow))
        lut = screen_lut(rgba_lut(doc.labelmap.table))  # as the item's buffer holds it
        if grow:  # the outline of the area depends on the pixels just outside it
            outer = (slice(max(0, rows.start - 1), rows.stop + 1),
                     slice(max(0, cols.start - 1), cols.stop + 1))
            block = label_rgba(labels[outer], lut, grow)
            inner = (slice(rows.start - outer[0].start, rows.stop - outer[0].start),
                     slice(cols.start - outer[1].start, cols.stop - outer[1].start))
            self.buffer[rows, cols] = block[inner]
        else:
            self.buffer[rows, cols] = lut[labels[rows, cols]]
        self.item.grow_paint_box(rows, cols)
        self.item.updateImage(self.buffer)
        self.item.setOpacity(doc.labelmap.opacity)
        self.item.setVisible(True)
