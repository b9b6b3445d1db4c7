"""Label maps on a SliceView come from images coloured once and kept (viewing.label_images):
paging back and forth shows each slice's own labels in their colours, an edit of the reader's
mask shows at once and on every later visit, a new colour, opacity or outline / fill choice is
drawn, and the kept images stay within their byte budget."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from PySide6.QtGui import QImage

from medviewer.core.dicom.volume import Volume
from medviewer.core.display import Window
from medviewer.inference.results import Result
from medviewer.ui.ai.layers import AiLayerItems
from medviewer.ui.annotate.layers import AnnotationLayer
from medviewer.ui.document.ai_state import AiOutput
from medviewer.ui.viewing import label_images
from medviewer.ui.viewing.label_images import LabelImageCache, screen_lut, straight_rgba
from medviewer.ui.viewing.layer_order import outline
from medviewer.ui.viewing.slice_view import SliceView
from tests.ui.gui import _screen, _slice_view

SLICES, ROWS, COLS = 10, 40, 48
COLOURS = {1: (0, 255, 0), 2: (255, 0, 255)}  # as "#00ff00", "#ff00ff" below


def _labels() -> np.ndarray:
    """A disc (1) that grows slice by slice, and a square (2) on the even slices only."""
    rows, cols = np.mgrid[:ROWS, :COLS]
    labels = np.zeros((SLICES, ROWS, COLS), np.uint8)
    for k in range(1, SLICES):
        labels[k][(rows - 20) ** 2 + (cols - 16) ** 2 < (2 + k) ** 2] = 1
        if k % 2 == 0:
            labels[k, 5:12, 34:44] = 2
    return labels


def _lut() -> np.ndarray:
    lut = np.zeros((256, 4), np.uint8)
    for value, colour in COLOURS.items():
        lut[value] = (*colour, 255)
    return lut


def _expected(labels: np.ndarray, width: int = 0) -> np.ndarray:
    """Straight RGBA of a label image through the table, only the edges when width > 0."""
    rgba = _lut()[labels]
    if width:
        rgba[~outline(labels, width)] = 0
    return rgba


@pytest.fixture
def make_view(qtbot):
    def make() -> SliceView:
        voxels = np.full((SLICES, ROWS, COLS), -1000, np.int16)  # black in the window
        return _slice_view(qtbot, Volume(voxels=voxels, affine=np.eye(4), modality="CT"),
                           window=Window(40, 400), size=(300, 260))
    return make


def _with_ai_labels(view: SliceView, labels: np.ndarray) -> AiLayerItems:
    layer = view.add_layer("ai", AiLayerItems)
    result = Result("test-seg", "1", "segmentation", ["background", "disc", "square"],
                    ["#000000", "#00ff00", "#ff00ff"], label_map=labels)
    view.document.set_ai_output(AiOutput((result,), "series"))
    return layer


def _on_screen(view: SliceView, col: int, row: int) -> tuple[int, int, int]:
    shot = view.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    return shot.pixelColor(_screen(view, col + 0.5, row + 0.5)).getRgb()[:3]


def test_paging_back_and_forth_shows_each_slices_labels_coloured_once(make_view,
                                                                     monkeypatch):
    view, labels = make_view(), _labels()
    layer = _with_ai_labels(view, labels)
    doc, item = view.document, layer.labels_item
    doc.set_ai_display(label_fill=True, opacity=1.0)
    coloured = []
    original = label_images.colour_labels
    monkeypatch.setattr(label_images, "colour_labels",
                        lambda *a: coloured.append(1) or original(*a))
    path = [*range(SLICES), *range(SLICES - 2, -1, -1), 4, 7, 4]
    for k in path:
        doc.set_slice(k)
        if not labels[k].any():
            assert not item.isVisible(), k
            continue
        assert item.isVisible() and (item.rgba() == _expected(labels[k])).all(), k
    assert len(coloured) <= SLICES  # paging back coloured nothing again
    doc.set_slice(6)  # on screen: the square in its colour, the disc in its own
    assert _on_screen(view, 38, 8) == COLOURS[2]
    assert _on_screen(view, 16, 20) == COLOURS[1]
    assert _on_screen(view, 2, 2) == (0, 0, 0)  # no label: the (black) image
    doc.set_slice(5)  # no square on odd slices: not left over from slice 6
    assert _on_screen(view, 38, 8) == (0, 0, 0)


def test_outline_fill_hidden_labels_and_opacity_are_drawn(make_view):
    view, labels = make_view(), _labels()
    layer = _with_ai_labels(view, labels)
    doc, item = view.document, layer.labels_item
    doc.set_slice(6)
    assert (item.rgba() == _expected(labels[6], width=1)).all()  # outlines by default
    assert item.opacity() == 1.0
    doc.set_ai_display(label_fill=True, opacity=0.3)
    assert (item.rgba() == _expected(labels[6])).all() and item.opacity() == pytest.approx(0.3)
    doc.set_label_visible("square", False)
    hidden = _expected(labels[6])
    hidden[labels[6] == 2] = 0
    assert (item.rgba() == hidden).all()
    doc.set_slice(4)
    doc.set_slice(6)  # back to a slice kept coloured with the square shown: still hidden
    assert (item.rgba() == hidden).all()
    doc.set_label_visible("square", True)
    doc.set_ai_display(label_fill=False)
    assert (item.rgba() == _expected(labels[6], width=1)).all() and item.opacity() == 1.0


def _annotated_view(make_view) -> tuple[SliceView, AnnotationLayer, int]:
    view = make_view()
    layer = view.add_layer("annotation", AnnotationLayer)
    label = view.document.add_label("lesion", "#ff0000")
    return view, layer, label.value


def _paint(view: SliceView, k: int, rows: slice, cols: slice, value: int) -> None:
    """What a tool does: write the label map in place, then announce the box it changed."""
    doc = view.document
    doc.labelmap.array[k, rows, cols] = value
    doc.labelmap_changed((slice(k, k + 1), rows, cols))


def _shows(layer: AnnotationLayer, k: int, rows: slice, cols: slice) -> bool:
    """Whether the layer draws exactly rows x cols of slice k in red, clear elsewhere."""
    expected = np.zeros((ROWS, COLS, 4), np.uint8)
    expected[rows, cols] = (255, 0, 0, 255)
    layer.view.document.set_slice(k)
    return bool((layer.item.rgba() == expected).all())


def test_an_edit_of_a_kept_slice_shows_at_once_and_when_paged_back_to(make_view):
    view, layer, value = _annotated_view(make_view)
    view.document.labelmap.display = "fill"
    first, second = (slice(5, 10), slice(5, 10)), (slice(20, 30), slice(30, 40))
    _paint(view, 3, *first, value)
    _paint(view, 6, *first, value)
    assert _shows(layer, 3, *first) and _shows(layer, 6, *first)  # both kept coloured now
    _paint(view, 6, *second, value)  # the slice on screen: drawn at once
    grown = np.zeros((ROWS, COLS), bool)
    grown[first] = grown[second] = True
    assert ((layer.item.rgba()[..., 3] > 0) == grown).all()
    assert _shows(layer, 3, *first)
    view.document.labelmap.array[6, first[0], first[1]] = 0  # the eraser, on slice 6 ...
    view.document.labelmap_changed((slice(6, 7), *first))
    _paint(view, 3, *second, value)  # ... and a stroke on slice 3, not on screen
    view.document.labelmap.array[3, first[0], first[1]] = 0
    view.document.labelmap_changed((slice(3, 4), *first))
    assert _shows(layer, 6, *second) and _shows(layer, 3, *second)


def test_a_new_colour_or_display_mode_of_the_mask_is_drawn(make_view):
    view, layer, value = _annotated_view(make_view)
    doc = view.document
    block = (slice(10, 20), slice(10, 22))
    _paint(view, 2, *block, value)
    _paint(view, 4, *block, value)
    doc.set_slice(2)
    filled = doc.labelmap.display == "fill"
    inside = layer.item.rgba()[15, 16]
    assert tuple(inside) == ((255, 0, 0, 255) if filled else (0, 0, 0, 0))
    doc.labelmap.table.labels[value].colour = "#0000ff"  # as the panel's colour dialog does
    doc.labelmap.display = "fill"
    doc.labelmap.opacity = 0.4
    doc.labelmap_changed(None)
    assert tuple(layer.item.rgba()[15, 16]) == (0, 0, 255, 255)
    assert layer.item.opacity() == pytest.approx(0.4)
    doc.set_slice(4)  # a slice kept in the old colour: drawn in the new one
    assert tuple(layer.item.rgba()[15, 16]) == (0, 0, 255, 255)
    doc.labelmap.display = "outline"
    doc.labelmap_changed(None)
    rgba = layer.item.rgba()
    assert tuple(rgba[15, 16]) == (0, 0, 0, 0) and tuple(rgba[10, 16]) == (0, 0, 255, 255)


def test_kept_images_stay_within_the_budget_least_recently_used_out():
    labels = _labels()
    one = label_images.colour_labels(labels[SLICES - 1], _lut()).nbytes
    cache = LabelImageCache(budget=3 * one)
    for k in range(1, SLICES):
        cache.coloured(labels, labels[k], (0, k), _lut())
        assert cache.nbytes <= cache.budget
        cache.coloured(labels, labels[1], (0, 1), _lut())  # used on every step: kept
    kept = [k for k in range(1, SLICES) if any(key[1] == (0, k) for key in cache._entries)]
    assert 1 in kept and SLICES - 1 in kept
    dropped = sorted(set(range(1, SLICES)) - set(kept))
    assert dropped and dropped[0] == 2  # the oldest went first
    again = cache.coloured(labels, labels[2], (0, 2), _lut())  # coloured anew, the same
    assert (straight_rgba(again.crop) == _expected(labels[2])[again.box]).all()


def test_forget_drops_the_images_an_edit_crosses_and_a_source_takes_its_own():
    labels, lut = _labels(), _lut()
    cache = LabelImageCache()
    for k in range(1, SLICES):
        cache.coloured(labels, labels[k], (0, k), lut)
    cache.forget(labels, (slice(3, 5), slice(0, ROWS), slice(0, COLS)))
    assert sorted(key[1][1] for key in cache._entries) == [1, 2, 5, 6, 7, 8, 9]
    other = labels.copy()
    cache.coloured(other, other[4], (0, 4), lut)
    cache.forget(labels)
    assert [key[1] for key in cache._entries] == [(0, 4)]
    del other
    gc.collect()
    assert len(cache) == 0 and cache.nbytes == 0  # a result gone takes its images along


def test_screen_colours_are_premultiplied_argb32_as_qt_reads_them():
    lut = np.zeros((256, 4), np.uint8)
    lut[1], lut[2], lut[3] = (200, 100, 50, 128), (10, 255, 90, 255), (255, 255, 255, 1)
    packed = np.ascontiguousarray(screen_lut(lut)[:4][None])  # one row of four pixels
    image = QImage(packed.data, 4, 1, 16, QImage.Format.Format_ARGB32_Premultiplied)
    for value in (1, 2):
        colour = image.pixelColor(value, 0)  # Qt's reading, back to straight colour
        assert abs(np.array(colour.getRgb()) - lut[value]).max() <= 1, value
    assert tuple(packed[0, 1].view(np.uint32)) == (
        (128 << 24) | (round(200 * 128 / 255) << 16) | (round(100 * 128 / 255) << 8)
        | round(50 * 128 / 255),)
    assert (abs(straight_rgba(packed[0]).astype(int) - lut[:4]) <= 1)[:3].all()
    assert tuple(straight_rgba(packed[0])[0]) == (0, 0, 0, 0)
