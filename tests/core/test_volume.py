"""load_series / SeriesLoader: geometry, modality values, colour, codecs and failures."""

from __future__ import annotations

import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_color_lut, apply_modality_lut
from pydicom.uid import HTJ2KLossless, JPEG2000Lossless, RLELossless

from medviewer.core import synthetic as syn
from medviewer.core.dicom.errors import DicomError
from medviewer.core.dicom.volume import LoadCancelled, SeriesLoader, load_series

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _ct(shape=(6, 16, 20), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-1000, 2000, shape).astype(np.int16)


def _reference(path: Path) -> np.ndarray:
    """pydicom's own decode with the Modality LUT, the baseline every file must match."""
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
        return apply_color_lut(arr, ds)
    if "RescaleSlope" in ds or "ModalityLUTSequence" in ds:
        arr = apply_modality_lut(arr, ds)
    if "DoseGridScaling" in ds:  # RT Dose: stored values x scaling = Gy
        arr = arr * float(ds.DoseGridScaling)
    return np.asarray(arr)


def _decodable_test_files() -> list[Path]:
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(TEST_FILES.glob("*.dcm")):
            try:
                ds = pydicom.dcmread(path)
                _ = ds.pixel_array
            except Exception:
                continue
            if int(ds.get("BitsAllocated", 8)) <= 8 or int(ds.get("SamplesPerPixel", 1)) == 1:
                out.append(path)
    return out


@pytest.mark.parametrize("path", _decodable_test_files(), ids=lambda p: p.name)
def test_bundled_files_match_pydicom(path: Path) -> None:
    volume = load_series(path)
    ref = _reference(path)
    if volume.is_colour and ref.dtype == np.uint16:  # 16-bit palettes scale to 8 bit
        ref = ref >> 8
    assert volume.voxels.size == ref.size
    np.testing.assert_allclose(volume.voxels.reshape(-1), ref.reshape(-1).astype(float),
                               rtol=1e-6)
    assert volume.voxels.dtype != np.float64


# The bundled files _decodable_test_files leaves out, and why: a missing decoder or a newer
# pydicom must not shrink the comparison above silently.
EXPECTED_LEFT_OUT = {
    # no Pixel Data (reports, plans, structures, waveforms, sequence tests)
    "UN_sequence.dcm", "empty_charset_LEI.dcm", "no_meta_group_length.dcm", "priv_SQ.dcm",
    "nested_priv_SQ.dcm", "reportsi.dcm", "reportsi_with_empty_number_tags.dcm", "rtplan.dcm",
    "rtplan_truncated.dcm", "rtstruct.dcm", "test-SR.dcm", "waveform_ecg.dcm",
    # pydicom itself refuses them (no File Meta without force=True, a broken header or
    # stream, a JPEG variant no installed decoder reads): the reference cannot be computed
    "ExplVR_BigEndNoMeta.dcm", "ExplVR_LitEndNoMeta.dcm", "no_meta.dcm", "badVR.dcm",
    "meta_missing_tsyntax.dcm", "MR_truncated.dcm", "JPEG-lossy.dcm",
    "JPEG2000-embedded-sequence-delimiter.dcm",
    # colour with more than 8 bits per sample: the filter's own rule (the viewer shows 8-bit RGB)
    "SC_rgb_rle_16bit.dcm", "SC_rgb_rle_16bit_2frame.dcm", "SC_rgb_rle_32bit.dcm",
    "SC_rgb_rle_32bit_2frame.dcm",
}


def test_the_bundled_file_filter_leaves_out_only_what_it_should() -> None:
    kept = {p.name for p in _decodable_test_files()}
    left_out = {p.name for p in TEST_FILES.glob("*.dcm")} - kept
    assert left_out <= EXPECTED_LEFT_OUT, f"newly left out: {sorted(left_out - EXPECTED_LEFT_OUT)}"
    assert len(kept) >= 54  # pydicom 3.0's bundle: 78 files, 54 compared


