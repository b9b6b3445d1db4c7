"""A series whose files share one SOPInstanceUID (issue 12.3a): said at load, never saved.

A DICOM SEG or SR names its images by SOP Instance UID, so annotations of such a series read
back on the wrong slices (a SEG on six files with one UID read back with five slices empty).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medviewer.core import synthetic
from medviewer.core.annotations import AnnotationError, write_seg
from medviewer.core.annotations.boxes import AnnotatedBox, BoxSet
from medviewer.core.annotations.labelmap import LabelMap
from medviewer.core.annotations.workspace import Workspace
from medviewer.core.dicom import load_series, scan

SHARED = "1.2.826.0.1.3680043.10.543.99.1"


@pytest.fixture
def shared_uid_volume(tmp_path: Path):
    voxels = np.zeros((6, 32, 32), np.int16)
    paths = synthetic.write_series(tmp_path / "dup", voxels, spacing=(2.0, 1.0, 1.0))
    for path in paths:  # a broken anonymiser: every file gets the same UID
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = SHARED
        ds.save_as(path)
    return paths, load_series(scan(tmp_path / "dup", cache=False).all_series()[0])


def _painted(volume) -> LabelMap:
    labelmap = LabelMap.for_volume(volume)
    labelmap.array[:, 10:20, 10:20] = labelmap.table.add("lesion").value  # every slice
    return labelmap


def test_the_loaded_volume_warns_naming_the_uid_and_the_files(shared_uid_volume):
    paths, volume = shared_uid_volume
    assert volume.voxels.shape[0] == 6
    (warning,) = [w for w in volume.warnings if SHARED in w]
    assert "6 files" in warning and paths[0].name in warning


def test_no_seg_or_sr_is_saved_that_would_read_back_wrong(shared_uid_volume):
    _, volume = shared_uid_volume
    ws = Workspace.for_series(volume)
    labelmap = _painted(volume)
    with pytest.raises(AnnotationError, match=f"share the SOP Instance UID {SHARED}"):
        ws.save_labels(labelmap.array, volume, labelmap.table, annotator="J")
    with pytest.raises(AnnotationError, match="Nothing was saved"):
        ws.save_sr(volume, BoxSet([AnnotatedBox(1, 1, 5, 5, 3, "mass")]), annotator="J")
    assert ws.load_seg(volume) is None and ws.load_sr(volume) is None  # nothing to misread
    assert not list(ws.folder.glob("*.dcm"))


def test_write_seg_elsewhere_is_refused_too(shared_uid_volume, tmp_path):
    _, volume = shared_uid_volume
    labelmap = _painted(volume)
    out = tmp_path / "out" / "pred.seg.dcm"
    with pytest.raises(AnnotationError, match="share the SOP Instance UID"):
        write_seg(labelmap.array, volume, ["background", "lesion"], out)
    assert not out.exists()


def test_a_series_with_distinct_uids_saves_and_reads_back_every_slice(tmp_path):
    voxels = np.zeros((6, 32, 32), np.int16)
    synthetic.write_series(tmp_path / "ok", voxels, spacing=(2.0, 1.0, 1.0))
    volume = load_series(scan(tmp_path / "ok", cache=False).all_series()[0])
    assert not [w for w in volume.warnings if "SOP Instance UID" in w]
    labelmap = _painted(volume)
    ws = Workspace.for_series(volume)
    ws.save_labels(labelmap.array, volume, labelmap.table, annotator="J")
    back, _ = ws.load_seg(volume)
    np.testing.assert_array_equal(back, labelmap.array)
