"""Opening hostile folders in the window (issue 12.1): a link to / or /proc, a named pipe,
and Cancel on a slow share, as a reader meets them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from medviewer.core import synthetic
from medviewer.core.dicom import index as index_module

POSIX = pytest.mark.skipif(os.name != "posix", reason="FIFOs and /proc are POSIX")


def _series(folder: Path, slices: int = 4) -> None:
    voxels = np.zeros((slices, 8, 8), np.int16)
    synthetic.write_series(folder, voxels, seed=1, SeriesDescription="HOSTILE")


def _shown(make_main_window, qtbot):
    window = make_main_window()
    window.show()
    qtbot.waitExposed(window)
    return window


@POSIX
def test_folder_linking_to_root_opens_with_the_links_under_problems(make_main_window, qtbot,
                                                                     tmp_path):
    data = tmp_path / "data"
    _series(data / "ct")
    (data / "ct" / "everything").symlink_to("/")
    (data / "self").symlink_to("/proc/self")
    os.mkfifo(data / "pipe")
    window = _shown(make_main_window, qtbot)
    try:
        with qtbot.waitSignal(window.scan_finished, timeout=10_000):
            window.open_path(data)
    finally:
        fd = os.open(data / "pipe", os.O_RDWR | os.O_NONBLOCK)  # frees a blocked reader
        os.close(fd)
    assert len(window.browser.series_items()) == 1
    tree = window.browser.tree
    problems = tree.topLevelItem(tree.topLevelItemCount() - 1)
    assert problems.text(0) == "Problems (3)"
    rows = {problems.child(k).text(0).split(":")[0]: problems.child(k).toolTip(0)
            for k in range(problems.childCount())}
    assert set(rows) == {"everything", "self", "pipe"}
    assert "outside the folder" in rows["everything"] and "named pipe" in rows["pipe"]
    assert "1 series, 3 problem file(s)" in window.status_label.text()


def test_cancel_stops_a_scan_of_a_slow_share_at_once(make_main_window, qtbot, tmp_path,
                                                      monkeypatch):
    """50 ms a file (a share over a slow link): Cancel must not wait for a whole chunk."""
    _series(tmp_path / "data", slices=200)
    real = index_module.read_header

    def slow(path):
        time.sleep(0.05)
        return real(path)

    monkeypatch.setattr(index_module, "read_header", slow)
    window = _shown(make_main_window, qtbot)
    window.open_path(tmp_path / "data")
    qtbot.waitUntil(window.cancel_button.isVisible, timeout=5_000)
    qtbot.wait(300)
    qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    start = time.perf_counter()
    qtbot.waitUntil(lambda: window.pool.active == 0, timeout=10_000)
    assert time.perf_counter() - start < 0.5
    assert "Scan cancelled" in window.status_label.text()
