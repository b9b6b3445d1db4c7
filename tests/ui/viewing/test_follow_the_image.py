"""What sits beside the image follows the image the reader moved to by keyboard or wheel: the
Tags panel shows the file of this slice at this time point, the cursor readout the voxel now
under the (unmoved) mouse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

import medviewer.core.synthetic as syn
from medviewer.core import geometry
from tests.ui.gui import _wheel, _window
from tests.ui.viewing.test_projection_images import hover

WAIT_MS = 30_000
TIMES, SLICES = 4, 5


def _dynamic(folder: Path) -> Path:
    """A 4D MR: every position at each of TIMES time points, values unique per image."""
    voxels = np.arange(TIMES * SLICES * 16 * 16, dtype=np.int16).reshape(TIMES, SLICES, 16, 16)
    syn.write_4d(folder, voxels % 3000, spacing=(3.0, 1.0, 1.0))
    return folder


def _file_at(folder: Path, z_mm: float, time_point: int) -> Path:
    """The file a reader would find by hand: this table position at this time point."""
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if int(ds.TemporalPositionIdentifier) == time_point and \
                abs(float(ds.ImagePositionPatient[2]) - z_mm) < 1e-3:
            return path
    raise AssertionError(f"no file at z={z_mm} time {time_point}")


def _key(view, key: Qt.Key, times: int = 1) -> None:
    for _ in range(times):
        QTest.keyClick(view, key)
    QApplication.processEvents()


def test_tags_show_the_file_of_this_slice_at_this_time_point(make_main_window, qtbot,
                                                             tmp_path):
    folder = _dynamic(tmp_path / "dyn")
    win = _window(make_main_window, qtbot, folder)
    view, doc = win.viewer.single_view, win.document
    assert doc.time_count == TIMES
    view.setFocus()
    _key(view, Qt.Key.Key_Home)
    _key(view, Qt.Key.Key_Down, 3)  # image 4 (head first: the 4th from the top)
    _key(view, Qt.Key.Key_Right, 2)  # time point 3
    assert (doc.image_position(), doc.time_index) == (3, 2)
    assert "Time 3 / 4" in view.overlays["top_right"].text()
    z_mm = geometry.voxel_to_lps(doc.affine, *doc.crosshair)[2]
    expected = _file_at(folder, z_mm, 3)
    qtbot.waitUntil(lambda: win.tags.shown_path == str(expected), timeout=WAIT_MS)
    (number,) = win.tags.find_rows("TemporalPositionIdentifier")
    assert win.tags.proxy.index(number.row(), 3, number.parent()).data() == "3"
    _key(view, Qt.Key.Key_Left)  # back to time point 2, same slice: the panel follows
    qtbot.waitUntil(lambda: win.tags.shown_path == str(_file_at(folder, z_mm, 2)),
                    timeout=WAIT_MS)


def _readout_at(win, col: int, row: int) -> str:
    doc = win.document
    value = doc.voxel_value(col, row, doc.slice_index)
    return f"voxel ({col}, {row}, {doc.slice_index})   {value:g}"


def test_readout_follows_key_and_wheel_scrolling_under_a_still_mouse(
        make_main_window, qtbot, dicom_folder):
    win = _window(make_main_window, qtbot, dicom_folder)
    view, doc = win.viewer.single_view, win.document
    view.setFocus()
    _key(view, Qt.Key.Key_Home)
    hover(view, 5.5, 6.5)
    assert win.status_label.text().startswith(_readout_at(win, 5, 6))
    first = doc.image_position()
    _key(view, Qt.Key.Key_Down)  # the mouse does not move
    assert doc.image_position() == first + 1
    assert win.status_label.text().startswith(_readout_at(win, 5, 6))
    _key(view, Qt.Key.Key_End)
    assert win.status_label.text().startswith(_readout_at(win, 5, 6))
    before = doc.slice_index
    _wheel(view, 1)
    assert doc.slice_index != before
    assert win.status_label.text().startswith(_readout_at(win, 5, 6))


def test_readout_follows_the_time_point_under_a_still_mouse(make_main_window, qtbot,
                                                            tmp_path):
    win = _window(make_main_window, qtbot, _dynamic(tmp_path / "dyn"))
    view, doc = win.viewer.single_view, win.document
    view.setFocus()
    hover(view, 3.5, 2.5)
    shown = win.status_label.text()
    assert shown.startswith(_readout_at(win, 3, 2))
    _key(view, Qt.Key.Key_Right)
    assert doc.time_index == 1
    assert win.status_label.text().startswith(_readout_at(win, 3, 2)) and \
        win.status_label.text() != shown  # another time point, another value


def test_a_hidden_view_keeps_quiet_while_another_is_read(make_main_window, qtbot, dicom_folder):
    """After 1x1 -> MPR the single view is hidden: scrolling the axial view under the mouse
    must not bring back the single view's old readout."""
    win = _window(make_main_window, qtbot, dicom_folder)
    single, doc = win.viewer.single_view, win.document
    hover(single, 5.5, 6.5)
    assert doc.set_layout("mpr")
    QApplication.processEvents()
    axial = win.viewer.mpr_view.views["axial"]
    assert not single.isVisible() and axial.isVisible()
    heard: list[str] = []
    single.sigCursorInfo.connect(heard.append)
    hover(axial, 10.5, 12.5)
    axial.setFocus()
    before = doc.slice_index
    _key(axial, Qt.Key.Key_Down if before == 0 else Qt.Key.Key_Up)
    assert doc.slice_index != before
    assert heard == []
    col, row, k = doc.plane("axial").to_voxel(axial.slice_index, 12, 10)
    assert win.status_label.text().startswith(f"voxel ({col}, {row}, {k})")
