"""The Box tool in the real window: draw, move, resize, relabel, delete with the mouse, each one
undo step among brush strokes; boxes cut on the MPR planes; boxes, classes and rulers saved
in the SR and read back when the series is opened again.

Mouse positions are given in the slice's own pixels and put on screen through the stack
plane (`slice_to_plane`), so the expected coordinates are the ones the pointer was at.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QGraphicsLineItem

from medviewer.core import synthetic as syn
from medviewer.core.annotations import ACCEPTED, read_sr
from medviewer.ui.annotate.boxes import slice_to_plane
from medviewer.ui.viewing.measure_tools import DistanceMeasurement
from tests.ui.gui import RADIUS, _drag, _open, _paint, _screen, _window


@pytest.fixture
def window(make_main_window, qtbot, ct_series_dir):
    return _window(make_main_window, qtbot, ct_series_dir)


def _plane_points(view, points):
    return [slice_to_plane(view.plane, x, y) for x, y in points]


def _box_drag(win, points) -> None:
    """A left drag through slice-pixel points (x, y) on the stack view."""
    view = win.viewer.single_view
    _drag(view, _plane_points(view, points))


def _click(view, x, y, button=Qt.MouseButton.LeftButton) -> None:
    viewport = view.graphics.viewport()
    pos = _screen(view, *slice_to_plane(view.plane, x, y))
    for kind, buttons in ((QMouseEvent.Type.MouseButtonPress, button),
                          (QMouseEvent.Type.MouseButtonRelease, Qt.MouseButton.NoButton)):
        QApplication.sendEvent(viewport, QMouseEvent(
            kind, QPointF(pos), QPointF(viewport.mapToGlobal(pos)), button, buttons,
            Qt.KeyboardModifier.NoModifier))
    QApplication.processEvents()


def _coords(box) -> np.ndarray:
    return np.array([box.x0, box.y0, box.x1, box.y1])


def _only_box(doc):
    boxes = list(doc.annotation.boxes)
    assert len(boxes) == 1
    return boxes[0]


def test_handles_show_with_the_selected_box_and_go_with_its_image(window):
    """The handles item is hidden, not an empty scatter painted on every slice change, where
    no box is selected on the image; the box and its handles come back with their image."""
    win, doc, ctl = window, window.document, window.annotate
    overlay = ctl.box_overlay
    assert not overlay.handles.isVisible()
    assert ctl.set_tool("box")
    k = doc.slice_index
    _box_drag(win, [(10, 12), (20, 20), (30, 28)])
    assert overlay.handles.isVisible() and len(overlay.handles.data) == 8
    doc.set_slice(k + 1)  # no box on this image
    assert not overlay.items and not overlay.handles.isVisible()
    doc.set_slice(k)
    assert len(overlay.items) == 1 and overlay.handles.isVisible()


def test_draw_move_resize_relabel_delete_each_one_undo_step_among_strokes(window):
    win, doc, ctl = window, window.document, window.annotate
    view = win.viewer.single_view
    assert ctl.set_tool("box") and ctl.tool_actions["box"].isChecked()
    k = doc.slice_index
    _box_drag(win, [(10, 12), (20, 20), (30, 28)])
    drawn = _only_box(doc)
    assert np.allclose(_coords(drawn), [10, 12, 30, 28], atol=1.0)
    assert (drawn.slice_index, drawn.label, drawn.state, drawn.score) == (k, "finding",
                                                                           ACCEPTED, None)
    assert drawn.sop_instance_uid == doc.volume.sources[k].sop_instance_uid
    assert doc.selected_box == drawn.uid and drawn.uid in ctl.box_overlay.items
    assert len(ctl.box_overlay.handles.data) == 8  # corners and edge middles to grab
    review = ctl.panel.box_review  # the box list numbers the slice as the views do
    review.sync()
    assert review.table.item(0, 0).text() == str(doc.image_position(k=k) + 1)

    _box_drag(win, [(20, 20), (23, 21), (26, 24)])  # inside: move by about (6, 4)
    moved = _only_box(doc)
    shift = _coords(moved) - _coords(drawn)
    assert np.allclose(shift, [6, 4, 6, 4], atol=1.0)
    assert shift[0] == pytest.approx(shift[2]) and shift[1] == pytest.approx(shift[3])

    _box_drag(win, [(moved.x1, moved.y1), (40, 38), (44, 40)])  # the bottom-right corner
    resized = _only_box(doc)
    assert (resized.x0, resized.y0) == (moved.x0, moved.y0)
    assert np.allclose([resized.x1, resized.y1], [44, 40], atol=1.0)

    ctl.set_tool("brush")
    ctl.set_brush(radius_mm=RADIUS)
    doc.add_label("lesion")
    _, painted = _paint(win, [(50, 50), (56, 54)])
    assert painted.any()

    ctl.set_tool("box")
    doc.select_box(resized.uid)
    combo = ctl.panel.box_panel.box_label_combo
    combo.lineEdit().setText("nodule")
    combo.lineEdit().editingFinished.emit()  # the reader leaves the field
    combo.lineEdit().editingFinished.emit()  # ... twice: no second step
    relabelled = _only_box(doc)
    assert relabelled.label == "nodule" and _coords(relabelled).tolist() == \
        _coords(resized).tolist()

    view.setFocus()
    QTest.keyClick(view, Qt.Key.Key_Delete)
    assert len(doc.annotation.boxes) == 0 and doc.selected_box is None
    assert not ctl.box_overlay.items

    steps = [b.description for b, _ in doc.annotation.box_undo]
    assert steps == ["draw box", "move box", "resize box", "relabel box", "delete box"]
    assert ctl.undo_action.text() == "&Undo delete box"
    expected = [relabelled, resized, "stroke", moved, drawn]
    for state in expected:
        QTest.keyClick(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # Ctrl+Z
        if state == "stroke":
            assert not doc.labelmap.array.any() and _only_box(doc) == resized
        else:
            assert _only_box(doc) == state
    ctl.undo()
    assert len(doc.annotation.boxes) == 0
    for _ in range(3):  # draw, move, resize back; the stroke is next
        ctl.redo()
    assert _only_box(doc) == resized and not doc.labelmap.array.any()
    ctl.redo()
    assert np.array_equal(doc.labelmap.array, painted)


def test_boxes_stay_in_the_image_clicks_select_and_off_the_tool_drags_pan(window):
    win, doc, ctl = window, window.document, window.annotate
    view = win.viewer.single_view
    _, rows, cols = doc.shape
    range_before = view.view_box.viewRange()
    _box_drag(win, [(20, 20), (30, 30), (40, 40)])  # tool off: pans, draws nothing
    assert doc.annotation is None and view.view_box.viewRange() != range_before
    view.fit()
    view.setFocus()
    QTest.keyClick(view, Qt.Key.Key_B)  # B: the Box tool ...
    assert doc.annotate_tool == "box"
    QTest.keyClick(view, Qt.Key.Key_B)  # ... again: back to navigating
    assert doc.annotate_tool is None
    ctl.set_tool("box")
    _box_drag(win, [(50, 50), (60, 60), (cols + 9, rows + 9)])  # past the corner
    box = _only_box(doc)
    assert box.x1 == cols and box.y1 == rows and np.allclose([box.x0, box.y0], 50, atol=1)
    ctl.boxes.move_box(box.uid, 100, 100)  # nothing to gain: stays, no undo step
    assert _only_box(doc) == box and len(doc.annotation.box_undo) == 1
    _click(view, 10, 10)
    assert doc.selected_box is None
    _click(view, 56, 56)
    assert doc.selected_box == box.uid
    shown = []
    ctl.boxes.mouse.context_menu = lambda b: shown.append(b) or _NoMenu()
    _click(view, 56, 56, Qt.MouseButton.RightButton)
    assert shown == [box]
    _box_drag(win, [(5, 5), (5.3, 5.2)])  # too small to be a box
    assert len(doc.annotation.boxes) == 1


class _NoMenu:
    def popup(self, _pos) -> None:
        pass


def test_right_click_menu_relabels_and_deletes(window):
    doc, ctl = window.document, window.annotate
    ctl.set_tool("box")
    ctl.boxes.add_box(8, 8, 20, 20)
    box = _only_box(doc)
    menu = window.annotate.boxes.mouse.context_menu(box)
    actions = {a.text(): a for a in menu.actions()}
    labels = {a.text(): a for a in actions["Label"].menu().actions()}
    assert labels["finding"].isChecked() and "Other\u2026" in labels
    assert "Reject" not in actions  # a box drawn by hand is deleted, not rejected
    ctl.boxes.box_label = "mass"
    menu = window.annotate.boxes.mouse.context_menu(box)
    label_menu = next(a for a in menu.actions() if a.text() == "Label").menu()
    next(a for a in label_menu.actions() if a.text() == "mass").trigger()
    assert _only_box(doc).label == "mass"
    next(a for a in menu.actions() if a.text() == "Delete Box").trigger()
    assert len(doc.annotation.boxes) == 0 and len(doc.annotation.box_undo) == 3


def test_a_box_shows_on_the_coronal_and_sagittal_planes_as_its_cut_line(window, qtbot):
    win, doc, ctl = window, window.document, window.annotate
    k = doc.slice_index
    ctl.set_tool("box")
    ctl.boxes.add_box(10, 20, 30, 36, slice_index=k)
    box = _only_box(doc)
    assert doc.selected_box == box.uid
    win.viewer.set_layout("mpr")
    views = win.viewer.mpr_view.views
    doc.set_crosshair((40, 25, k))  # column 40 is outside the box, row 25 inside
    coronal, sagittal = views["coronal"], views["sagittal"]
    assert box.uid in views["axial"].layers["boxes"].items
    assert len(views["axial"].layers["boxes"].handles.data) == 0  # no Box tool on MPR
    assert box.uid not in sagittal.layers["boxes"].items
    line = coronal.layers["boxes"].items[box.uid]
    assert isinstance(line, QGraphicsLineItem)
    plane = coronal.plane
    row_mm, col_mm = plane.spacing
    row = plane.from_voxel(int(box.x0), 25, k)[1]  # the plane row showing slice k
    ys = [line.line().y1(), line.line().y2()]
    assert ys == pytest.approx([(row + 0.5) * row_mm] * 2)  # across at slice k's height
    xs = sorted((line.line().x1(), line.line().x2()))
    cols = plane.shape[2]
    expected = sorted((cols - 30, cols - 10)) if plane.flips[1] else [10, 30]
    assert xs == pytest.approx([x * col_mm for x in expected])
    doc.set_crosshair((20, 25, k))  # now inside in x too: the sagittal plane cuts it
    assert isinstance(sagittal.layers["boxes"].items[box.uid], QGraphicsLineItem)
    doc.set_crosshair((20, 50, k))  # a row below the box: the coronal plane misses it
    assert box.uid not in coronal.layers["boxes"].items
    doc.set_crosshair((20, 25, k + 1))  # another slice: the axial plane misses it
    assert box.uid not in views["axial"].layers["boxes"].items


def test_boxes_classes_and_rulers_come_back_when_the_series_is_opened_again(
        window, qtbot, tmp_path, ct_series_dir):
    win, doc, ctl = window, window.document, window.annotate
    view = win.viewer.single_view
    k = doc.slice_index
    ctl.set_tool("box")
    _box_drag(win, [(12, 14), (20, 20), (28, 30)])
    box = _only_box(doc)
    ctl.boxes.set_class("emphysema", k)
    ctl.boxes.set_class("abnormal")
    ctl.set_tool(None)
    win.viewer.set_tool("distance")
    _drag(view, _plane_points(view, [(10, 40), (30, 44), (50, 52)]))
    ruler = next(m for m in view.measurements.items if isinstance(m, DistanceMeasurement))
    ends = np.array(ruler.endpoints_px())
    length = ruler.length_mm
    assert np.allclose(ends, _plane_points(view, [(10, 40), (50, 52)]), atol=1.0)
    with qtbot.waitSignal(ctl.sigSaved, timeout=10_000) as saved:
        QTest.keyClick(win, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)  # Ctrl+S
    sr_path = saved.args[0][-1]
    boxes, classes, lines, _ = read_sr(sr_path, doc.volume)
    assert [b.uid for b in boxes] == [box.uid] and len(lines) == 1
    assert lines[0].length_mm == pytest.approx(length, rel=1e-3)
    assert lines[0].slice_index == k
    voxels, _ = syn.ct_chest_phantom((6, 64, 64), (5.0, 5.5, 5.5), seed=4)
    syn.write_series(tmp_path / "other", voxels, spacing=(5.0, 5.5, 5.5), seed=9)
    _open(win, qtbot, tmp_path / "other")
    qtbot.waitUntil(lambda: "annotate-load" not in win.tasks.tasks, timeout=5_000)
    assert doc.annotation is None and not view.measurements.items
    with qtbot.waitSignal(ctl.sigLoaded, timeout=10_000):
        _open(win, qtbot, ct_series_dir)
    doc.set_slice(k)
    back = _only_box(doc)
    assert np.allclose(_coords(back), _coords(box), atol=1e-3)
    assert (back.label, back.slice_index) == (box.label, k)
    assert doc.annotation.boxes.class_of(k).label == "emphysema"
    assert doc.annotation.boxes.class_of(None).label == "abnormal"
    assert box.uid in ctl.box_overlay.items
    rulers = [m for m in view.measurements.items if isinstance(m, DistanceMeasurement)]
    assert len(rulers) == 1 and rulers[0].k == k and rulers[0].roi.isVisible()
    assert np.allclose(np.array(rulers[0].endpoints_px()), ends, atol=1e-3)
    assert rulers[0].length_mm == pytest.approx(length, rel=1e-3)
    assert ctl.panel.box_panel.slice_class_combo.currentText() == "emphysema"


def test_undo_order_survives_the_memory_cap_dropping_old_strokes(window):
    """Strokes past the cap drop the oldest map items; a box edit made between two strokes is
    still undone after the later stroke, not before it."""
    doc, ctl = window.document, window.annotate
    ctl.set_tool("brush")
    ctl.set_brush(radius_mm=RADIUS)
    doc.add_label("lesion")
    doc.annotation.history.cap_bytes = 1  # keep only the newest map item
    _paint(window, [(10, 10), (14, 14)])
    _, second = _paint(window, [(30, 10), (34, 14)])
    assert len(doc.history) == 1
    ctl.boxes.add_box(40, 40, 50, 50)
    _, third = _paint(window, [(10, 40), (14, 44)])
    assert len(doc.history) == 1 and not np.array_equal(second, third)
    ctl.undo()  # the third stroke first ...
    assert np.array_equal(doc.labelmap.array, second) and len(doc.annotation.boxes) == 1
    ctl.undo()  # ... then the box
    assert len(doc.annotation.boxes) == 0 and np.array_equal(doc.labelmap.array, second)