def test_bundled_codecs_are_covered() -> None:
    names = {p.name for p in _decodable_test_files()}
    for name in ("MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "JPEG2000.dcm",
                 "MR_small_jpeg_ls_lossless.dcm", "JPGExtended.dcm", "SC_rgb_jpeg_gdcm.dcm",
                 "image_dfl.dcm", "MR_small_bigendian.dcm", "examples_palette.dcm"):
        assert name in names


def test_shuffled_names_sort_by_position(tmp_path: Path) -> None:
    voxels = _ct()
    syn.write_series(tmp_path, voxels, spacing=(2.5, 0.7, 0.7), origin=(-10, -20, 30),
                     shuffle_names=True)
    volume = load_series(tmp_path)
    np.testing.assert_array_equal(volume.voxels, voxels)
    assert volume.voxels.dtype == np.int16
    assert volume.spacing == pytest.approx((2.5, 0.7, 0.7))


def test_oblique_affine_maps_voxels_to_each_slice_position(tmp_path: Path) -> None:
    voxels = _ct((5, 8, 10))
    iop = syn.oblique(25.0)
    syn.write_series(tmp_path, voxels, spacing=(3.0, 0.5, 0.8), orientation=iop,
                     origin=(5, 6, 7), shuffle_names=True)
    volume = load_series(tmp_path)
    np.testing.assert_array_equal(volume.voxels, voxels)
    a = volume.affine
    np.testing.assert_allclose(a[:3, 0], np.array(iop[:3]) * 0.8, atol=1e-6)
    np.testing.assert_allclose(a[:3, 1], np.array(iop[3:]) * 0.5, atol=1e-6)
    for k, source in enumerate(volume.sources):
        ipp = [float(v) for v in pydicom.dcmread(source.path).ImagePositionPatient]
        np.testing.assert_allclose(a @ [0, 0, k, 1], [*ipp, 1.0], atol=1e-4)


def test_missing_slice_keeps_true_positions_and_warns(tmp_path: Path) -> None:
    voxels = _ct((8, 8, 8))
    syn.write_series(tmp_path, voxels, spacing=(2.0, 1.0, 1.0), skip_slices=[4])
    volume = load_series(tmp_path)
    np.testing.assert_array_equal(volume.voxels, np.delete(voxels, 4, axis=0))
    assert volume.spacing[0] == pytest.approx(2.0)
    assert any("gap" in w for w in volume.warnings)


def test_monochrome1_keeps_values(tmp_path: Path) -> None:
    voxels = np.random.default_rng(1).integers(0, 4000, (3, 8, 8)).astype(np.uint16)
    syn.write_series(tmp_path, voxels, modality="DX", photometric="MONOCHROME1")
    volume = load_series(tmp_path)
    assert volume.photometric == "MONOCHROME1"
    np.testing.assert_array_equal(volume.voxels, voxels)


@pytest.mark.parametrize("enhanced", [True, False])
def test_multiframe_geometry(tmp_path: Path, enhanced: bool) -> None:
    voxels = _ct((5, 8, 12))
    path = syn.write_multiframe(tmp_path, voxels, spacing=(1.5, 0.6, 0.6), origin=(0, 0, -40),
                                enhanced=enhanced, shuffle_frames=enhanced)
    volume = load_series(path)
    np.testing.assert_array_equal(volume.voxels, voxels)
    assert volume.spacing == pytest.approx((1.5, 0.6, 0.6))
    np.testing.assert_allclose(volume.affine[:3, 3], [0, 0, -40], atol=1e-6)
    assert volume.has_geometry


def test_rle_and_jpeg2000_series(tmp_path: Path) -> None:
    voxels = _ct((4, 64, 64))
    for syntax in (RLELossless, JPEG2000Lossless):
        folder = tmp_path / syntax.name.replace(" ", "_")
        syn.write_series(folder, voxels, transfer_syntax=syntax)
        np.testing.assert_array_equal(load_series(folder).voxels, voxels)


