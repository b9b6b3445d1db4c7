"""Header scan: one file's facts, the patient/study/series tree, DICOMDIR, the SQLite cache."""

from __future__ import annotations

import marshal
import os
import sqlite3
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments
from pydicom.fileset import FileSet

from medviewer.core import synthetic
from medviewer.core.dicom import DicomError, scan
from medviewer.core.dicom import cache as cache_module
from medviewer.core.dicom import headers as headers_module
from medviewer.core.dicom import index as index_module
from medviewer.core.dicom import listing as listing_module
from medviewer.core.dicom.headers import read_header, read_instance

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
UNDEFINED = 0xFFFFFFFF


def _voxels(slices: int = 5, rows: int = 12, columns: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-1000, 1500, (slices, rows, columns)).astype(np.int16)


def _series(folder: Path, **kwargs) -> list[Path]:
    kwargs.setdefault("spacing", (2.5, 0.7, 0.7))
    voxels = kwargs.pop("voxels", None)
    return synthetic.write_series(folder, _voxels() if voxels is None else voxels, **kwargs)


def _paths(result) -> list[list[str]]:
    return [[i.path for i in s.instances] for s in result.all_series()]


@pytest.fixture(autouse=True)
def _fresh_memo() -> None:
    """Each test starts like a new process: no folder remembered from another test."""
    index_module.MEMO.clear()


def _as_new_process() -> None:
    """What a new process sees: the SQLite cache only (the in-process memo is empty)."""
    index_module.MEMO.clear()


