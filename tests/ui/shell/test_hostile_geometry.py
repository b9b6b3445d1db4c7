"""A series whose ImageOrientationPatient cannot be right opens as one stack on the pixel grid,
and the status bar says why (issue 12, item 4: the warning reaches the reader, not only the
Volume)."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.dataelem import DataElement

import medviewer.core.synthetic as syn
from tests.ui.gui import _window


def test_status_bar_says_the_orientation_is_unusable(make_main_window, qtbot, tmp_path):
    voxels = np.random.default_rng(1).integers(-900, 900, (6, 32, 32)).astype(np.int16)
    for path in syn.write_series(tmp_path / "ct", voxels, spacing=(2.0, 0.8, 0.8)):
        ds = pydicom.dcmread(path)
        ds[0x00200037] = DataElement(0x00200037, "DS", "0\\0\\0\\0\\0\\0")
        ds.save_as(path)
    window = _window(make_main_window, qtbot, tmp_path / "ct")
    volume = window.document.volume
    assert volume.voxels.shape == (6, 32, 32)  # one stack, not 6 time points of one slice
    status = window.status_label.text()
    assert "ImageOrientationPatient 0\\0\\0\\0\\0\\0 is not a usable orientation" in status
    assert "ordered by instance number" in status
