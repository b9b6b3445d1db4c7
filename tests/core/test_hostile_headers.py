"""Headers that lie: declared sizes the file cannot hold, geometry and rescale values that cannot
be right, broken LUTs and undecodable elements. Each ends in a clean DicomError or a load that
falls back to what can be trusted and says so in Volume.warnings (issue 12, items 2, 4, 7)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.pixels import apply_modality_lut

from medviewer.core import synthetic as syn
from medviewer.core.dicom import checks, scan
from medviewer.core.dicom.errors import DicomError
from medviewer.core.dicom.volume import load_series

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
ROOT = Path(__file__).resolve().parents[2]


def _edited(source: Path, target: Path, **values: object) -> Path:
    """A copy of a bundled file with some header values replaced (pixel data untouched)."""
    ds = pydicom.dcmread(source)
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.save_as(target)
    return target


# -- item 2: declared sizes are checked against the file before anything is allocated -----------

BOMBS = {  # name: (bundled source, header values)
    "jpeg2000_2e31_frames": ("JPEG2000.dcm", {"NumberOfFrames": 2**31 - 1}),
    "native_1e6_frames": ("CT_small.dcm", {"NumberOfFrames": 1_000_000}),
    "native_65535_square": ("CT_small.dcm", {"Rows": 65535, "Columns": 65535}),
    "jpeg2000_65535_square_1e4_frames": ("JPEG2000.dcm", {"Rows": 65535, "Columns": 65535,
                                                           "NumberOfFrames": 10_000}),
}

_MEASURE = """
import json, resource, sys, time
from medviewer.core.dicom import DicomError, load_series
out = {"base_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
for path in sys.argv[1:]:
    start = time.perf_counter()
    try:
        load_series(path)
        reason = None
    except DicomError as exc:
        reason = exc.reason
    out[path] = {"seconds": time.perf_counter() - start, "reason": reason,
                 "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
print(json.dumps(out))
"""


def test_declared_sizes_the_file_cannot_hold_are_refused_fast_in_bounded_memory(tmp_path):
    paths = [_edited(TEST_FILES / src, tmp_path / f"{name}.dcm", **values)
             for name, (src, values) in BOMBS.items()]
    done = subprocess.run([sys.executable, "-c", _MEASURE, *map(str, paths)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    for path in paths:
        result = results[str(path)]
        assert result["reason"] is not None, f"{path.name} loaded"
        assert "header" in result["reason"], result["reason"]
        assert result["seconds"] < 1.0, (path.name, result)
        # peak of the process above what its imports took: ru_maxrss never goes down, so this
        # also bounds every case measured before this one
        assert result["peak_mb"] - results["base_mb"] < 100, (path.name, result)


def test_a_scanned_series_declaring_2e31_frames_is_refused(tmp_path):
    _edited(TEST_FILES / "JPEG2000.dcm", tmp_path / "bomb.dcm", NumberOfFrames=2**31 - 1)
    (series,) = scan(tmp_path, cache=False).all_series()
    with pytest.raises(DicomError, match="frames"):
        load_series(series)


def test_a_bomb_in_a_folder_is_skipped_with_its_reason_and_the_series_loads(tmp_path):
    voxels = np.arange(3 * 16 * 16, dtype=np.int16).reshape(3, 16, 16)
    syn.write_series(tmp_path, voxels, modality="MR")
    _edited(next(tmp_path.glob("*.dcm")), tmp_path / "zz_bomb.dcm", NumberOfFrames=10**6,
            SOPInstanceUID="1.2.3.999")
    volume = load_series(tmp_path)
    np.testing.assert_array_equal(volume.voxels, voxels)
    assert any("zz_bomb.dcm skipped" in w and "1,000,000 frames" in w for w in volume.warnings)


def test_a_compressed_image_larger_than_free_memory_is_refused(tmp_path, monkeypatch):
    path = _edited(TEST_FILES / "JPEG2000.dcm", tmp_path / "big.dcm", Rows=65535,
                   Columns=65535)
    monkeypatch.setattr(checks, "memory_available", lambda: 1 << 30)
    with pytest.raises(DicomError, match="memory"):
        load_series(path)


def test_rows_0_is_a_damaged_header_not_a_value_error(tmp_path):
    path = _edited(TEST_FILES / "CT_small.dcm", tmp_path / "rows0.dcm", Rows=0)
    with pytest.raises(DicomError, match="0 x 128 pixels"):
        load_series(path)


# -- item 4: geometry and rescale values that cannot be right -------------------------------


def _series(folder: Path, **raw: str) -> np.ndarray:
    """Six 32 x 32 CT slices (instance numbers in slice order) whose headers carry `raw`
    strings for some keywords, as a damaged scanner or anonymiser writes them."""
    voxels = np.random.default_rng(0).integers(-1000, 1000, (6, 32, 32)).astype(np.int16)
    for path in syn.write_series(folder, voxels, spacing=(2.0, 0.8, 0.8), shuffle_names=True):
        ds = pydicom.dcmread(path)
        for keyword, value in raw.items():
            tag = tag_for_keyword(keyword)
            ds[tag] = DataElement(tag, dictionary_VR(tag), value)
        ds.save_as(path)
    return voxels


@pytest.mark.parametrize("keyword, value", [
    ("ImageOrientationPatient", "0\\0\\0\\0\\0\\0"),
    ("ImageOrientationPatient", "nan\\0\\0\\0\\1\\0"),
    ("ImageOrientationPatient", "1\\0\\0\\1\\0\\0"),  # rows parallel to columns
    ("ImageOrientationPatient", "1\\0\\0\\0.5\\0.5\\0"),  # neither unit nor perpendicular
    ("ImagePositionPatient", "nan\\0\\0"),
    ("ImagePositionPatient", "0\\inf\\0"),
    ("ImagePositionPatient", "0\\0\\1e308"),
])
def test_unusable_geometry_falls_back_to_instance_order_and_says_so(tmp_path, keyword, value):
    voxels = _series(tmp_path, **{keyword: value})
    volume = load_series(tmp_path)
    assert volume.voxels.shape == voxels.shape  # one 3D stack, never 4D or split
    np.testing.assert_array_equal(volume.voxels, voxels)  # instance order
    assert not volume.has_geometry
    assert np.isfinite(volume.affine).all() and np.linalg.det(volume.affine) != 0
    assert any(w.startswith(f"{keyword} ") and "not a usable" in w and "instance number" in w
               for w in volume.warnings), volume.warnings


def test_unusable_orientation_in_the_browser_is_one_stack(tmp_path):
    voxels = _series(tmp_path, ImageOrientationPatient="nan\\nan\\nan\\nan\\nan\\nan")
    (series,) = scan(tmp_path, cache=False).all_series()
    volume = load_series(series)
    np.testing.assert_array_equal(volume.voxels, voxels)
    assert any("ImageOrientationPatient" in w for w in volume.warnings)


@pytest.mark.parametrize("value", ["nan\\nan", "inf\\inf", "1e308\\1e308", "0\\0", "-1\\-1"])
def test_unusable_pixel_spacing_reads_as_pixels_and_says_so(tmp_path, value):
    _series(tmp_path, PixelSpacing=value)
    volume = load_series(tmp_path)
    assert not volume.spacing_known and volume.spacing[1:] == (1.0, 1.0)
    assert any(f"PixelSpacing {value} is not a usable pixel size" in w for w in volume.warnings)


@pytest.mark.parametrize("keyword, value", [
    ("RescaleSlope", "nan"), ("RescaleSlope", "inf"), ("RescaleSlope", "0"),
    ("RescaleSlope", "1e40"), ("RescaleIntercept", "-inf"), ("RescaleIntercept", "nan"),
])
def test_unusable_rescale_shows_stored_values_and_says_so(tmp_path, keyword, value):
    voxels = _series(tmp_path, **{keyword: value})
    volume = load_series(tmp_path)
    np.testing.assert_array_equal(volume.voxels, voxels + 1024)  # stored = HU + 1024
    assert any(f"{keyword} {value.replace('1e40', '1e+40')}" in w and "stored pixel values" in w
               for w in volume.warnings), volume.warnings


def test_a_huge_but_finite_slope_loads_as_float32_like_pydicom(tmp_path):
    """RescaleSlope 1e30 raised OverflowError: the values fit float32, so they load."""
    path = _edited(TEST_FILES / "CT_small.dcm", tmp_path / "slope.dcm", RescaleSlope=1e30)
    volume = load_series(path)
    ds = pydicom.dcmread(path)
    expected = apply_modality_lut(ds.pixel_array, ds)
    assert volume.voxels.dtype == np.float32
    np.testing.assert_allclose(volume.voxels[0], expected, rtol=1e-6)


# -- Modality LUT Sequence against pydicom's apply_modality_lut ----------------------------


def _with_modality_lut(folder: Path, entries: np.ndarray, first: int, bits: int,
                       as_words: bool, signed: bool) -> Path:
    """One 16-bit image whose stored values run from below the table to above it."""
    count = len(entries)
    stored = np.linspace(first - 40, first + count + 40, 24 * 24).round().reshape(1, 24, 24)
    path = syn.write_series(folder, stored.astype(np.int16 if signed else np.uint16),
                            modality="CT", rescale=None, windows=[],
                            PixelRepresentation=int(signed))[0]
    ds = pydicom.dcmread(path)
    for keyword in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
        if keyword in ds:
            delattr(ds, keyword)
    item = pydicom.Dataset()
    item.LUTDescriptor = [count if count < 65536 else 0, first, bits]
    item.ModalityLUTType = "HU"
    if as_words:  # OW: one 16-bit word per entry
        item.add_new(0x00283006, "OW", entries.astype("<u2").tobytes())
    else:
        item.add_new(0x00283006, "US", [int(v) for v in entries])
    ds.ModalityLUTSequence = [item]
    ds.save_as(path)
    return path


@pytest.mark.parametrize("bits, first, as_words, signed", [
    (8, 0, False, False),
    (8, 100, False, False),
    (8, 100, True, False),  # 8-bit entries, each in a 16-bit word
    (16, 0, True, False),
    (16, 1000, True, False),
    (16, -200, False, True),  # signed stored values: first mapped value negative
    (16, -32, True, True),
])
def test_modality_lut_sequence_matches_pydicom(tmp_path, bits, first, as_words, signed):
    rng = np.random.default_rng(bits + abs(first))
    entries = rng.integers(0, 1 << bits, 300)
    path = _with_modality_lut(tmp_path, entries, first, bits, as_words, signed)
    volume = load_series(path)
    ds = pydicom.dcmread(path)
    expected = apply_modality_lut(ds.pixel_array, ds)
    np.testing.assert_array_equal(volume.voxels[0], expected)
    stored = ds.pixel_array
    assert (stored >= first + len(entries)).any()  # above the table: its last entry
    assert (stored < first).any() or stored.min() == first == 0  # below: its first entry


@pytest.mark.parametrize("damage", ["short data", "bad descriptor", "12-bit entries"])
def test_a_broken_modality_lut_shows_stored_values_and_says_so(tmp_path, damage):
    path = _with_modality_lut(tmp_path, np.arange(50) * 3, 0, 16, True, False)
    ds = pydicom.dcmread(path)
    item = ds.ModalityLUTSequence[0]
    if damage == "short data":
        item.LUTData = item.LUTData[:20]
    elif damage == "bad descriptor":
        item.LUTDescriptor = [50, 0]
    else:
        item.LUTDescriptor = [50, 0, 12]
    ds.save_as(path)
    volume = load_series(path)
    np.testing.assert_array_equal(volume.voxels[0], pydicom.dcmread(path).pixel_array)
    assert any("Modality LUT" in w and "stored pixel values" in w for w in volume.warnings)


@pytest.mark.parametrize("damage", ["no entries", "bad descriptor"])
def test_a_broken_voi_lut_uses_the_window_and_says_so(tmp_path, damage):
    path = syn.write_series(tmp_path, np.zeros((1, 16, 16), np.int16))[0]
    ds = pydicom.dcmread(path)
    item = pydicom.Dataset()
    item.LUTDescriptor = [0, 0] if damage == "bad descriptor" else [4, 0, 16]
    item.add_new(0x00283006, "OW", b"" if damage == "no entries" else b"\0\1" * 4)
    ds.VOILUTSequence = [item]
    ds.save_as(path)
    volume = load_series(path)
    assert volume.voi_lut is None and volume.windows
    assert any("VOI LUT" in w and "window" in w for w in volume.warnings)


def _with_unknown_vr(source: Path, target: Path, tag: bytes) -> Path:
    """Explicit VR file whose element `tag` (little-endian group, element) claims VR 'ZZ'."""
    data = source.read_bytes()
    at = data.index(tag) + 4
    target.write_bytes(data[:at] + b"ZZ" + data[at + 2:])
    return target


def test_an_element_with_an_unknown_vr_is_ignored_and_named(tmp_path):
    """NotImplementedError: Unknown Value Representation escaped from header_windows."""
    source = syn.write_series(tmp_path / "src", np.zeros((1, 16, 16), np.int16))[0]
    path = _with_unknown_vr(source, tmp_path / "badvr.dcm", b"\x28\x00\x50\x10DS")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        volume = load_series(path)
    assert volume.voxels.shape == (1, 16, 16)
    assert any("(0028,1050)" in w and "ignored" in w for w in volume.warnings)


def _unknown_vr_variants(name: str) -> list[tuple[str, bytes]]:
    """(tag, file bytes) with that element's VR replaced by 'ZZ', one per element pydicom
    lists (nested ones too: ultrasound regions, functional groups), text and number VRs."""
    data = (TEST_FILES / name).read_bytes()
    variants = []
    for elem in pydicom.dcmread(TEST_FILES / name).iterall():
        if elem.VR in ("OB", "OW", "SQ", "UN", "UT", "OF", "OD", "OL"):
            continue
        at = data.find(elem.tag.group.to_bytes(2, "little") + elem.tag.element.to_bytes(2, "little")
                       + elem.VR.encode())
        if at >= 0:
            variants.append((str(elem.tag), data[:at + 4] + b"ZZ" + data[at + 6:]))
    return variants


@pytest.mark.parametrize("name", ["examples_palette.dcm", "CT_small.dcm", "JPEG2000.dcm"])
def test_any_element_with_an_unknown_vr_loads_or_is_a_dicom_error(tmp_path, name):
    variants = _unknown_vr_variants(name)
    assert len(variants) > 20  # the mutation found its elements
    loaded = 0
    for tag, data in variants:
        path = tmp_path / f"{tag.strip('()').replace(',', '')}.dcm"
        path.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                load_series(path)
                loaded += 1
            except DicomError:
                pass  # a clean refusal; anything else fails the test with its traceback
    assert loaded > len(variants) // 2  # most damage is to elements the image does not need


@pytest.mark.parametrize("sequence, keyword, value", [
    ("PlaneOrientationSequence", "ImageOrientationPatient", [0.0] * 6),
    ("PlanePositionSequence", "ImagePositionPatient", [float("nan"), 0.0, 0.0]),
    ("PixelValueTransformationSequence", "RescaleSlope", float("inf")),
])
def test_enhanced_functional_groups_with_unusable_values_fall_back(tmp_path, sequence, keyword,
                                                                   value):
    voxels = np.random.default_rng(3).integers(-500, 500, (5, 16, 16)).astype(np.int16)
    path = syn.write_multiframe(tmp_path, voxels, spacing=(2.0, 0.8, 0.8), rescale=(1.0, 0.0))
    ds = pydicom.dcmread(path)
    for group in ds.PerFrameFunctionalGroupsSequence:  # every frame's own value is the bad one
        item = pydicom.Dataset()
        setattr(item, keyword, value)
        group[tag_for_keyword(sequence)] = DataElement(tag_for_keyword(sequence), "SQ", [item])
    ds.save_as(path)
    volume = load_series(path)
    assert volume.voxels.shape == voxels.shape
    np.testing.assert_array_equal(volume.voxels, voxels)  # frame order, stored = modality here
    assert any(w.startswith(keyword) and "not a usable" in w for w in volume.warnings)


@pytest.mark.parametrize("keyword, text", [
    ("NumberOfFrames", b"inf "), ("InstanceNumber", b"inf "), ("SeriesNumber", b"-inf"),
    ("NumberOfFrames", b"9e99"),
])
def test_an_integer_string_that_is_no_integer_loads_or_is_refused(tmp_path, keyword, text):
    """IS 'inf' raised OverflowError in the header reader (scan and load)."""
    path = _edited(TEST_FILES / "CT_small.dcm", tmp_path / "is.dcm", **{keyword: "1234"})
    tag = tag_for_keyword(keyword)
    key = tag.to_bytes(4, "big")[:2][::-1] + tag.to_bytes(4, "big")[2:][::-1] + b"IS\x04\x001234"
    data = path.read_bytes()
    at = data.index(key) + 8
    path.write_bytes(data[:at] + text + data[at + 4:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = scan(tmp_path, cache=False)
        assert not result.problems, result.problems
        try:
            volume = load_series(result.all_series()[0])
        except DicomError as exc:
            assert text == b"9e99" and "frames" in exc.reason
            return
    original = pydicom.dcmread(TEST_FILES / "CT_small.dcm")  # same pixels, sound header
    np.testing.assert_array_equal(volume.voxels[0],
                                  apply_modality_lut(original.pixel_array, original))


@pytest.mark.parametrize("keyword", ["SliceThickness", "SpacingBetweenSlices"])
@pytest.mark.parametrize("value", ["inf", "nan", "1e308"])
def test_an_unusable_slice_step_is_not_taken_into_the_affine(tmp_path, keyword, value):
    path = _edited(TEST_FILES / "CT_small.dcm", tmp_path / "one.dcm")
    ds = pydicom.dcmread(path)
    tag = tag_for_keyword(keyword)
    ds[tag] = DataElement(tag, "DS", value)
    ds.save_as(path)
    volume = load_series(path)
    assert np.isfinite(volume.affine).all() and volume.spacing[0] <= 1000


def _codestream_claims(source: str, target: Path, rows: int, columns: int) -> Path:
    """A bundled JPEG / JPEG 2000 file whose codestream header (SIZ or SOF) claims another
    size than the DICOM header: one flipped byte there asked a decoder for 7 GB."""
    data = bytearray((TEST_FILES / source).read_bytes())
    at = data.find(b"\xff\x4f\xff\x51")
    if at >= 0:  # JPEG 2000 SIZ: Xsiz, Ysiz (origin offsets stay 0)
        data[at + 8:at + 16] = columns.to_bytes(4, "big") + rows.to_bytes(4, "big")
    else:  # JPEG SOF: rows, columns after the precision byte
        at = next(data.find(bytes([0xFF, m])) for m in (0xC0, 0xC1, 0xC3)
                  if data.find(bytes([0xFF, m])) >= 0)
        data[at + 5:at + 9] = rows.to_bytes(2, "big") + columns.to_bytes(2, "big")
    target.write_bytes(bytes(data))
    return target


def test_a_codestream_larger_than_its_header_is_refused_before_decoding(tmp_path):
    paths = [_codestream_claims("examples_jpeg2k.dcm", tmp_path / "j2k.dcm", 480, 5_309_056),
             _codestream_claims("JPGExtended.dcm", tmp_path / "jpeg.dcm", 65535, 65535)]
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
    done = subprocess.run([sys.executable, "-c", limit + _MEASURE, *map(str, paths)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    for path in paths:
        result = results[str(path)]
        assert result["reason"] and "but the header declares" in result["reason"], result
        assert result["seconds"] < 1.0 and result["peak_mb"] - results["base_mb"] < 100, result


def test_a_corrupt_rle_segment_that_panics_the_decoder_is_a_dicom_error(tmp_path):
    """pylibjpeg-rle's Rust code panics (PanicException, a BaseException) on this byte."""
    data = bytearray((TEST_FILES / "MR_small_RLE.dcm").read_bytes())
    data[1814] = 156
    path = tmp_path / "rle.dcm"
    path.write_bytes(bytes(data))
    with pytest.raises(DicomError, match="RLE image data is corrupt"):
        load_series(path)


# -- found by the fuzz suite (tests/fuzz/runner.py) ------------------------------------------


@pytest.mark.parametrize("source, keyword, value", [
    ("SC_rgb_rle_16bit_2frame.dcm", "Columns", 1),  # pydicom's decoder: "padding"
    ("MR_small_RLE.dcm", "Rows", 3),  # our own RLE path
])
def test_an_rle_image_larger_than_its_header_is_refused(tmp_path, source, keyword, value):
    path = _edited(TEST_FILES / source, tmp_path / "rle.dcm", **{keyword: value})
    with pytest.raises(DicomError, match="RLE image data holds .* pixels per plane"):
        load_series(path)


def test_native_pixel_data_longer_than_its_header_says_so(tmp_path):
    """One file of a series with Columns 7 (its 32 x 32 pixels kept) loaded a skewed image."""
    syn.write_series(tmp_path, np.zeros((1, 32, 32), np.int16))
    path = next(tmp_path.glob("*.dcm"))
    _edited(path, path, Columns=7)
    (series,) = scan(tmp_path, cache=False).all_series()
    volume = load_series(series)
    assert any("pixel data holds 2,048 bytes" in w and "32 x 7" in w and "damaged" in w
               for w in volume.warnings), volume.warnings


@pytest.mark.parametrize("value", ["0", "abc"])
def test_a_frame_count_that_is_no_count_says_only_the_first_frame_is_shown(tmp_path, value):
    path = TEST_FILES / "rtdose_rle.dcm"
    target = tmp_path / "dose.dcm"
    ds = pydicom.dcmread(path)
    ds[0x00280008] = DataElement(0x00280008, "IS", "1")
    ds[0x00280008]._value = value  # written as it stands, as a damaged file holds it
    ds.save_as(target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        volume = load_series(target)
    assert volume.voxels.shape[0] == 1
    assert any("NumberOfFrames" in w and "first frame" in w or "(0028,0008)" in w
               for w in volume.warnings), volume.warnings


def test_one_image_with_an_unusable_pixel_spacing_is_named(tmp_path):
    voxels = np.zeros((3, 16, 16), np.int16)
    paths = syn.write_series(tmp_path, voxels, spacing=(2.0, 0.8, 0.8))
    ds = pydicom.dcmread(paths[2])
    ds[0x00280030] = DataElement(0x00280030, "DS", "nan\\nan")
    ds.save_as(paths[2])
    volume = load_series(tmp_path)
    assert volume.spacing[1:] == pytest.approx((0.8, 0.8))
    assert any("PixelSpacing of 1 image(s)" in w and paths[2].name in w
               for w in volume.warnings), volume.warnings


@pytest.mark.parametrize("descriptor, data", [
    ([40, 0, 16], b"\0\1" * 10),  # fewer entries than the descriptor says
    ([4, 0, 40], b"\0\1" * 4),  # 40 bits per entry
    ([4, 0, 0], b"\0\1" * 4),
])
def test_a_voi_lut_shorter_or_wider_than_allowed_uses_the_window(tmp_path, descriptor, data):
    path = syn.write_series(tmp_path, np.zeros((1, 16, 16), np.int16))[0]
    ds = pydicom.dcmread(path)
    item = pydicom.Dataset()
    item.LUTDescriptor = descriptor
    item.add_new(0x00283006, "OW", data)
    ds.VOILUTSequence = [item]
    ds.save_as(path)
    volume = load_series(path)
    assert volume.voi_lut is None and volume.windows
    assert any("VOI LUT" in w and "window" in w for w in volume.warnings)


@pytest.mark.parametrize("source, tag, vr", [
    ("SC_rgb_rle_16bit_2frame.dcm", b"\x28\x00\x02\x00US", b"AT"),  # SamplesPerPixel a list
    ("SC_rgb_dcmtk_+eb+cy+s4.dcm", b"\x28\x00\x02\x00US", b"IS"),  # SamplesPerPixel text
    ("SC_rgb_jpeg_app14_dcmd.dcm", b"\x28\x00\x11\x00US", b"UL"),  # Columns unreadable
])
def test_an_image_size_of_the_wrong_vr_is_a_damaged_header(tmp_path, source, tag, vr):
    data = (TEST_FILES / source).read_bytes()
    at = data.index(tag) + 4
    path = tmp_path / "vr.dcm"
    path.write_bytes(data[:at] + vr + data[at + 2:])
    with warnings.catch_warnings(), pytest.raises(DicomError, match="not a whole number"):
        warnings.simplefilter("ignore")
        load_series(path)


def test_an_image_file_cut_short_in_its_header_is_named_by_a_folder_load(tmp_path):
    """Cut between two header elements, a CT file read as a non-image object and a folder
    load dropped it without a word (the scan reported it): the fuzz suite's truncation."""
    paths = syn.write_series(tmp_path, np.zeros((3, 16, 16), np.int16))
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[:data.index(b"\x10\x00\x40\x00CS")])  # before PatientSex
    volume = load_series(tmp_path)
    assert volume.voxels.shape[0] == 2
    assert any(f"{paths[1].name} skipped" in w and "no pixel data" in w
               for w in volume.warnings), volume.warnings


def test_an_ultrasound_calibration_of_the_wrong_vr_is_no_calibration(tmp_path):
    """PhysicalDeltaY (FD) read as IS text raised ValueError from float() (fuzz suite)."""
    data = (TEST_FILES / "examples_ybr_color.dcm").read_bytes()
    at = data.index(b"\x18\x00\x2e\x60FD") + 4
    path = tmp_path / "us.dcm"
    path.write_bytes(data[:at] + b"IS" + data[at + 2:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        volume = load_series(path)
    assert not volume.spacing_known


def test_a_character_set_holding_a_nul_byte_reads_as_the_default(tmp_path):
    """SpecificCharacterSet 'ISO_IR\\0100': codecs.lookup raised ValueError (fuzz suite)."""
    path = syn.write_series(tmp_path, np.zeros((1, 16, 16), np.int16),
                            SpecificCharacterSet="ISO_IR 100")[0]
    data = path.read_bytes()
    path.write_bytes(data.replace(b"ISO_IR 100", b"ISO_IR\x00100", 1))
    from medviewer.core.dicom import headers

    assert headers.read_instance(path).rows == 16  # the header reader reads it as default
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # pydicom's own reader refuses the term: a DicomError, not a ValueError
            load_series(path)
        except DicomError as exc:
            assert exc.reason
