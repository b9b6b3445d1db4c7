"""LocalStore: layout, safe names, atomic writes, what it already has (no network)."""

from __future__ import annotations

import os

import numpy as np
import pydicom
import pytest

from medviewer.core import synthetic
from medviewer.pacs.errors import PacsError
from medviewer.pacs.store import LocalStore, safe_name


@pytest.fixture
def two_slices(tmp_path):
    voxels = np.arange(2 * 8 * 8, dtype=np.int16).reshape(2, 8, 8)
    return synthetic.write_series(tmp_path / "src", voxels)


def test_default_root_is_under_the_user_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDVIEWER_DATA_DIR", str(tmp_path / "data"))
    assert LocalStore().root == tmp_path / "data" / "pacs"


def test_add_places_an_instance_by_its_uids_and_has_knows_it(tmp_path, two_slices):
    store = LocalStore(tmp_path / "store")
    ds = pydicom.dcmread(two_slices[0])
    assert not store.has(ds.SOPInstanceUID)
    path = store.add(two_slices[0].read_bytes())
    assert path == (store.series_folder(ds.StudyInstanceUID, ds.SeriesInstanceUID)
                    / f"{ds.SOPInstanceUID}.dcm")
    assert path.parent.parent == store.study_folder(ds.StudyInstanceUID)
    assert path.read_bytes() == two_slices[0].read_bytes()
    assert store.has(ds.SOPInstanceUID)
    assert LocalStore(store.root).has(ds.SOPInstanceUID)  # a new store reads the disk
    assert not LocalStore(store.root).has(pydicom.dcmread(two_slices[1]).SOPInstanceUID)


def test_a_dataset_without_file_meta_is_written_as_a_readable_file(tmp_path, two_slices):
    ds = pydicom.dcmread(two_slices[1])
    expected = ds.pixel_array.copy()
    del ds.file_meta  # as a network peer hands a data set over
    path = LocalStore(tmp_path / "store").add(ds)
    back = pydicom.dcmread(path)
    assert back.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    np.testing.assert_array_equal(back.pixel_array, expected)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_uids_from_the_network_never_leave_the_store(tmp_path, two_slices):
    ds = pydicom.dcmread(two_slices[0])
    ds.StudyInstanceUID = "../../escape"
    ds.SeriesInstanceUID = "/etc"
    ds.SOPInstanceUID = "../x"
    store = LocalStore(tmp_path / "store")
    path = store.add(ds)
    assert path.resolve().is_relative_to(store.root.resolve())
    assert len(path.relative_to(store.root).parts) == 3
    assert safe_name("1.2.3") == "1.2.3" and safe_name("../x") != safe_name("../y")
    assert store.has("../x")


def test_an_instance_without_uids_is_refused_with_a_sentence(tmp_path, two_slices):
    ds = pydicom.dcmread(two_slices[0])
    del ds.SeriesInstanceUID
    with pytest.raises(PacsError, match="cannot be placed in the local store"):
        LocalStore(tmp_path / "store").add(ds)
    with pytest.raises(PacsError, match="not a DICOM file"):
        LocalStore(tmp_path / "store").add(b"not dicom at all")


def test_a_failed_write_leaves_no_file_and_says_what_to_do(tmp_path, two_slices, monkeypatch):
    store = LocalStore(tmp_path / "store")

    def full_disk(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(PacsError, match="No space left on device.*free some disk space"):
        store.add(two_slices[0].read_bytes())
    assert [p for p in store.root.rglob("*") if p.is_file()] == []
    assert not store.has(pydicom.dcmread(two_slices[0]).SOPInstanceUID)


def test_holds_any_tells_a_fresh_series_or_study_from_a_partial_one(tmp_path, two_slices):
    store = LocalStore(tmp_path / "store")
    ds = pydicom.dcmread(two_slices[0], stop_before_pixels=True)
    assert not store.holds_any(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    store.series_folder(ds.StudyInstanceUID, ds.SeriesInstanceUID).mkdir(parents=True)
    assert not store.holds_any(ds.StudyInstanceUID)  # an empty folder holds nothing
    store.add(two_slices[0].read_bytes())
    assert store.holds_any(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    assert store.holds_any(ds.StudyInstanceUID)
    assert not store.holds_any(ds.StudyInstanceUID, "1.2.3")
