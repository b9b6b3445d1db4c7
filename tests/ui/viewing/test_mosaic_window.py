"""A Siemens mosaic fMRI series read in the window: the browser counts its slices, the viewer
pages through slices and time points, the cursor readout and the Tags panel name the slice's
position and file."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from medviewer.ui.viewing.browser import COL_IMAGES
from tests.core.mosaic_files import mosaic_volumes, write_mosaics
from tests.ui.gui import _window
from tests.ui.viewing.test_projection_images import hover

TIMES, SLICES, ROWS, COLUMNS = 3, 9, 12, 14
FIRST = np.array([-100.0, -90.0, -20.0])  # slice 0's first pixel (axial, head first)
SPACING = (3.0, 2.0, 2.5)  # slice step, row, column (mm)


def test_mosaic_series_reads_as_slices_and_time_points(make_main_window, qtbot, tmp_path):
    volumes = mosaic_volumes(TIMES, SLICES, ROWS, COLUMNS)
    paths = write_mosaics(tmp_path / "bold", volumes, first=FIRST, spacing=SPACING)
    win = _window(make_main_window, qtbot, tmp_path / "bold")
    (item,) = win.browser.series_items().values()
    assert item.text(COL_IMAGES) == str(TIMES * SLICES)
    doc, view = win.document, win.viewer.single_view
    assert doc.time_count == TIMES and doc.volume.slice_count == SLICES
    assert doc.volume.voxels.shape[-2:] == (ROWS, COLUMNS)  # a tile, not the whole grid
    view.setFocus()
    for key in (Qt.Key.Key_Home, Qt.Key.Key_Down, Qt.Key.Key_Down, Qt.Key.Key_Right,
                Qt.Key.Key_Right):
        QTest.keyClick(view, key)
    QApplication.processEvents()
    k, t = doc.slice_index, doc.time_index
    assert t == 2
    hover(view, 3.5, 2.5)
    x, y, z = FIRST + [3 * SPACING[2], 2 * SPACING[1], k * SPACING[0]]
    assert win.status_label.text().startswith(
        f"voxel (3, 2, {k})   {volumes[t, k, 2, 3]}")
    assert f"LPS ({x:.1f}, {y:.1f}, {z:.1f}) mm" in win.status_label.text()
    qtbot.waitUntil(lambda: win.tags.shown_path == str(paths[t]), timeout=30_000)