def test_htj2k_transfer_syntax_is_routed_to_the_jpeg2000_decoder(tmp_path: Path) -> None:
    """No HTJ2K encoder is available here, but an HTJ2K decoder reads part-1 JPEG 2000
    codestreams too: relabelled files check that the HTJ2K syntaxes reach the decoder."""
    voxels = _ct((3, 64, 64))
    paths = syn.write_series(tmp_path, voxels, transfer_syntax=JPEG2000Lossless)
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = HTJ2KLossless
        ds.save_as(path, enforce_file_format=True)
    np.testing.assert_array_equal(load_series(tmp_path).voxels, voxels)


def test_repeated_positions_load_as_4d(tmp_path: Path) -> None:
    voxels = np.random.default_rng(2).integers(0, 900, (3, 4, 8, 8)).astype(np.int16)
    paths = syn.write_4d(tmp_path, voxels)
    volume = load_series(list(reversed(paths)))
    assert volume.is_4d
    np.testing.assert_array_equal(volume.voxels, voxels)
    assert len(volume.sources) == 4


def test_colour_rgb_ybr_and_palette(tmp_path: Path) -> None:
    rgb = np.random.default_rng(3).integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    for planar in (0, 1):
        path = syn.write_rgb(tmp_path / f"p{planar}", rgb, planar_configuration=planar)
        volume = load_series(path)
        assert volume.is_colour and volume.voxels.dtype == np.uint8
        np.testing.assert_array_equal(volume.voxels, rgb)
    ybr = load_series(syn.write_rgb(tmp_path / "ybr", rgb, photometric="YBR_FULL"))
    assert np.abs(ybr.voxels.astype(int) - rgb).max() <= 2
    palette = syn.write_palette(tmp_path / "pal")
    volume = load_series(palette)
    assert volume.photometric == "RGB" and volume.voxels.shape[-1] == 3
    np.testing.assert_array_equal(volume.voxels[0], _reference(palette) >> 8)


def test_broken_files_raise_dicom_error_with_path(tmp_path: Path) -> None:
    broken = syn.write_broken(tmp_path)
    for kind in ("truncated", "corrupt", "undecodable"):
        with pytest.raises(DicomError) as info:
            load_series(broken[kind])
        assert info.value.path == str(broken[kind]) and info.value.reason


def test_non_dicom_files_in_a_folder_are_skipped(tmp_path: Path) -> None:
    voxels = _ct((3, 8, 8))
    syn.write_series(tmp_path, voxels)
    (tmp_path / "notes.txt").write_text("not DICOM")
    (tmp_path / "thumbs.db").write_bytes(b"\x00" * 300)
    np.testing.assert_array_equal(load_series(tmp_path).voxels, voxels)