class Counter:
    """Counts header parses (scan with workers=1 parses in this process)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []
        real = index_module.read_header

        def counting(path):
            self.paths.append(str(path))
            return real(path)

        monkeypatch.setattr(index_module, "read_header", counting)


# --- one file -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm",
                                  "MR_small_bigendian.dcm", "rtdose.dcm"])
def test_instance_matches_pydicom_and_pixel_offset_points_at_pixels(name: str) -> None:
    path = TEST_FILES / name
    instance = read_instance(path)
    ds = pydicom.dcmread(path)
    assert instance.sop_instance_uid == ds.SOPInstanceUID
    assert (instance.rows, instance.columns) == (ds.Rows, ds.Columns)
    assert instance.number_of_frames == int(ds.get("NumberOfFrames", 1))
    assert instance.bits_allocated == ds.BitsAllocated
    assert instance.pixel_representation == ds.PixelRepresentation
    assert instance.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID
    assert instance.position == pytest.approx(tuple(float(v) for v in ds.ImagePositionPatient))
    assert instance.orientation == pytest.approx(
        tuple(float(v) for v in ds.ImageOrientationPatient))
    expected = ds.PixelData  # native: the raw value, in the file's byte order
    size = instance.rows * instance.columns * instance.bits_allocated // 8
    size *= instance.number_of_frames
    with open(path, "rb") as fh:
        fh.seek(instance.pixel_data_offset)
        assert fh.read(size) == expected[:size]
    if ds.is_little_endian:
        first = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)[0]
        stored = np.frombuffer(expected[: first.nbytes], first.dtype)
        assert stored.tolist() == first.ravel().tolist()


def test_synthetic_slice_offset_reads_back_its_pixels(tmp_path: Path) -> None:
    path = _series(tmp_path)[2]
    instance = read_instance(path)
    ds = pydicom.dcmread(path)
    with open(path, "rb") as fh:
        fh.seek(instance.pixel_data_offset)
        raw = fh.read(instance.rows * instance.columns * 2)
    assert np.array_equal(np.frombuffer(raw, ds.pixel_array.dtype).reshape(ds.Rows, ds.Columns),
                          ds.pixel_array)


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "JPEG2000.dcm", "SC_rgb_rle_2frame.dcm"])
def test_encapsulated_offset_is_the_first_fragment_item(name: str) -> None:
    path = TEST_FILES / name
    instance = read_instance(path)
    offset_table, first, *_ = generate_fragments(pydicom.dcmread(path).PixelData)
    data = path.read_bytes()
    start = instance.pixel_data_offset
    item = data[start : start + 8 + len(first)]
    assert data[start - 8 - len(offset_table) : start - len(offset_table)][:4] == \
        b"\xfe\xff\x00\xe0"  # the offset table item, skipped
    assert item[:4] == b"\xfe\xff\x00\xe0"
    assert int.from_bytes(item[4:8], "little") == len(first)
    assert item[8:] == first


def test_enhanced_multiframe_is_one_instance_with_its_geometry(tmp_path: Path) -> None:
    path = synthetic.write_multiframe(tmp_path, _voxels(slices=4), spacing=(3.0, 0.6, 0.8),
                                      orientation=synthetic.oblique(15), enhanced=True)
    instance, facts = read_header(path)
    assert instance.number_of_frames == 4
    assert instance.orientation == pytest.approx(synthetic.oblique(15), abs=1e-6)
    assert instance.pixel_spacing == pytest.approx((0.6, 0.8))
    assert instance.position is not None
    ds = pydicom.dcmread(path)
    with open(path, "rb") as fh:
        fh.seek(instance.pixel_data_offset)
        assert fh.read(len(ds.PixelData)) == ds.PixelData
    assert facts.series_instance_uid == ds.SeriesInstanceUID and facts.has_pixels


def _rescale_cases(tmp_path: Path) -> dict[str, Path]:
    """A CT slice (intercept -1024), an MR slice without rescale, one file per 4D phase, an
    enhanced CT whose rescale sits in the shared functional groups."""
    ct = _series(tmp_path / "ct", modality="CT", rescale=(1.0, -1024.0))[1]
    mr = _series(tmp_path / "mr", modality="MR", rescale=None,
                 voxels=np.abs(_voxels()).astype(np.uint16))[1]
    phases = synthetic.write_4d(tmp_path / "4d", np.stack([_voxels(slices=2)] * 3),
                                modality="MR", rescale=(2.0, -10.0))
    enhanced = synthetic.write_multiframe(tmp_path / "mf", _voxels(slices=3), enhanced=True,
                                          modality="CT", rescale=(0.5, -1024.0))
    return {"ct": ct, "mr": mr, "4d-first": phases[0], "4d-last": phases[-1],
            "enhanced": enhanced}


def _expected_extras(path: Path) -> tuple:
    """(slope, intercept, temporal position) as pydicom reads them, functional groups too."""
    ds = pydicom.dcmread(path)
    source = ds
    if "SharedFunctionalGroupsSequence" in ds:
        shared = ds.SharedFunctionalGroupsSequence[0]
        source = shared.PixelValueTransformationSequence[0]
    slope, intercept = source.get("RescaleSlope"), source.get("RescaleIntercept")
    temporal = ds.get("TemporalPositionIdentifier")
    return (None if slope is None else float(slope),
            None if intercept is None else float(intercept),
            None if temporal is None else int(temporal))


@pytest.mark.parametrize("fallback", [False, True], ids=["byte-walk", "pydicom"])
def test_rescale_and_temporal_position_from_either_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fallback: bool) -> None:
    cases = _rescale_cases(tmp_path)
    if fallback:
        def decline(path):
            raise headers_module.Unsupported("forced")

        monkeypatch.setattr(headers_module, "walk_file", decline)
    got = {name: read_instance(path) for name, path in cases.items()}
    for name, instance in got.items():
        extras = (instance.rescale_slope, instance.rescale_intercept,
                  instance.temporal_position)
        assert extras == _expected_extras(cases[name]), name
    assert got["ct"].rescale_intercept == -1024.0 and got["ct"].rescale_slope == 1.0
    assert (got["mr"].rescale_slope, got["mr"].rescale_intercept) == (None, None)
    assert got["ct"].temporal_position is None and got["mr"].temporal_position is None
    assert (got["4d-first"].temporal_position, got["4d-last"].temporal_position) == (1, 3)
    assert got["enhanced"].rescale_slope == 0.5


def test_rescale_and_temporal_position_survive_the_cache(tmp_path: Path) -> None:
    _rescale_cases(tmp_path / "data")
    db = tmp_path / "index.sqlite"
    first = scan(tmp_path / "data", cache=db, workers=1)
    again = scan(tmp_path / "data", cache=db, workers=1)
    assert again == first
    extras = {(i.rescale_slope, i.rescale_intercept, i.temporal_position)
              for s in again.all_series() for i in s.instances}
    assert {(1.0, -1024.0, None), (None, None, None), (2.0, -10.0, 1), (2.0, -10.0, 3)} <= extras


def test_file_without_preamble_is_read_as_a_raw_dataset(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_series(tmp_path / "src")[0])
    raw = tmp_path / "raw.dcm"
    ds.preamble, ds.file_meta = None, pydicom.dataset.FileMetaDataset()
    ds.save_as(raw, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert raw.read_bytes()[128:132] != b"DICM"
    instance = read_instance(raw)
    assert instance is not None and instance.sop_instance_uid == ds.SOPInstanceUID
    assert (instance.rows, instance.columns) == (12, 10)


def test_non_dicom_is_none_and_broken_dicom_raises(tmp_path: Path) -> None:
    broken = synthetic.write_broken(tmp_path)
    for kind in ("text", "png", "empty"):
        assert read_instance(broken[kind]) is None
    for kind in ("truncated", "corrupt"):
        with pytest.raises(DicomError) as info:
            read_instance(broken[kind])
        assert info.value.path == str(broken[kind]) and info.value.reason
    assert read_instance(TEST_FILES / "README.txt") is None


def test_pydicom_test_files_never_crash_the_scan() -> None:
    result = scan(TEST_FILES, cache=False, workers=1)
    everything = [p for p in TEST_FILES.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert result.files_seen == len(everything)
    problems = {Path(p.path).name: p.reason for p in result.problems}
    assert "truncated" in problems["MR_truncated.dcm"]
    assert "README.txt" not in problems and "zipMR.gz" not in problems
    indexed = {Path(i.path).name for s in result.all_series() for i in s.instances}
    assert {"CT_small.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm"} <= indexed
    assert "rtplan.dcm" not in indexed and "test-SR.dcm" not in indexed  # no image: skipped
    counted = result.files_skipped + len(result.problems) + sum(
        len(s.instances) for s in result.all_series())
    assert counted == len(everything)  # every file is indexed, skipped or a problem


# --- the tree -----------------------------------------------------------------------------------


def test_tree_groups_sorts_and_orders_slices_by_position(tmp_path: Path) -> None:
    _series(tmp_path / "a", shuffle_names=True, SeriesNumber=3, PatientName="ZETA^Z",
            PatientID="P2", seed=2)
    _series(tmp_path / "b", SeriesNumber=1, PatientName="ALPHA^A", PatientID="P1", seed=1,
            StudyDate="20240102", SeriesDescription="late")
    _series(tmp_path / "c", SeriesNumber=2, PatientName="ALPHA^A", PatientID="P1", seed=1,
            StudyDate="20240102", SeriesDescription="early")
    _series(tmp_path / "d", SeriesNumber=1, PatientName="ALPHA^A", PatientID="P1", seed=5,
            StudyDate="20230101", orientation=synthetic.CORONAL)
    result = scan(tmp_path, cache=False, workers=1)
    assert [p.name for p in result.patients] == ["ALPHA^A", "ZETA^Z"]
    alpha = result.patients[0]
    assert [s.date for s in alpha.studies] == ["20230101", "20240102"]
    assert [s.description for s in alpha.studies[1].series] == ["late", "early"]
    for series in result.all_series():
        o = series.instances[0].orientation
        normal = np.cross(o[:3], o[3:])
        along = [float(np.dot(i.position, normal)) for i in series.instances]
        assert along == sorted(along) and len(set(along)) == 5
        assert series.image_count == 5 and series.stack_count == 1
    shuffled = result.patients[1].studies[0].series[0].instances
    assert [Path(i.path).name for i in shuffled] != sorted(Path(i.path).name for i in shuffled)


@pytest.mark.parametrize("change", ["orientation", "size"])
def test_series_splits_into_stacks(tmp_path: Path, change: str) -> None:
    uid = synthetic.make_uid("one series", change)
    _series(tmp_path / "x", SeriesInstanceUID=uid, seed=1)
    other = {"orientation": {"orientation": synthetic.oblique(30)},
             "size": {"voxels": _voxels(slices=3, rows=8, columns=8)}}[change]
    _series(tmp_path / "y", SeriesInstanceUID=uid, seed=1, suffix=".img", **other)
    result = scan(tmp_path, cache=False, workers=1)
    stacks = result.all_series()
    assert [(s.series_instance_uid, s.stack_count) for s in stacks] == [(uid, 2), (uid, 2)]
    assert sorted(s.stack_index for s in stacks) == [0, 1]
    assert sorted(len(s.instances) for s in stacks) == [3, 5] if change == "size" else [5, 5]
    for s in stacks:
        assert len({(i.rows, i.columns, i.orientation) for i in s.instances}) == 1


def test_4d_series_keeps_every_time_point_in_one_stack(tmp_path: Path) -> None:
    synthetic.write_4d(tmp_path, np.stack([_voxels(slices=3)] * 2), modality="MR")
    (series,) = scan(tmp_path, cache=False, workers=1).all_series()
    assert series.image_count == 6
    z = [i.position[2] for i in series.instances]
    assert z == sorted(z) and len(set(z)) == 3


def test_broken_and_foreign_files_in_a_folder(tmp_path: Path) -> None:
    _series(tmp_path)
    synthetic.write_broken(tmp_path / "bad")
    result = scan(tmp_path, cache=False, workers=1)
    reasons = {Path(p.path).name: p.reason for p in result.problems}
    assert set(reasons) == {"truncated.dcm", "corrupt.dcm"}
    assert all(len(r) > 10 for r in reasons.values())
    assert result.files_skipped == 3  # README.txt, screenshot.png, empty.dcm
    assert sum(s.image_count for s in result.all_series()) == 5 + 1  # + undecodable.dcm
    assert result.files_seen == 5 + 6


def test_hidden_folders_and_symlink_loops_are_not_followed(tmp_path: Path) -> None:
    _series(tmp_path / "study")
    _series(tmp_path / ".git", seed=9)
    os.symlink(tmp_path, tmp_path / "study" / "loop")
    result = scan(tmp_path, cache=False, workers=1)
    assert [len(s.instances) for s in result.all_series()] == [5]


# --- DICOMDIR -----------------------------------------------------------------------------------


def _dicomdir(tmp_path: Path) -> Path:
    files = _series(tmp_path / "src", seed=3) + _series(tmp_path / "src2", seed=4)
    fs = FileSet()
    for path in files:
        fs.add(pydicom.dcmread(path))
    fs.write(tmp_path / "media")
    return tmp_path / "media" / "DICOMDIR"


def test_dicomdir_lists_its_files(tmp_path: Path) -> None:
    dicomdir = _dicomdir(tmp_path)
    by_dicomdir = scan(dicomdir, cache=False, workers=1)
    assert [s.image_count for s in by_dicomdir.all_series()] == [5, 5]
    assert all(i.path.startswith(str(dicomdir.parent))
               for s in by_dicomdir.all_series() for i in s.instances)
    by_folder = scan(dicomdir.parent, cache=False, workers=1)
    assert _paths(by_folder) == _paths(by_dicomdir)  # the DICOMDIR does not double-count
    both = scan([dicomdir, dicomdir.parent], cache=False, workers=1)
    assert _paths(both) == _paths(by_dicomdir)


def test_dicomdir_with_a_missing_file_reports_it(tmp_path: Path) -> None:
    dicomdir = _dicomdir(tmp_path)
    victim = scan(dicomdir, cache=False, workers=1).all_series()[0].instances[0].path
    os.remove(victim)
    result = scan(dicomdir, cache=False, workers=1)
    assert [p.path for p in result.problems] == [victim]
    assert "missing" in result.problems[0].reason
    garbage = tmp_path / "other" / "DICOMDIR"
    garbage.parent.mkdir()
    garbage.write_bytes(b"not a dicomdir")
    assert [p.path for p in scan(garbage, cache=False).problems] == [str(garbage)]


# --- cache, progress, cancel ----------------------------------------------------------------


def test_second_scan_reads_no_file_and_a_changed_file_is_parsed_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _series(tmp_path / "data")
    synthetic.write_broken(tmp_path / "data" / "bad")
    db = tmp_path / "cache" / "index.sqlite"
    counter = Counter(monkeypatch)
    first = scan(tmp_path / "data", cache=db, workers=1)
    assert len(counter.paths) == 11
    again = scan(tmp_path / "data", cache=db, workers=1)
    assert len(counter.paths) == 11  # nothing parsed
    assert again == first
    ds = pydicom.dcmread(files[0])
    ds.InstanceNumber = 99
    ds.save_as(files[0])
    os.remove(files[1])
    third = scan(tmp_path / "data", cache=db, workers=1)
    assert counter.paths[11:] == [str(files[0])]
    numbers = {i.path: i.instance_number for s in third.all_series() for i in s.instances}
    assert numbers[str(files[0])] == 99 and str(files[1]) not in numbers
    assert third.files_seen == first.files_seen - 1
    scan(tmp_path / "data", cache=db, workers=1)
    assert len(counter.paths) == 12


def test_corrupt_cache_file_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _series(tmp_path / "data")
    db = tmp_path / "index.sqlite"
    db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    counter = Counter(monkeypatch)
    assert scan(tmp_path / "data", cache=db, workers=1).all_series()[0].image_count == 5
    scan(tmp_path / "data", cache=db, workers=1)
    assert len(counter.paths) == 5
    with sqlite3.connect(db) as con:  # a damaged row is dropped, not decoded
        con.execute("UPDATE folders SET entries = x'00ff'")
    _as_new_process()
    assert scan(tmp_path / "data", cache=db, workers=1).all_series()[0].image_count == 5
    assert len(counter.paths) == 10


def test_cache_location_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _series(tmp_path / "data")
    monkeypatch.setenv("MEDVIEWER_CACHE_DIR", str(tmp_path / "cachedir"))
    scan(tmp_path / "data", workers=1)
    assert (tmp_path / "cachedir" / "index.sqlite").is_file()
    counter = Counter(monkeypatch)
    scan(tmp_path / "data", cache=False, workers=1)
    assert len(counter.paths) == 5  # cache=False reads every file


def test_progress_is_monotonic_and_cancel_returns_a_partial_result(tmp_path: Path) -> None:
    for k in range(4):
        _series(tmp_path / f"s{k}", voxels=_voxels(slices=20, rows=4, columns=4), seed=k)
    calls: list[tuple[int, int]] = []
    full = scan(tmp_path, progress=lambda d, t: calls.append((d, t)), cache=False, workers=1)
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1] == (80, 80) and len(calls) >= 3
    assert {t for _, t in calls} == {80}
    calls.clear()
    partial = scan(tmp_path, cancel=lambda: len(calls) > 1, cache=False, workers=1,
                   progress=lambda d, t: calls.append((d, t)))
    assert partial.cancelled and not full.cancelled
    assert 0 < sum(s.image_count for s in partial.all_series()) < 80
    at_once = scan(tmp_path, cancel=lambda: True, cache=False, workers=1)
    assert at_once.cancelled and at_once.all_series() == []


def test_worker_processes_give_the_same_index(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for k in range(3):
        _series(tmp_path / f"s{k}", seed=k)
    synthetic.write_broken(tmp_path / "bad")
    monkeypatch.setattr(index_module, "MIN_FILES_FOR_POOL", 1)
    pooled = scan(tmp_path, cache=False, workers=2)
    assert pooled == scan(tmp_path, cache=False, workers=1)
    assert len(pooled.problems) == 2


def test_explicit_file_list_and_missing_file(tmp_path: Path) -> None:
    files = _series(tmp_path)
    result = scan([files[3], files[1], tmp_path / "nope.dcm"], cache=False, workers=1)
    assert [Path(i.path) for i in result.all_series()[0].instances] == [files[1], files[3]]
    assert [Path(p.path).name for p in result.problems] == ["nope.dcm"]


def test_header_scan_reads_only_the_start_of_big_files(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = _series(tmp_path, voxels=_voxels(slices=1, rows=256, columns=256))[0]
    sizes: list[int] = []
    real_open = open

    class Spy:
        def __init__(self, fh):
            self.fh = fh

        def read(self, n=-1):
            data = self.fh.read(n)
            sizes.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr("builtins.open", lambda *a, **k: Spy(real_open(*a, **k)))
    assert read_instance(path).rows == 256
    assert sum(sizes) < 16384 < os.path.getsize(path)


def test_dataset_without_identity_is_skipped(tmp_path: Path) -> None:
    ds = Dataset()
    ds.PatientName = "NOBODY"
    path = tmp_path / "noid.dcm"
    ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert read_instance(path) is None


def test_cache_from_another_schema_version_is_dropped(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _series(tmp_path / "data")
    db = tmp_path / "index.sqlite"
    scan(tmp_path / "data", cache=db, workers=1)
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA user_version=1")
    _as_new_process()
    counter = Counter(monkeypatch)
    scan(tmp_path / "data", cache=db, workers=1)
    scan(tmp_path / "data", cache=db, workers=1)
    assert len(counter.paths) == 5  # parsed once after the upgrade, then cached again


def test_concurrent_scans_share_one_cache(tmp_path: Path) -> None:
    for k in range(3):
        _series(tmp_path / "data" / f"s{k}", seed=k)
    db = tmp_path / "index.sqlite"
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: scan(tmp_path / "data", cache=db, workers=1), range(3)))
    assert all(r == results[0] for r in results)
    assert sum(s.image_count for s in results[0].all_series()) == 15


def test_damaged_headers_raise_dicom_error_or_nothing(tmp_path: Path) -> None:
    """Cut and scribbled-on copies of real files: read_header returns, or raises DicomError."""
    rng = np.random.default_rng(7)
    sources = [(TEST_FILES / n).read_bytes() for n in ("CT_small.dcm", "MR_small_RLE.dcm",
                                                       "MR_small_implicit.dcm", "rtdose.dcm")]
    outcomes = set()
    for k in range(300):
        data = bytearray(sources[k % len(sources)])
        if k % 2:
            data = data[: int(rng.integers(0, len(data)))]
        else:
            spots = rng.integers(128, min(len(data), 2500), 4)
            data[spots[0] : spots[0] + 4] = b"\xff\xff\xff\xff"
            for spot in spots[1:]:
                data[spot] = int(rng.integers(0, 256))
        path = tmp_path / f"damaged{k}.dcm"
        path.write_bytes(bytes(data))
        try:
            outcomes.add("read" if read_header(path) else "skipped")
        except DicomError as exc:
            outcomes.add("error")
            assert exc.path == str(path) and exc.reason
    assert {"read", "error"} <= outcomes


def test_rows_of_deleted_folders_leave_the_cache(tmp_path: Path) -> None:
    _series(tmp_path / "data" / "kept")
    _series(tmp_path / "data" / "gone", seed=1)
    db = tmp_path / "index.sqlite"
    scan(tmp_path / "data", cache=db, workers=1)
    for path in (tmp_path / "data" / "gone").iterdir():
        path.unlink()
    (tmp_path / "data" / "gone").rmdir()
    assert sum(s.image_count for s in scan(tmp_path / "data", cache=db).all_series()) == 5
    with sqlite3.connect(db) as con:
        folders = [Path(f).name for (f,) in con.execute("SELECT folder FROM folders")]
    assert folders == ["kept"]


# --- re-scan: memo, whole-folder comparison, columnar rows ------------------------------------


def _mixed_folder(folder: Path) -> None:
    """Two series, a 4D one and broken / foreign files side by side in one folder."""
    _series(folder, seed=1, suffix=".a")
    _series(folder, seed=2, modality="MR", rescale=None, suffix=".b",
            voxels=np.abs(_voxels(seed=2)).astype(np.uint16))
    synthetic.write_4d(folder / "dyn", np.stack([_voxels(slices=2)] * 2), modality="MR")
    synthetic.write_broken(folder)


def _summary(result) -> tuple:
    return (result.patients, sorted((p.path, p.reason) for p in result.problems),
            result.files_seen, result.files_skipped)


@pytest.mark.parametrize("process", ["same", "new"])
def test_rescan_sees_every_change_in_the_same_or_a_new_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, process: str) -> None:
    _mixed_folder(tmp_path / "data")
    files = _series(tmp_path / "data" / "ct", seed=3)
    db = tmp_path / "index.sqlite"
    counter = Counter(monkeypatch)
    first = scan(tmp_path / "data", cache=db, workers=1)

    def again() -> tuple[object, list[str]]:
        """A re-scan and the files it parsed, checked against a scan without cache."""
        if process == "new":
            _as_new_process()
        before = len(counter.paths)
        result = scan(tmp_path / "data", cache=db, workers=1)
        parsed = counter.paths[before:]
        assert _summary(result) == _summary(scan(tmp_path / "data", cache=False, workers=1))
        return result, parsed

    assert again() == (first, [])
    ds = pydicom.dcmread(files[0])
    ds.SeriesDescription = "rewritten in place, longer than before"
    ds.save_as(files[0])  # new size
    stat = files[1].stat()
    os.utime(files[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # same size, new mtime
    os.remove(files[2])
    added = _series(tmp_path / "data" / "ct" / "more", seed=4)
    result, parsed = again()
    assert sorted(parsed) == sorted(map(str, [files[0], files[1], *added]))
    paths = {i.path for s in result.all_series() for i in s.instances}
    assert str(files[2]) not in paths and {str(p) for p in added} <= paths
    described = {s.description for s in result.all_series()}
    assert "rewritten in place, longer than before" in described
    assert again()[1] == []


def test_cached_rows_round_trip_every_kind_of_file(tmp_path: Path) -> None:
    _mixed_folder(tmp_path / "data")
    db = tmp_path / "index.sqlite"
    fresh = scan(tmp_path / "data", cache=False, workers=1)
    assert fresh.problems and fresh.files_skipped and len(fresh.all_series()) >= 3
    assert scan(tmp_path / "data", cache=db, workers=1) == fresh
    _as_new_process()
    again = scan(tmp_path / "data", cache=db, workers=1)
    assert _summary(again) == _summary(fresh)
    biggest = max(again.all_series(), key=lambda s: len(s.instances))
    assert len(biggest.instances) == 5
    shared = {id(i.orientation) for i in biggest.instances}
    assert len(shared) == 1  # a value the whole series repeats is one object


def test_files_given_one_by_one_keep_the_rest_of_their_folder_cached(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _series(tmp_path / "data")
    db = tmp_path / "index.sqlite"
    counter = Counter(monkeypatch)
    scan(files[:2], cache=db, workers=1)
    _as_new_process()
    scan(files[2:4], cache=db, workers=1)
    _as_new_process()
    whole = scan(tmp_path / "data", cache=db, workers=1)
    assert sorted(counter.paths) == sorted(map(str, files))  # each file parsed once
    assert whole.all_series()[0].image_count == 5


def test_listing_without_folder_descriptors_is_the_same(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _mixed_folder(tmp_path / "data")
    (tmp_path / "data" / ".hidden").mkdir()
    _series(tmp_path / "data" / ".hidden")
    with_fd = scan(tmp_path / "data", cache=False, workers=1)
    monkeypatch.setattr(listing_module, "_DIR_FD", False)
    assert scan(tmp_path / "data", cache=False, workers=1) == with_fd
    assert not any("hidden" in i.path for s in with_fd.all_series() for i in s.instances)


def test_malformed_row_with_a_valid_checksum_is_parsed_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _series(tmp_path / "data")
    db = tmp_path / "index.sqlite"
    scan(tmp_path / "data", cache=db, workers=1)
    with sqlite3.connect(db) as con:
        (blob,) = con.execute("SELECT entries FROM folders").fetchone()
        row = list(marshal.loads(blob))
        row[3] = ("a reason without a file",)  # misaligned with the files' marks
        bad = marshal.dumps(tuple(row))
        con.execute("UPDATE folders SET entries = ?, crc = ?", (bad, zlib.crc32(bad)))
    _as_new_process()
    counter = Counter(monkeypatch)
    assert scan(tmp_path / "data", cache=db, workers=1).all_series()[0].image_count == 5
    assert len(counter.paths) == 5


def test_folder_memo_forgets_the_oldest_folders_beyond_its_bound() -> None:
    memo = cache_module.FolderMemo(max_files=10)
    memo.put("db", "/a", "key-a", "built-a", 6)
    memo.put("db", "/b", "key-b", "built-b", 3)
    assert memo.get("db", "/a", "key-a") == "built-a"  # /a is now the most recent
    memo.put("db", "/c", "key-c", "built-c", 4)
    assert memo.get("db", "/b", "key-b") is None  # evicted: 6 + 3 + 4 > 10
    assert memo.get("db", "/a", "key-a") == "built-a"
    assert memo.get("db", "/a", "another listing") is None
    assert memo.get("other.sqlite", "/c", "key-c") is None


CORONAL, SAGITTAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0), (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def test_single_images_in_different_orientations_are_one_stack(tmp_path: Path) -> None:
    """A 3-plane localizer is one entry in acquisition order, not three of one image each."""
    uid = synthetic.make_uid("localizer")
    paths = []
    for k, orientation in enumerate((synthetic.AXIAL, CORONAL, SAGITTAL)):
        (path,) = _series(tmp_path / f"plane{k}", voxels=_voxels(slices=1), seed=1,
                          orientation=orientation, SeriesInstanceUID=uid)
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = 3 - k
        ds.save_as(path)
        paths.append(str(path))
    (series,) = scan(tmp_path, cache=False, workers=1).all_series()
    assert [i.path for i in series.instances] == paths[::-1]


def test_a_scout_beside_a_stack_stays_its_own_stack(tmp_path: Path) -> None:
    uid = synthetic.make_uid("ct with scout")
    _series(tmp_path / "axial", SeriesInstanceUID=uid, seed=1)
    _series(tmp_path / "scout", voxels=_voxels(slices=1), seed=1, orientation=CORONAL,
            SeriesInstanceUID=uid)
    stacks = scan(tmp_path, cache=False, workers=1).all_series()
    assert sorted(s.image_count for s in stacks) == [1, 5]


def test_a_cache_busy_in_another_scan_is_left_alone(tmp_path: Path, monkeypatch) -> None:
    """'database is locked' while another scan (a thread, or the viewer beside a CLI) sets
    the file up is not corruption: the files stay (deleting the WAL index others have mapped
    crashed a scan with SIGBUS), this scan goes without the cache, and the next one uses it."""
    _series(tmp_path / "data" / "s0", seed=0)
    db = tmp_path / "index.sqlite"
    scan(tmp_path / "data", cache=db, workers=1)
    files = sorted(p.name for p in tmp_path.glob("index.sqlite*"))
    real_open = cache_module.ScanCache._open

    def locked(self):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(cache_module.ScanCache, "_open", locked)
    busy = cache_module.ScanCache(db)
    assert busy.db is None
    assert sorted(p.name for p in tmp_path.glob("index.sqlite*")) == files
    assert sum(s.image_count for s in scan(tmp_path / "data", cache=db,
                                            workers=1).all_series()) == 5

    class LockedDb:  # a read that finds the database locked
        def execute(self, *args):
            raise sqlite3.OperationalError("database is locked")

        def close(self):
            pass

    reading = cache_module.ScanCache.__new__(cache_module.ScanCache)
    reading.location, reading.db = db, LockedDb()
    assert reading.folders_below(str(tmp_path)) == []
    assert sorted(p.name for p in tmp_path.glob("index.sqlite*")) == files
    monkeypatch.setattr(cache_module.ScanCache, "_open", real_open)
    counter = Counter(monkeypatch)
    scan(tmp_path / "data", cache=db, workers=1)
    assert counter.paths == []  # the cache written before is still there and used
