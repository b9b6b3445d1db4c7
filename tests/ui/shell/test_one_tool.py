"""One tool owns the mouse, measurements are the series', keys follow the image: in the real
window, with real clicks, drags and key presses.

Positions are image pixels of the stack view put on screen, as in the annotate tests.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from medviewer.core import synthetic as syn
from medviewer.ui.viewing.measure_tools import AreaMeasurement, DistanceMeasurement
from tests.ui.gui import RADIUS, _drag, _open, _window

RULER = [(10.0, 40.0), (40.0, 40.0)]  # image pixels (x=column, y=row)


@pytest.fixture
def window(make_main_window, qtbot, ct_series_dir):
    return _window(make_main_window, qtbot, ct_series_dir)


def _click_tool(win, name: str, qtbot) -> None:
    """Click the tool's button in the viewer's toolbar."""
    button = win.viewer.toolbar.widgetForAction(win.viewer.tool_actions[name])
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def _shapes(win, cls) -> list:
    return [m for m in win.viewer.single_view.measurements.items if isinstance(m, cls)]


def test_the_toolbar_ends_the_brush_a_drag_then_measures_and_paints_nothing(window, qtbot):
    win, doc, ctl = window, window.document, window.annotate
    view = win.viewer.single_view
    doc.add_label("lesion")
    ctl.set_brush(radius_mm=RADIUS)
    ctl.panel.tool_buttons["brush"].click()  # the Annotate dock's Brush
    assert doc.tool == "brush" and ctl.tool_actions["brush"].isChecked()
    assert win.tool_label.text() == "Tool: Brush"
    assert not any(a.isChecked() for a in win.viewer.tool_actions.values())
    before = doc.labelmap.array.copy()
    _click_tool(win, "distance", qtbot)
    assert doc.tool == "distance" and win.tool_label.text() == "Tool: Distance"
    assert not ctl.tool_actions["brush"].isChecked()  # the menu and the dock follow
    assert not ctl.panel.tool_buttons["brush"].isChecked()
    _drag(view, [RULER[0], (25.0, 40.0), RULER[1]])
    (ruler,) = _shapes(win, DistanceMeasurement)
    assert ruler.length_mm == pytest.approx(30 * view.spacing[1], rel=0.05)
    assert np.array_equal(doc.labelmap.array, before), "the drag painted"


def test_an_ellipse_drawn_on_a_rulers_handle_is_an_ellipse(window, qtbot):
    win, doc = window, window.document
    view = win.viewer.single_view
    _click_tool(win, "distance", qtbot)
    _drag(view, [RULER[0], (25.0, 40.0), RULER[1]])
    (ruler,) = _shapes(win, DistanceMeasurement)
    ends = ruler.endpoints_px()
    _click_tool(win, "ellipse", qtbot)
    start = (RULER[1][0] + 0.3, RULER[1][1] + 0.3)  # on the ruler's far handle
    _drag(view, [start, (48.0, 46.0), (55.0, 52.0)])
    (ellipse,) = _shapes(win, AreaMeasurement)
    assert ellipse.kind == "ellipse"
    x0, y0, x1, y1 = ellipse.corners_px()
    assert (x0, y0) == pytest.approx(start, abs=0.6) and (x1, y1) == pytest.approx((55, 52),
                                                                                   abs=0.6)
    assert np.allclose(ruler.endpoints_px(), ends), "the ruler moved"
    assert [m.kind for m in doc.measurements] == ["distance", "ellipse"]
    _click_tool(win, "navigate", qtbot)  # Navigate grabs any shape: the ruler's end moves
    _drag(view, [RULER[0], (RULER[0][0], 45.0), (RULER[0][0], 50.0)])
    assert ruler.endpoints_px()[0][1] == pytest.approx(50.0, abs=1.0)


def test_measurements_survive_a_series_switch_and_a_save_and_reopen(
        window, qtbot, tmp_path, ct_series_dir, make_main_window, temp_settings):
    win, doc = window, window.document
    view, k = win.viewer.single_view, doc.slice_index
    win.viewer.set_tool("rect")
    _drag(view, [(8.0, 8.0), (14.0, 14.0), (20.0, 24.0)])
    win.viewer.set_tool("ellipse")
    _drag(view, [(30.0, 30.0), (40.0, 36.0), (50.0, 44.0)])
    win.viewer.set_tool("distance")
    _drag(view, [RULER[0], (25.0, 40.0), RULER[1]])
    texts = [m.text() for m in view.measurements.items]
    panel = win.measurements
    assert panel.table.rowCount() == 3
    assert [panel.table.item(r, 0).text() for r in range(3)] == ["Rect ROI", "Ellipse ROI",
                                                                "Distance"]
    assert panel.table.item(0, 2).text().startswith("mean ")
    shown_number = view.overlays["top_right"].text().split()[1]  # "Axial  n / N"
    assert panel.table.item(0, 1).text() == shown_number  # the image number the view shows
    voxels, _ = syn.ct_chest_phantom((6, 64, 64), (5.0, 5.5, 5.5), seed=4)
    syn.write_series(tmp_path / "other", voxels, spacing=(5.0, 5.5, 5.5), seed=9)
    _open(win, qtbot, tmp_path / "other")
    assert not view.measurements.items and panel.table.rowCount() == 0
    _open(win, qtbot, ct_series_dir)
    doc.set_slice(k)
    assert [m.text() for m in view.measurements.items] == texts
    assert panel.table.rowCount() == 3
    with qtbot.waitSignal(win.annotate.sigSaved, timeout=10_000):
        win.annotate.save()
    other = _window(make_main_window, qtbot, ct_series_dir, settings=temp_settings())
    other.document.set_slice(k)
    qtbot.waitUntil(lambda: len(other.document.measurements) == 3, timeout=10_000)
    shown = other.viewer.single_view.measurements.items
    assert sorted(m.measure.kind for m in shown) == ["distance", "ellipse", "rect"]
    assert sorted(m.text() for m in shown) == sorted(texts)  # the SR gave back the same shapes
    assert other.measurements.table.rowCount() == 3
    assert other.document.annotation is not None and not other.document.annotation.dirty


def test_the_panel_goes_to_and_deletes_a_measurement(window, qtbot):
    win, doc = window, window.document
    view, k = win.viewer.single_view, doc.slice_index
    win.viewer.set_tool("rect")
    _drag(view, [(8.0, 8.0), (14.0, 14.0), (20.0, 24.0)])
    doc.set_slice(k + 2)
    panel = win.measurements
    panel.table.selectRow(0)
    panel.go_button.click()
    assert doc.slice_index == k and view.measurements.items[0].roi.isVisible()
    panel.table.setFocus()
    QTest.keyClick(panel.table, Qt.Key.Key_Delete)
    assert doc.measurements == [] and not view.measurements.items
    assert panel.table.rowCount() == 0 and doc.annotation.dirty


def test_arrow_keys_after_clicking_the_tree_move_through_the_shown_series(
        make_main_window, qtbot, dicom_folder):
    win = make_main_window()
    win.resize(1300, 850)
    win.show()
    qtbot.waitExposed(win)
    with qtbot.waitSignal(win.scan_finished, timeout=10_000):
        win.open_path(dicom_folder)
    tree = win.browser.tree
    items = win.browser.series_items()
    ct = next(key for key, item in items.items() if "Thorax" in item.text(0))
    item = items[ct]
    tree.scrollToItem(item)
    rect = tree.visualItemRect(item)  # wider than a narrow dock: click near its left end
    with qtbot.waitSignal(win.volume_loaded, timeout=10_000):
        qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton,
                         pos=QPoint(rect.left() + 8, rect.center().y()))
    doc = win.document
    shown, k = doc.series.key, doc.slice_index
    assert shown == ct
    focus = QApplication.focusWidget()
    assert focus is win.viewer.single_view
    QTest.keyClick(focus, Qt.Key.Key_Down)
    QTest.keyClick(focus, Qt.Key.Key_Down)  # two images on, towards the feet
    assert doc.slice_index == k - 2 and doc.series.key == ct
    QTest.keyClick(focus, Qt.Key.Key_Home)  # image 1: the most cranial slice
    assert doc.slice_index == doc.slice_count - 1
    assert tree.currentItem() is item and win.current_series.key == ct