def test_read_slice_progress_and_cancel(tmp_path: Path) -> None:
    voxels = _ct((5, 8, 8))
    syn.write_series(tmp_path, voxels, shuffle_names=True)
    loader = SeriesLoader(tmp_path)
    assert loader.shape == voxels.shape
    np.testing.assert_array_equal(loader.read_slice(3), voxels[3])
    calls: list[tuple[int, int]] = []
    loader.load(progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (5, 5)
    with pytest.raises(LoadCancelled):
        SeriesLoader(tmp_path).load(cancel=lambda: True)


def test_rescale_dtypes_and_no_float64_copies(tmp_path: Path) -> None:
    voxels = _ct((20, 64, 64))
    syn.write_series(tmp_path / "ct", voxels)
    tracemalloc.start()
    volume = load_series(tmp_path / "ct")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert volume.voxels.dtype == np.int16
    assert peak <= 1.5 * voxels.nbytes + 200_000
    mr = np.random.default_rng(4).integers(0, 200, (3, 8, 8))
    syn.write_series(tmp_path / "mr", mr, modality="MR")
    assert load_series(tmp_path / "mr").voxels.dtype == np.uint8
    pet = np.random.default_rng(5).random((3, 8, 8)) * 10
    syn.write_series(tmp_path / "pt", pet, modality="PT", rescale=(0.001, 0.0))
    loaded = load_series(tmp_path / "pt").voxels
    assert loaded.dtype == np.float32
    np.testing.assert_allclose(loaded, pet, atol=0.002)


def test_scanned_series_uses_the_scanners_rescale(tmp_path: Path) -> None:
    """The fast path trusts the Instance's rescale facts: no second header read."""
    import dataclasses

    from medviewer.core.dicom.headers import read_instance
    from medviewer.core.dicom.model import Series

    voxels = _ct((4, 8, 8))
    paths = syn.write_series(tmp_path, voxels, shuffle_names=True)
    scanned = [read_instance(p) for p in paths]
    assert scanned[0].rescale_intercept is not None
    series = Series("1.2.3", instances=scanned[::-1])
    volume = load_series(series)
    np.testing.assert_array_equal(volume.voxels, voxels)
    assert volume.series is series
    shifted = [dataclasses.replace(i, rescale_intercept=i.rescale_intercept + 10) for i in scanned]
    np.testing.assert_array_equal(load_series(Series("1.2.3", instances=shifted)).voxels,
                                  voxels + 10)


# -- files without File Meta, enhanced windows, RT Dose, projection images ----------------------


def _strip_meta(src: Path, dst: Path, encoding: str) -> Path:
    """Rewrite a file as an old PACS export would: no preamble, no File Meta header."""
    ds = pydicom.dcmread(src)
    stored = ds.pixel_array
    ds.file_meta, ds.preamble = pydicom.dataset.FileMetaDataset(), None
    if encoding == "big":
        ds.PixelData = stored.astype(stored.dtype.newbyteorder(">")).tobytes()
    pydicom.dcmwrite(dst, ds, implicit_vr=encoding == "implicit",
                     little_endian=encoding != "big", force_encoding=True)
    assert dst.read_bytes()[128:132] != b"DICM"
    return dst


@pytest.mark.parametrize("encoding", ["implicit", "explicit", "big"])
def test_files_without_file_meta_load(tmp_path: Path, encoding: str) -> None:
    voxels = _ct((3, 8, 10))
    paths = syn.write_series(tmp_path / "src", voxels)
    folder = tmp_path / encoding
    folder.mkdir()
    for p in paths:
        _strip_meta(p, folder / p.name, encoding)
    (folder / "notes.txt").write_text("not DICOM")
    (folder / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    volume = load_series(folder)
    np.testing.assert_array_equal(volume.voxels, voxels)
    assert volume.has_geometry and volume.spacing == pytest.approx((1.0, 1.0, 1.0))
    np.testing.assert_array_equal(load_series(folder / paths[1].name).voxels, voxels[1:2])


def test_non_dicom_and_non_image_single_files_raise(tmp_path: Path) -> None:
    text, png = tmp_path / "notes.txt", tmp_path / "scan.png"
    text.write_text("not DICOM at all, just a note\n" * 20)
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    for path in (text, png):
        with pytest.raises(DicomError, match="not a DICOM file"):
            load_series(path)
    plan_without_meta = TEST_FILES / "ExplVR_LitEndNoMeta.dcm"  # an RT Plan: DICOM, no image
    with pytest.raises(DicomError, match="holds no image"):
        load_series(plan_without_meta)


def test_enhanced_windows_come_from_the_functional_groups(tmp_path: Path) -> None:
    windows = [(40.0, 400.0, "SOFT TISSUE"), (-600.0, 1500.0, "LUNG")]
    path = syn.write_multiframe(tmp_path, _ct((3, 8, 8)), windows=windows, enhanced=True)
    ds = pydicom.dcmread(path)
    assert "WindowCenter" not in ds and "FrameVOILUTSequence" in \
        ds.SharedFunctionalGroupsSequence[0]
    volume = load_series(path)
    assert [(w.center, w.width, w.explanation) for w in volume.windows] == windows


def test_rt_dose_is_in_gray_as_float32() -> None:
    for name in ("rtdose.dcm", "rtdose_1frame.dcm"):
        ds = pydicom.dcmread(TEST_FILES / name)
        volume = load_series(TEST_FILES / name)
        assert volume.modality == "RTDOSE" and volume.voxels.dtype == np.float32
        gray = ds.pixel_array.astype(float) * float(ds.DoseGridScaling)
        np.testing.assert_allclose(volume.voxels.reshape(gray.shape), gray, rtol=1e-6)
        assert volume.voxels.max() < ds.pixel_array.max()  # scaled, not raw counts


def test_chest_xray_has_no_geometry_but_patient_orientation(tmp_path: Path) -> None:
    path, truth = syn.write_chest_xray(tmp_path, size=64)
    ds = pydicom.dcmread(path)
    assert "ImagePositionPatient" not in ds and list(ds.PatientOrientation) == ["L", "F"]
    volume = load_series(path)
    assert not volume.has_geometry and volume.patient_orientation == ("L", "F")
    assert volume.modality == "DX" and volume.voxels.shape == (1, 64, 64)
    spacing = truth["pixel_spacing_mm"]
    assert volume.spacing[1:] == pytest.approx((spacing, spacing))
    assert not any("ImagerPixelSpacing" in w for w in volume.warnings)
    ct = syn.write_series(tmp_path / "ct", _ct((2, 8, 8)))
    located = load_series(ct[0])
    assert located.has_geometry and located.patient_orientation is None


def test_detector_spacing_is_used_with_a_caveat_and_pixel_spacing_wins(tmp_path: Path) -> None:
    path, _ = syn.write_chest_xray(tmp_path, size=32)
    ds = pydicom.dcmread(path)
    ds.ImagerPixelSpacing, ds.PixelSpacing = [0.2, 0.25], [0.18, 0.225]
    ds.PatientOrientation = ["P", "FR"]
    ds.save_as(tmp_path / "both.dcm")
    both = load_series(tmp_path / "both.dcm")
    assert both.spacing[1:] == pytest.approx((0.18, 0.225))
    assert both.patient_orientation == ("P", "FR")
    assert not any("magnification" in w for w in both.warnings)
    del ds.PixelSpacing
    ds.PatientOrientation = ["X", "F"]  # not patient letters: no orientation claimed
    ds.save_as(tmp_path / "detector.dcm")
    detector = load_series(tmp_path / "detector.dcm")
    assert detector.spacing[1:] == pytest.approx((0.2, 0.25))
    assert "Spacing is at the detector (ImagerPixelSpacing): measurements are not corrected " \
        "for magnification." in detector.warnings
    assert detector.patient_orientation is None and not detector.has_geometry


# -- a partly broken series, cine rate, 1-bit images ---------------------------------------------


def _corrupt_pixel_data(path: Path) -> None:
    """Overwrite the start of the first compressed frame (RLE header / JPEG 2000 SIZ marker)
    with 0xFF, leaving the DICOM header intact so the scan still indexes the file."""
    from pydicom.encaps import generate_frames

    data = bytearray(path.read_bytes())
    frame = next(generate_frames(pydicom.dcmread(path).PixelData, number_of_frames=1))
    at = data.find(frame)
    assert at > 0
    data[at:at + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless], ids=["rle", "j2k"])
def test_a_corrupt_and_a_truncated_file_leave_the_rest_intact(tmp_path: Path, syntax) -> None:
    from medviewer.core.dicom import scan

    voxels = _ct((6, 32, 32))
    paths = syn.write_series(tmp_path, voxels, transfer_syntax=syntax, shuffle_names=True)
    result = scan(tmp_path, cache=False)
    (series,) = result.all_series()
    _corrupt_pixel_data(paths[2])
    paths[4].write_bytes(paths[4].read_bytes()[:-300])  # cut short after the scan
    good = [0, 1, 3, 5]
    for source in (series, tmp_path):
        volume = load_series(source)
        np.testing.assert_array_equal(volume.voxels[good], voxels[good])
        assert (volume.voxels[[2, 4]] == voxels[good].min()).all()  # blank = lowest value
        assert sorted(volume.bad_slices) == [2, 4]
        assert volume.bad_slices[2].startswith(paths[2].name + ": ")
        assert volume.bad_slices[4].startswith(paths[4].name + ": ")
        assert volume.bad_reason(2) == volume.bad_slices[2] and volume.bad_reason(1) is None
        (line,) = [w for w in volume.warnings if "could not be decoded" in w]
        assert line.startswith("2 of 6 images could not be decoded and are shown blank: ")
        assert paths[2].name in line and paths[4].name in line
    assert "corrupt" in volume.bad_slices[2]
    loader = SeriesLoader(series)
    with pytest.raises(DicomError) as info:
        loader.read_slice(2)
    assert info.value.path == str(paths[2])
    np.testing.assert_array_equal(loader.read_slice(3), voxels[3])


def test_a_series_where_nothing_decodes_raises(tmp_path: Path) -> None:
    paths = syn.write_series(tmp_path, _ct((3, 16, 16)), transfer_syntax=RLELossless)
    for path in paths:
        _corrupt_pixel_data(path)
    with pytest.raises(DicomError) as info:
        load_series(tmp_path)
    assert info.value.path in {str(p) for p in paths} and "corrupt" in info.value.reason


def test_a_bad_time_point_is_keyed_by_its_flat_index(tmp_path: Path) -> None:
    from medviewer.core.dicom import scan

    voxels = np.random.default_rng(2).integers(0, 900, (3, 4, 8, 8)).astype(np.int16)
    syn.write_4d(tmp_path, voxels)
    (series,) = scan(tmp_path, cache=False).all_series()
    bad = load_series(series).sources[0].path  # (t=0, k=0)
    Path(bad).write_bytes(Path(bad).read_bytes()[:-40])  # cut short after the scan
    volume = load_series(series)
    assert list(volume.bad_slices) == [0] and volume.bad_reason(0, 0) is not None
    assert volume.bad_reason(0, 1) is None
    np.testing.assert_array_equal(volume.voxels[1:], voxels[1:])


@pytest.mark.parametrize("attributes, rate", [
    ({"RecommendedDisplayFrameRate": 25, "CineRate": 12, "FrameTime": 100.0}, 25.0),
    ({"CineRate": 12, "FrameTime": 100.0}, 12.0),
    ({"FrameTime": 40.0}, 25.0),
    ({}, None),
])
def test_frame_rate_comes_from_the_header(tmp_path: Path, attributes: dict, rate) -> None:
    path = syn.write_multiframe(tmp_path, _ct((4, 8, 8)), **attributes)
    assert load_series(path).frame_rate == (pytest.approx(rate) if rate else None)


def test_bundled_ultrasound_loop_has_its_frame_time_rate() -> None:
    path = TEST_FILES / "examples_ybr_color.dcm"
    frame_time = float(pydicom.dcmread(path, stop_before_pixels=True).FrameTime)
    assert load_series(path).frame_rate == pytest.approx(1000.0 / frame_time)


def _segmentation(tmp_path: Path, *, omit_empty_frames: bool) -> tuple[Path, np.ndarray, Path]:
    """A 2-segment binary SEG (1 bit, 7 x 9: frames are not byte aligned) on a CT series."""
    hd = pytest.importorskip("highdicom")
    from pydicom.sr.codedict import codes

    paths = syn.write_series(tmp_path / "ct", _ct((5, 7, 9)), spacing=(2.0, 0.5, 0.7),
                             origin=(1, 2, 3))
    mask = np.zeros((5, 7, 9, 2), bool)
    mask[1:4, 2:5, 3:7, 0] = True
    mask[2, 1:3, 1:3, 1] = True
    segments = [hd.seg.SegmentDescription(
        segment_number=i + 1, segment_label=f"finding {i + 1}",
        segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL) for i in range(2)]
    seg = hd.seg.Segmentation(
        source_images=[pydicom.dcmread(p) for p in paths], pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=segments,
        series_instance_uid=hd.UID(), series_number=2, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="MedViewer", manufacturer_model_name="test",
        software_versions="1", device_serial_number="1", omit_empty_frames=omit_empty_frames)
    seg.save_as(tmp_path / "seg.dcm")
    assert seg.BitsAllocated == 1
    return tmp_path / "seg.dcm", mask, tmp_path / "ct"


def test_one_bit_segmentation_loads_as_0_1_on_the_source_grid(tmp_path: Path) -> None:
    path, mask, ct = _segmentation(tmp_path, omit_empty_frames=False)
    volume = load_series(path)
    assert volume.voxels.dtype == np.uint8 and volume.modality == "SEG"
    assert volume.voxels.shape == (2, 5, 7, 9)  # one time point per segment
    for s in range(2):
        np.testing.assert_array_equal(volume.voxels[s], mask[..., s])
    np.testing.assert_allclose(volume.affine, load_series(ct).affine, atol=1e-6)
    assert volume.has_geometry and not volume.bad_slices


def _secondary_capture(folder: Path, **attributes) -> Path:
    """A small RGB image with no PixelSpacing, as screen captures and many US files are."""
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[8:24, 8:40] = (200, 40, 40)
    return syn.write_rgb(folder, rgb, **attributes)


def test_images_without_spacing_say_measurements_are_in_pixels(tmp_path: Path) -> None:
    path = _secondary_capture(tmp_path)
    volume = load_series(path)
    assert volume.spacing_known is False
    assert any("measurements are in pixels" in w for w in volume.warnings)


def test_ultrasound_region_calibration_gives_the_spacing(tmp_path: Path) -> None:
    path = _secondary_capture(tmp_path)
    ds = pydicom.dcmread(path)
    region = pydicom.Dataset()
    region.PhysicalUnitsXDirection, region.PhysicalUnitsYDirection = 3, 3  # cm
    region.PhysicalDeltaX, region.PhysicalDeltaY = 0.02, 0.025
    ds.SequenceOfUltrasoundRegions = [region]
    ds.save_as(path)
    volume = load_series(path)
    assert volume.spacing_known
    np.testing.assert_allclose(volume.spacing[1:], (0.25, 0.2))  # (row, column) mm
    assert any("ultrasound region calibration" in w for w in volume.warnings)


def test_read_slice_of_a_compressed_multiframe_decodes_that_frame_only(
        tmp_path: Path, monkeypatch) -> None:
    path = syn.write_multiframe(tmp_path, _ct((6, 32, 32)), transfer_syntax=JPEG2000Lossless)
    loader = SeriesLoader(path)
    whole = loader.load().voxels
    decoded_frames = []
    original = pydicom.Dataset.pixel_array_options

    def spy(self, **kwargs):
        decoded_frames.append(kwargs.get("index"))
        return original(self, **kwargs)

    monkeypatch.setattr(pydicom.Dataset, "pixel_array_options", spy)
    for k in (0, 4, loader.slice_count - 1):
        np.testing.assert_array_equal(loader.read_slice(k), whole[k])
    assert len(decoded_frames) == 3 and None not in decoded_frames


@pytest.mark.parametrize("stored, signed", [((1024, 4000), True), ((1024, 4000), False),
                                             ((0, 1024), True)])
def test_negative_intercept_into_a_non_negative_range(tmp_path: Path, stored, signed) -> None:
    """A scout whose HU all come out >= 0 (or <= 0) after intercept -1024: the result dtype
    may be unsigned while the intercept is negative (pydicom's CT2N scout did this)."""
    raw = np.linspace(*stored, 5 * 16 * 16).reshape(5, 16, 16).astype(
        np.int16 if signed else np.uint16)
    paths = syn.write_series(tmp_path, raw.astype(np.int32) - 1024, rescale=(1, -1024))
    for path in paths:  # the stored values exactly as a scanner wrote them
        ds = pydicom.dcmread(path)
        ds.PixelRepresentation = int(signed)
        ds.BitsStored, ds.HighBit = 16, 15
        k = int(ds.InstanceNumber) - 1
        ds.PixelData = raw[k].tobytes()
        ds.save_as(path)
    np.testing.assert_array_equal(load_series(tmp_path).voxels, raw.astype(np.int32) - 1024)
