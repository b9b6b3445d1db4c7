"""A label map is drawn only inside its labelled box (the rest is clear, and Qt need not
convert and blend it), and that box grows with every edit, so nothing drawn is ever cut off;
its colours are premultiplied as Qt reads them; the grey image renders into buffers of its own
without touching the one on screen."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from medviewer.ui.viewing.image_items import GreyImageItem, LabelImageItem
from medviewer.ui.viewing.label_images import colour_labels
from tests.ui.gui import RADIUS, _paint, _screen, _window

RED = (255, 0, 0)


def _shown(qtbot, item: LabelImageItem):
    """A view showing `item` 1:1 (one screen pixel per image pixel); its pixel reader."""
    widget = pg.GraphicsView(background="k")
    box = pg.ViewBox(invertY=True, enableMouse=False)
    widget.setCentralItem(box)
    box.addItem(item)
    qtbot.addWidget(widget)
    widget.resize(60, 50)
    widget.show()
    qtbot.waitExposed(widget)
    box.setRange(xRange=(0, 60), yRange=(0, 50), padding=0)

    def colour(col: int, row: int) -> tuple[int, int, int]:
        QApplication.processEvents()
        shot = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
        point = box.mapViewToScene(pg.QtCore.QPointF(col + 0.5, row + 0.5))
        return shot.pixelColor(widget.mapFromScene(point)).getRgb()[:3]
    return colour


def test_only_the_paint_box_is_drawn_and_it_grows(qtbot):
    image = np.zeros((50, 60, 4), np.uint8)
    image[...] = (*RED, 255)  # labelled everywhere: what is drawn is the box's doing
    item = LabelImageItem(axisOrder="row-major")
    item.setImage(image, autoLevels=False, levels=None)
    colour = _shown(qtbot, item)
    assert colour(40, 30) == RED  # no box: the whole image
    item.set_paint_box((slice(10, 20), slice(10, 30)))
    assert colour(15, 12) == RED and colour(40, 30) == (0, 0, 0)
    item.grow_paint_box(slice(28, 33), slice(38, 43))  # an edit there
    assert colour(15, 12) == RED and colour(40, 30) == RED and colour(50, 45) == (0, 0, 0)
    item.set_paint_box(None)  # nothing labelled
    assert colour(15, 12) == (0, 0, 0)
    item.grow_paint_box(slice(0, 5), slice(0, 5))  # the first dab on an empty image
    assert colour(2, 2) == RED and colour(15, 12) == (0, 0, 0)


def test_a_stroke_far_from_the_first_is_drawn_on_screen(make_main_window, qtbot,
                                                       ct_series_dir):
    """The annotation layer draws the first stroke's box; a second stroke far away redraws
    only its own area, and shows: the box grew with it."""
    win = _window(make_main_window, qtbot, ct_series_dir)
    view, doc = win.viewer.single_view, win.document
    assert win.annotate.set_tool("brush")
    doc.add_label("lesion")
    win.annotate.set_brush(radius_mm=RADIUS)
    _paint(win, [(14, 14), (16, 16)])
    _, after = _paint(win, [(48, 48), (50, 50)])
    assert after[doc.slice_index, 49, 49] > 0
    QApplication.processEvents()
    shot = view.grab().toImage()
    for col, row in ((15, 15), (49, 49)):
        pos = _screen(view, col + 0.5, row + 0.5)
        r, g, b, _ = shot.pixelColor(pos).getRgb()
        assert (r, g, b) != (0, 0, 0) and not r == g == b, (col, row)  # the label's colour


def test_the_grey_item_lends_the_buffer_not_on_screen(qtbot):
    """Rendering the next image never writes over the one on screen; two buffers in turn."""
    item = GreyImageItem(axisOrder="row-major")
    seen = []
    for value in (10, 20, 30):
        buffer = item.next_buffer((6, 8))
        shown = item.image
        assert shown is None or not np.shares_memory(buffer, shown)
        buffer[...] = value
        item.setImage(buffer, autoLevels=False, levels=None)
        seen.append(buffer)
    assert seen[0] is seen[2] and seen[0] is not seen[1]
    assert (item.image == 30).all()
    assert item.next_buffer((3, 4)).shape == (3, 4, 4)  # another size: new buffers


def test_labels_are_drawn_premultiplied_once_not_twice(qtbot):
    """Half-transparent orange over black shows at half its brightness (premultiplied
    pixels drawn as such), only inside its box, and the next image clears the last one's."""
    lut = np.zeros((256, 4), np.uint8)
    lut[1] = (240, 120, 0, 128)
    labels = np.zeros((50, 60), np.uint8)
    labels[10:20, 10:30] = 1
    item = LabelImageItem(axisOrder="row-major")
    item.show_labels(colour_labels(labels, lut))
    colour = _shown(qtbot, item)
    r, g, b = colour(15, 12)
    assert abs(r - 120) <= 2 and abs(g - 60) <= 2 and b == 0
    assert colour(40, 30) == (0, 0, 0)
    moved = np.zeros_like(labels)
    moved[30:40, 35:50] = 1
    item.show_labels(colour_labels(moved, lut))
    assert colour(15, 12) == (0, 0, 0) and colour(40, 35) != (0, 0, 0)
    assert (item.rgba()[..., 3] > 0).sum() == moved.sum()
