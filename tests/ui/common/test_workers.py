"""The viewer's background load task: the preview it sends before the volume is decoded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

import medviewer.core.synthetic as syn
from medviewer.core.dicom import scan
from medviewer.ui.common.workers import load_series_task


def _only_series(folder):
    (series,) = scan(folder, cache=False).all_series()
    return series


def test_projection_preview_carries_patient_orientation_and_header_window(tmp_path,
                                                                       task_context):
    path, _ = syn.write_chest_xray(tmp_path, size=256)
    header = pydicom.dcmread(path, stop_before_pixels=True)
    ctx = task_context
    volume = load_series_task(ctx, _only_series(tmp_path))
    (preview,) = ctx.partials
    assert preview.has_geometry is False and not volume.has_geometry
    assert preview.patient_orientation == tuple(header.PatientOrientation)
    assert preview.window.center == float(header.WindowCenter)
    assert preview.source.path == str(path)


def test_ct_preview_is_the_middle_slice_in_hounsfield_units(tmp_path, task_context):
    voxels = np.arange(5, dtype=np.int16)[:, None, None] * 100 + np.zeros((5, 16, 16), np.int16)
    syn.write_series(tmp_path, voxels - 1000, shuffle_names=True)
    ctx = task_context
    volume = load_series_task(ctx, _only_series(tmp_path))
    (preview,) = ctx.partials
    assert preview.index == 2 and preview.count == 5 and preview.has_geometry
    header = pydicom.dcmread(volume.sources[2].path, stop_before_pixels=True)
    assert preview.header["PatientName"] == str(header.PatientName) == volume.header[
        "PatientName"]
    np.testing.assert_array_equal(preview.slice, volume.voxels[2])
    assert int(preview.slice[0, 0]) == 200 - 1000


def test_a_bad_middle_slice_skips_the_preview_but_not_the_load(tmp_path, task_context):
    voxels = np.full((5, 32, 32), 100, np.int16)
    paths = syn.write_series(tmp_path, voxels, transfer_syntax=pydicom.uid.RLELossless)
    series = _only_series(tmp_path)
    middle = series.instances[2].path
    data = bytearray(Path(middle).read_bytes())
    data[-200:] = b"\xff" * 200  # corrupt the RLE stream, keep the header
    Path(middle).write_bytes(bytes(data))
    ctx = task_context
    volume = load_series_task(ctx, series)
    assert ctx.partials == [] and len(paths) == 5
    assert list(volume.bad_slices) == [2] and (volume.voxels[[0, 1, 3, 4]] == 100).all()
