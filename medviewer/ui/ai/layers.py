"""The AI's layers on one SliceView: the label map, the boxes and the heatmap.

Only the drawing lives here; what to draw comes from the document (`ai_state.AiLayers`), so
every view of every plane follows one result. The label map is cut from its volume-grid
array the way the voxels are (any MPR plane cut along the voxel axes shows it; a resampled
oblique plane does not: labels are not interpolated) and coloured through a 256-entry RGBA
lookup table built from the manifest's colours, once per image (`viewing.label_images`
keeps it for the next visit); opacity is the item's, so the slider re-renders nothing. By
default each label is drawn as its outline, solid (the pixels on its edge, one per 600
pixels of the image's longer side, so a film shown small keeps a visible line), and the
anatomy inside a lesion stays readable; the reader's "Fill labels" choice
(`AiDisplay.label_fill`) tints the whole area at the opacity of the slider. Boxes are
rectangles with "label score" in the label's colour, on planes cut along the acquired
slices, and a measured ratio's widths (lab 5's heart and thorax) dashed lines beside them.
The heatmap (0..1) goes through a jet-like table, with its colour bar at the view's right
edge while it is on screen. The stacking order of all of these is `viewing.layer_order`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QLineF, QRectF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsLineItem, QGraphicsRectItem

from medviewer.ui.ai.colour_bar import HeatmapColourBar
from medviewer.ui.ai.measurements import lines_on_plane
from medviewer.ui.document.ai_state import label_lut, rgb
from medviewer.ui.viewing.image_items import LabelImageItem
from medviewer.ui.viewing.label_images import LABEL_IMAGES
from medviewer.ui.viewing.layer_order import AI_BOXES_Z, AI_LABELS_Z, HEATMAP_Z

if TYPE_CHECKING:
    from medviewer.inference.results import Box
    from medviewer.ui.viewing.slice_view import SliceView
OUTLINE_PER_PX = 600  # outline width: one pixel per this many of the image's longer side
MEASURED_COLOUR = "#ffd54f"  # the widths of a measured ratio: amber, apart from label colours


def jet_lut(fade: float = 0.4) -> np.ndarray:
    """(256, 4) uint8: blue -> cyan -> yellow -> red (the CAM papers' colour map). Alpha
    rises from 0 to opaque over the lowest `fade` of the range: where the model did not look
    the image stays readable instead of sinking under a blue veil."""
    x = np.linspace(0.0, 1.0, 256)
    channels = [np.clip(1.5 - np.abs(4 * x - c), 0, 1) for c in (3, 2, 1)]
    lut = np.empty((256, 4), np.uint8)
    lut[:, :3] = np.rint(np.stack(channels, axis=1) * 255)
    lut[:, 3] = np.rint(np.clip(x / fade, 0, 1) * 255) if fade > 0 else 255
    return lut


JET = jet_lut()


class AiLayerItems:
    """Label map, heatmap and box items of one view, redrawn when the document says so."""

    def __init__(self, view: SliceView) -> None:
        self.view = view
        self.labels_item = LabelImageItem(axisOrder="row-major")
        self.heatmap_item = pg.ImageItem(axisOrder="row-major")
        for item, z in ((self.labels_item, AI_LABELS_Z), (self.heatmap_item, HEATMAP_Z)):
            item.setZValue(z)
            item.setVisible(False)
            view.view_box.addItem(item, ignoreBounds=True)
        self.colour_bar = HeatmapColourBar(view, JET)
        self.box_items: list[tuple[Box, QGraphicsRectItem, pg.TextItem]] = []
        self.line_items: list[QGraphicsLineItem] = []  # the widths a measurement was taken on
        doc = view.document
        doc.sigAiResultChanged.connect(self.refresh)
        doc.sigAiDisplayChanged.connect(self.refresh)

    def refresh(self, *_args: object) -> None:
        """Draw the document's AI layers on the view's current image."""
        view = self.view
        if view.document.volume is None:
            self._hide_all()
            return
        k = view.slice_index
        self._show_labels(k)
        self._show_heatmap(k)
        self._show_boxes(k)
        self._show_lines(k)

    def _hide_all(self) -> None:
        self.labels_item.setVisible(False)
        self.heatmap_item.setVisible(False)
        self.colour_bar.hide()
        self._clear_boxes()
        self._show_lines(None)

    def _show_labels(self, k: int) -> None:
        doc = self.view.document
        labels = doc.label_image(self.view.plane_name, k)
        if labels is None:
            self.labels_item.setVisible(False)
            return
        fill = doc.ai_display.label_fill
        width = 0 if fill else max(1, round(max(labels.shape) / OUTLINE_PER_PX))
        lut = label_lut(doc.ai_result, doc.ai_display.hidden_labels)
        coloured = LABEL_IMAGES.coloured(doc.ai_result.label_map, labels,
                                         (self.view.plane.axes[0], k), lut, width)
        if coloured.box is None:  # nothing labelled here
            self.labels_item.setVisible(False)
            return
        self.labels_item.show_labels(coloured)
        self.labels_item.place(self.view.image_rect())
        self.labels_item.setOpacity(doc.ai_display.opacity if fill else 1.0)
        self.labels_item.setVisible(True)

    def _show_heatmap(self, k: int) -> None:
        doc = self.view.document
        heat = doc.heatmap_image(self.view.plane_name, k)
        if heat is None:
            self.heatmap_item.setVisible(False)
            self.colour_bar.hide()
            return
        index = np.rint(np.clip(np.nan_to_num(heat), 0.0, 1.0) * 255).astype(np.uint8)
        self.heatmap_item.setImage(JET[index], autoLevels=False, levels=None)
        self.heatmap_item.setRect(self.view.image_rect())
        self.heatmap_item.setOpacity(doc.ai_display.heatmap_opacity)
        self.heatmap_item.setVisible(True)
        self.colour_bar.show_for(doc.explanation.method)

    def _show_boxes(self, k: int) -> None:
        self._clear_boxes()
        doc = self.view.document
        result = doc.ai_result
        for box, (x0, y0, x1, y1) in doc.boxes_on_plane(self.view.plane_name, k):
            index = result.labels.index(box.label) if box.label in result.labels else 0
            colour = QColor(*rgb(result.colours[index] if result.colours else "", index))
            top_left = self.view.pixel_to_view(x0, y0)
            bottom_right = self.view.pixel_to_view(x1, y1)
            rect_item = QGraphicsRectItem(QRectF(top_left, bottom_right))
            pen = QPen(colour, 2)
            pen.setCosmetic(True)  # 2 screen pixels at any zoom
            rect_item.setPen(pen)
            rect_item.setZValue(AI_BOXES_Z)
            text = pg.TextItem(f"{box.label} {box.score:.2f}", color=colour, anchor=(0, 1),
                               fill=(0, 0, 0, 140))
            text.setPos(top_left)
            text.setZValue(AI_BOXES_Z)
            self.view.view_box.addItem(rect_item, ignoreBounds=True)
            self.view.view_box.addItem(text, ignoreBounds=True)
            self.box_items.append((box, rect_item, text))

    def _clear_boxes(self) -> None:
        for _box, rect_item, text in self.box_items:
            self.view.view_box.removeItem(rect_item)
            self.view.view_box.removeItem(text)
        self.box_items = []

    def _show_lines(self, k: int | None) -> None:
        """Dashed segments where the shown measurements were taken (lab 5's heart and
        thoracic widths), with the boxes; `k` None clears them."""
        for item in self.line_items:
            self.view.view_box.removeItem(item)
        self.line_items = []
        if k is None:
            return
        pen = QPen(QColor(MEASURED_COLOUR), 2, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        for start, end in lines_on_plane(self.view.document, self.view.plane_name, k):
            item = QGraphicsLineItem(QLineF(self.view.pixel_to_view(*start),
                                            self.view.pixel_to_view(*end)))
            item.setPen(pen)
            item.setZValue(AI_BOXES_Z)
            self.view.view_box.addItem(item, ignoreBounds=True)
            self.line_items.append(item)
