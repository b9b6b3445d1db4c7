"""MPR only where the images form a volume; the viewer says why otherwise."""

from __future__ import annotations

import numpy as np
import pydicom

import medviewer.core.synthetic as syn
from medviewer.core.dicom import load_series, scan


def _localizer(folder):
    """One series, three single images: axial, coronal, sagittal."""
    uid = syn.make_uid("three-plane localizer")
    for k, orientation in enumerate(((1, 0, 0, 0, 1, 0), (1, 0, 0, 0, 0, -1),
                                     (0, 1, 0, 0, 0, -1))):
        (path,) = syn.write_series(folder / f"p{k}", np.full((1, 24, 24), 100 * k, np.int16),
                                   orientation=orientation, SeriesInstanceUID=uid, seed=1)
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = k + 1
        ds.save_as(path)


def test_localizer_loads_in_acquisition_order_without_volume_geometry(tmp_path):
    _localizer(tmp_path)
    (series,) = scan(tmp_path, cache=False).all_series()
    volume = load_series(series)
    assert [int(volume.voxels[k, 0, 0]) for k in range(3)] == [0, 100, 200]
    assert not volume.has_geometry
    assert any("different orientations" in w for w in volume.warnings)


def test_mpr_is_refused_for_a_localizer_and_left_for_a_projection(make_main_window, qtbot,
                                                                 tmp_path):
    _localizer(tmp_path / "loc")
    syn.write_series(tmp_path / "ct", np.zeros((6, 24, 24), np.int16), seed=7)
    window = make_main_window()
    with qtbot.waitSignal(window.scan_finished, timeout=5000) as blocker:
        window.open_path(tmp_path)
    by_count = {s.image_count: s for s in blocker.args[0].all_series()}
    with qtbot.waitSignal(window.volume_loaded, timeout=5000):
        window.open_series(by_count[6])
    window.layout_actions["mpr"].trigger()
    assert window.document.layout == "mpr"
    with qtbot.waitSignal(window.volume_loaded, timeout=5000):
        window.open_series(by_count[3])
    assert window.document.layout == "1x1" and window.layout_actions["1x1"].isChecked()
    window.layout_actions["mpr"].trigger()
    assert window.document.layout == "1x1"
    assert "MPR needs a volume" in window.status_label.text()
