"""The synthetic DICOM writers and phantoms, read back with plain pydicom (no MedViewer reader).

Every writer gets a round trip: what was written in modality units comes back through the
header's rescale, every transfer syntax decodes, and the phantoms' ground truth is where the
pixel values say it is.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    EnhancedCTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    RLELossless,
)

from medviewer.core import demo
from medviewer.core import synthetic as syn


def _modality_values(ds: pydicom.Dataset) -> np.ndarray:
    pixels = ds.pixel_array.astype(np.float64)
    return pixels * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))


def _read_sorted(paths: list[Path]) -> list[pydicom.Dataset]:
    """Datasets sorted along the slice normal, as a viewer must (never by file name)."""
    datasets = [pydicom.dcmread(p) for p in paths]
    iop = np.array(datasets[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    return sorted(datasets, key=lambda ds: float(np.dot(ds.ImagePositionPatient, normal)))


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def small_chest() -> tuple[np.ndarray, dict]:
    return syn.ct_chest_phantom((40, 96, 96), (5.0, 3.6, 3.6), seed=5)


def test_series_reads_back_in_hu_with_scanner_headers(tmp_path: Path) -> None:
    hu, _ = syn.ct_chest_phantom((6, 48, 48), (5.0, 7.0, 7.0))
    paths = syn.write_series(tmp_path, hu, spacing=(5.0, 7.0, 7.0), shuffle_names=True,
                             PatientName="DOE^JANE", SeriesNumber=7)
    assert [p.name for p in paths] != sorted(p.name for p in paths)  # names do not give order
    datasets = _read_sorted(paths)
    np.testing.assert_array_equal(np.stack([_modality_values(d) for d in datasets]), hu)
    first = datasets[0]
    assert first.SOPClassUID == CTImageStorage and first.Modality == "CT"
    assert (first.RescaleIntercept, first.RescaleSlope, first.BitsStored) == (-1024, 1, 12)
    assert first.PixelRepresentation == 0 and first.PatientName == "DOE^JANE"
    assert list(first.WindowCenterWidthExplanation) == ["MEDIASTINUM", "LUNG"]
    assert [d.InstanceNumber for d in datasets] == list(range(1, 7))
    assert len({d.SOPInstanceUID for d in datasets}) == 6
    assert len({(d.SeriesInstanceUID, d.FrameOfReferenceUID) for d in datasets}) == 1
    steps = np.diff([d.SliceLocation for d in datasets])
    np.testing.assert_allclose(steps, 5.0)


@pytest.mark.parametrize("syntax", [
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian, RLELossless, JPEG2000Lossless, JPEGLSLossless])
@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_every_transfer_syntax_decodes_losslessly(tmp_path: Path, syntax: str, modality: str
                                                  ) -> None:
    rng = np.random.default_rng(3)
    low = -1024 if modality == "CT" else -300  # MR: signed stored values, no rescale
    voxels = rng.integers(low, 1500, (2, 32, 40)).astype(np.int16)  # J2K: >= 32 a side
    paths = syn.write_series(tmp_path, voxels, modality=modality, transfer_syntax=syntax)
    for path, expected in zip(paths, voxels, strict=True):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == syntax
        np.testing.assert_array_equal(_modality_values(ds), expected)


def test_oblique_positions_follow_the_affine(tmp_path: Path) -> None:
    iop = syn.oblique(30.0)
    geometry = syn.Geometry((4, 6, 8), (2.5, 0.8, 0.6), iop, (10.0, -20.0, 30.0))
    voxels = np.zeros(geometry.shape, np.int16)
    paths = syn.write_series(tmp_path, voxels, spacing=geometry.spacing, orientation=iop,
                             origin=geometry.origin, skip_slices=[2])
    assert len(paths) == 3
    for ds in (pydicom.dcmread(p) for p in paths):
        k = ds.InstanceNumber - 1
        np.testing.assert_allclose(ds.ImagePositionPatient,
                                   (geometry.affine @ [0, 0, k, 1])[:3], atol=1e-4)
        np.testing.assert_allclose(ds.ImageOrientationPatient, iop)
    assert abs(float(np.dot(geometry.normal, iop[:3]))) < 1e-9
    np.testing.assert_allclose(geometry.to_lps(0, 1, 0) - geometry.to_lps(0, 0, 0),
                               np.array(iop[3:]) * 0.8)


def test_pixel_layout_is_the_narrowest_that_holds_the_values() -> None:
    ct = syn.plan_coding(np.array([-1024, 3071], np.int16), (1.0, -1024.0))
    assert (ct.bits_allocated, ct.bits_stored, ct.signed) == (16, 12, False)
    byte = syn.plan_coding(np.array([0, 255], np.uint8), None)
    assert (byte.bits_allocated, byte.bits_stored) == (8, 8)
    wide = syn.plan_coding(np.array([-5000, 20000], np.int32), None)
    assert (wide.bits_stored, wide.signed) == (16, True)
    pet = syn.plan_coding(np.array([0.0, 12.5]), (0.001, 0.0))
    np.testing.assert_array_equal(pet.stored(np.array([0.0, 12.5])), [0, 12500])
    with pytest.raises(ValueError, match="16 bits"):
        syn.plan_coding(np.array([0, 70000], np.int32), None)
    with pytest.raises(ValueError, match="not DICOM keywords"):
        syn.write_series(Path("unused"), np.zeros((1, 2, 2), np.int16), PatientNmae="X")


def test_chest_phantom_truth_matches_the_hu_and_the_labels(small_chest) -> None:
    hu, truth = small_chest
    labels = syn.ct_chest_labels((40, 96, 96), (5.0, 3.6, 3.6))
    nodules = truth["nodules"]
    assert len(nodules) >= 3 and {n["diameter_mm"] for n in nodules} >= {10.0, 15.0, 20.0}
    for n in nodules:
        k, r, c = (int(round(v)) for v in n["center_voxel"])
        assert labels[k, r, c] == syn.CHEST_LABELS["nodule"]
        assert abs(int(hu[k, r, c]) - n["hu"]) < 40  # nodule HU within the noise
        lps = syn.Geometry(hu.shape, (5.0, 3.6, 3.6)).to_lps(*n["center_voxel"])
        np.testing.assert_allclose(n["center_lps"], lps, atol=1e-2)
        if n["diameter_mm"] >= 15:  # big enough for the voxel count to estimate the volume
            assert n["voxel_count"] * 5.0 * 3.6 * 3.6 == pytest.approx(n["volume_mm3"], rel=0.3)
    assert (labels == 3).sum() == sum(n["voxel_count"] for n in nodules)
    assert hu[labels == 2].mean() == pytest.approx(syn.CHEST_HU["lung"], abs=10)
    assert hu[labels == 4].mean() > 200 and hu[labels == 0].mean() < -990
    assert hu.dtype == np.int16 and labels.dtype == np.uint8


def test_phantom_is_deterministic_and_nodules_keep_their_size_in_mm() -> None:
    a, truth_a = syn.ct_chest_phantom((10, 40, 40), (6.0, 9.0, 9.0), seed=2)
    b, _ = syn.ct_chest_phantom((10, 40, 40), (6.0, 9.0, 9.0), seed=2)
    c, _ = syn.ct_chest_phantom((10, 40, 40), (6.0, 9.0, 9.0), seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and np.abs(a.astype(int) - c).max() < 100  # noise only
    assert all(n["diameter_mm"] >= 10 for n in truth_a["nodules"])  # 6 mm does not fit 9 mm px


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, RLELossless])
def test_enhanced_multiframe_with_shuffled_frames(tmp_path: Path, syntax: str) -> None:
    hu, _ = syn.ct_chest_phantom((5, 24, 32), (4.0, 11.0, 11.0))
    path = syn.write_multiframe(tmp_path, hu, spacing=(4.0, 11.0, 11.0), shuffle_frames=True,
                                transfer_syntax=syntax)
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == EnhancedCTImageStorage and ds.NumberOfFrames == 5
    assert "ImagePositionPatient" not in ds and "RescaleIntercept" not in ds
    shared = ds.SharedFunctionalGroupsSequence[0]
    rescale = shared.PixelValueTransformationSequence[0]
    z = [f.PlanePositionSequence[0].ImagePositionPatient[2]
         for f in ds.PerFrameFunctionalGroupsSequence]
    order = np.argsort(z)
    assert list(order) != list(range(5))
    values = ds.pixel_array[order] * rescale.RescaleSlope + rescale.RescaleIntercept
    np.testing.assert_array_equal(values, hu)
    np.testing.assert_allclose(np.diff(np.sort(z)), 4.0)
    assert list(shared.PixelMeasuresSequence[0].PixelSpacing) == [11.0, 11.0]


def test_classic_multiframe_has_one_position(tmp_path: Path) -> None:
    voxels = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    ds = pydicom.dcmread(syn.write_multiframe(tmp_path, voxels, enhanced=False,
                                              modality="NM", spacing=(3.0, 2.0, 2.0)))
    assert ds.SOPClassUID == MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    assert len(ds.ImagePositionPatient) == 3 and ds.NumberOfFrames == 3
    np.testing.assert_allclose(np.diff(ds.SliceLocationVector), 3.0)
    np.testing.assert_array_equal(ds.pixel_array, voxels)
    with pytest.raises(ValueError):
        syn.write_multiframe(tmp_path, voxels, enhanced=False, shuffle_frames=True)


def test_4d_repeats_positions_per_time_point(tmp_path: Path) -> None:
    voxels = np.random.default_rng(0).integers(0, 1000, (3, 4, 6, 6)).astype(np.uint16)
    paths = syn.write_4d(tmp_path, voxels, interval_s=2.5)
    datasets = [pydicom.dcmread(p) for p in paths]
    assert [d.InstanceNumber for d in datasets] == list(range(1, 13))
    assert len({tuple(d.ImagePositionPatient) for d in datasets}) == 4
    assert [d.TemporalPositionIdentifier for d in datasets[::4]] == [1, 2, 3]
    assert [float(d.TriggerTime) for d in datasets[::4]] == [0.0, 2500.0, 5000.0]
    assert datasets[4].AcquisitionTime > datasets[0].AcquisitionTime
    np.testing.assert_array_equal(datasets[5].pixel_array, voxels[1, 1])


def _colour_test_image(frames: int = 2) -> np.ndarray:
    yy, xx = np.mgrid[0:32, 0:40]
    rgb = np.stack([xx * 6, yy * 8, 255 - xx * 4], axis=-1).astype(np.uint8)
    # smooth on purpose: 4:2:2 and JPEG lose detail at sharp colour edges, by design
    return np.stack([np.clip(rgb.astype(int) + 15 * f, 0, 255).astype(np.uint8)
                     for f in range(frames)])


@pytest.mark.parametrize(("photometric", "planar", "syntax", "tolerance"), [
    ("RGB", 0, ExplicitVRLittleEndian, 0), ("RGB", 1, ExplicitVRLittleEndian, 0),
    ("YBR_FULL", 1, ImplicitVRLittleEndian, 2), ("YBR_FULL_422", 0, ExplicitVRLittleEndian, 6),
    ("RGB", 0, RLELossless, 0), ("YBR_FULL", 0, RLELossless, 2),
    ("RGB", 0, JPEG2000Lossless, 0), ("YBR_FULL_422", 0, JPEGBaseline8Bit, 10)])
def test_colour_images_decode_to_the_rgb_written(tmp_path: Path, photometric: str, planar: int,
                                                 syntax: str, tolerance: int) -> None:
    if syntax == JPEGBaseline8Bit:
        pytest.importorskip("PIL")
    rgb = _colour_test_image()
    ds = pydicom.dcmread(syn.write_rgb(tmp_path, rgb, photometric=photometric,
                                       planar_configuration=planar, transfer_syntax=syntax))
    assert ds.PhotometricInterpretation == photometric and ds.SamplesPerPixel == 3
    assert ds.file_meta.TransferSyntaxUID == syntax and ds.NumberOfFrames == 2
    decoded = ds.pixel_array  # pydicom converts YBR to RGB
    assert decoded.shape == rgb.shape
    assert np.abs(decoded.astype(int) - rgb).max() <= tolerance


def test_palette_colour_lut_maps_indices(tmp_path: Path) -> None:
    ds = pydicom.dcmread(syn.write_palette(tmp_path))
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    assert list(ds.RedPaletteColorLookupTableDescriptor) == [256, 0, 16]
    indices = ds.pixel_array
    assert indices.max() > 200 and indices.min() == 0
    np.testing.assert_array_equal(apply_color_lut(indices, ds), syn.hot_iron_palette()[indices])


def test_broken_files_fail_the_way_their_kind_says(tmp_path: Path) -> None:
    broken = syn.write_broken(tmp_path)
    with pytest.raises(ValueError, match="less than expected"):
        _ = pydicom.dcmread(broken["truncated"]).pixel_array
    corrupt = pydicom.dcmread(broken["corrupt"])
    assert "SOPClassUID" not in corrupt and "PixelData" not in corrupt
    undecodable = pydicom.dcmread(broken["undecodable"])
    assert undecodable.file_meta.TransferSyntaxUID == JPEG2000Lossless
    with pytest.raises(Exception, match="(?i)decod"):
        _ = undecodable.pixel_array
    for kind in ("text", "png", "empty"):
        with pytest.raises(InvalidDicomError):
            pydicom.dcmread(broken[kind])


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_chest_xray_ctr_and_heart_box(tmp_path: Path, photometric: str) -> None:
    normal_path, normal = syn.write_chest_xray(tmp_path / "n", size=256, photometric=photometric)
    _, enlarged = syn.write_chest_xray(tmp_path / "e", size=256, enlarged_heart=True)
    assert 0.38 < normal["ctr"] < 0.46 and enlarged["ctr"] > 0.55
    ds = pydicom.dcmread(normal_path)
    assert ds.Modality == "DX" and ds.PhotometricInterpretation == photometric
    assert ds.BitsStored == 12 and list(ds.ImagerPixelSpacing) == list(ds.PixelSpacing)
    shown = ds.pixel_array if photometric == "MONOCHROME2" else 4095 - ds.pixel_array
    x0, y0, x1, y1 = normal["heart_box"]
    heart = shown[(y0 + y1) // 2, (x0 + x1) // 2 - 10: (x0 + x1) // 2 + 10]
    lung = shown[(y0 + y1) // 2 - 50, x0 - 30: x0 - 10]  # right lung, above-left of the heart
    assert heart.mean() > lung.mean() + 500
    assert ds.SOPInstanceUID == normal["sop_instance_uid"]


def test_mr_series_has_no_rescale_and_a_header_window(tmp_path: Path) -> None:
    paths = syn.write_mr_series(tmp_path, shape=(6, 64, 64), spacing=(4.0, 3.75, 3.75),
                                orientation=syn.SAGITTAL)
    geometry = syn.Geometry((6, 64, 64), (4.0, 3.75, 3.75), syn.SAGITTAL)
    datasets = _read_sorted(paths)
    assert all("RescaleSlope" not in d and d.Modality == "MR" for d in datasets)
    assert datasets[0].WindowCenter == 500 and datasets[0].SeriesDescription == "T1 SE SAG"
    np.testing.assert_array_equal(np.stack([d.pixel_array for d in datasets]),
                                  syn.mr_head_phantom(geometry))


def test_demo_study_is_complete_and_consistent(demo_study: Path) -> None:
    truth = json.loads((demo_study / demo.TRUTH_FILE).read_text())
    ct = truth["chest_ct"]
    ct_files = sorted((demo_study / ct["folder"]).iterdir())
    assert len(ct_files) == demo.CT_SHAPE[0] and len(ct["nodules"]) == 4
    header = pydicom.dcmread(ct_files[0], stop_before_pixels=True)
    assert header.SeriesInstanceUID == ct["series_instance_uid"]
    assert header.PatientName == "DEMO^CHEST" and header.RescaleIntercept == -1024
    assert list(header.WindowCenterWidthExplanation) == ["MEDIASTINUM", "LUNG"]
    for key, name in (("chest_dx", "DEMO^CHEST"), ("cardio_dx", "DEMO^CARDIO")):
        dx = pydicom.dcmread(demo_study / truth[key]["file"], stop_before_pixels=True)
        assert dx.PatientName == name and dx.SOPInstanceUID == truth[key]["sop_instance_uid"]
    assert truth["cardio_dx"]["ctr"] > 0.5 > truth["chest_dx"]["ctr"]
    mr = sorted((demo_study / truth["head_mr"]["folder"]).iterdir())
    assert pydicom.dcmread(mr[0], stop_before_pixels=True).PatientName == "DEMO^MR"
    size = sum(p.stat().st_size for p in demo_study.rglob("*") if p.is_file())
    assert size < 80 * 2**20


def test_demo_study_is_byte_identical_and_not_regenerated(
        demo_study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    again = demo.ensure_demo_study(tmp_path)
    assert again == tmp_path / "demo-study"
    assert _tree_hash(again) == _tree_hash(demo_study)
    assert [p.name for p in tmp_path.iterdir()] == ["demo-study"]  # no staging left behind

    def fail(folder: Path) -> dict:
        raise AssertionError("regenerated a current demo study")

    monkeypatch.setattr(demo, "generate_demo_study", fail)
    assert demo.ensure_demo_study(tmp_path) == again


def test_newer_generator_replaces_the_study_atomically(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = tmp_path / "demo-study"
    old.mkdir()
    (old / demo.VERSION_FILE).write_text("demo-0\n")
    (old / "stale.dcm").write_bytes(b"old")

    def interrupted(folder: Path) -> dict:
        (folder / "half.dcm").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "generate_demo_study", interrupted)
    with pytest.raises(KeyboardInterrupt):
        demo.ensure_demo_study(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-study"]
    assert (old / "stale.dcm").exists()  # the old study survives an interrupted update

    def quick(folder: Path) -> dict:
        (folder / demo.VERSION_FILE).write_text(demo.DEMO_VERSION + "\n")
        return {}

    monkeypatch.setattr(demo, "generate_demo_study", quick)
    assert demo.is_current(demo.ensure_demo_study(tmp_path))
    assert not (old / "stale.dcm").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-study"]


def test_demo_dir_follows_the_data_dir_override(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(demo.DATA_DIR_ENV, str(tmp_path))
    assert demo.demo_dir() == tmp_path / "demo-study"
    monkeypatch.delenv(demo.DATA_DIR_ENV)
    assert demo.demo_dir().name == "demo-study" and demo.demo_dir().parent.name == "MedViewer"


def test_shared_fixtures_hold_what_they_say(ct_series, ct_series_dir: Path,
                                            pydicom_test_files: Path) -> None:
    assert len(ct_series.paths) == ct_series.voxels.shape[0] == 20
    datasets = _read_sorted(sorted(ct_series_dir.iterdir()))
    np.testing.assert_array_equal(np.stack([_modality_values(d) for d in datasets]),
                                  ct_series.voxels)
    assert ct_series.truth["nodules"] and (pydicom_test_files / "CT_small.dcm").is_file()
    assert demo.data_dir() != Path.home() / ".local" / "share" / "MedViewer"  # tests stay out
