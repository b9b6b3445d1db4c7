"""Pixel formats real scanners and tools write: Float / Double Float Pixel Data (parametric
maps such as ADC) and PALETTE COLOR images in Explicit VR Big Endian."""

from __future__ import annotations

import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medviewer.core import synthetic as syn
from medviewer.core.dicom import scan
from medviewer.core.dicom.volume import load_series


def _adc(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """ADC-like values in mm^2/s: fractions an integer type would lose."""
    return (np.random.default_rng(seed).random(shape) * 3e-3).astype(np.float32)


def _parametric_map(folder: Path, values: np.ndarray) -> tuple[Path, np.ndarray]:
    """A Parametric Map written by highdicom over a synthetic CT: (its path, the CT affine)."""
    sources_dir = folder / "ct"
    paths = syn.write_series(sources_dir, np.zeros(values.shape, np.int16),
                             spacing=(2.5, 0.7, 0.8), origin=(-10, 20, 30))
    sources = [pydicom.dcmread(p) for p in sorted(paths)]
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="ADC", lut_explanation="Apparent diffusion coefficient",
        unit=hd.sr.CodedConcept("mm2/s", "UCUM", "mm2/s"), value_range=(0.0, 1.0),
        slope=1, intercept=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = hd.pm.ParametricMap(
            source_images=sources, pixel_array=values, series_instance_uid=hd.UID(),
            series_number=90, sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer="MedViewer tests", manufacturer_model_name="pm",
            software_versions="1", device_serial_number="1",
            contains_recognizable_visual_features=False, real_world_value_mappings=[mapping],
            voi_lut_transformations=[hd.VOILUTTransformation(window_center=1.5e-3,
                                                             window_width=3e-3)])
    out = folder / "pm" / "adc.dcm"
    out.parent.mkdir()
    pm.save_as(out)
    return out, load_series(sources_dir).affine


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float", "double"])
def test_parametric_map_loads_its_float_values(tmp_path: Path, dtype: type) -> None:
    values = _adc((4, 12, 10)).astype(dtype)
    path, ct_affine = _parametric_map(tmp_path, values)
    keyword = "FloatPixelData" if dtype == np.float32 else "DoubleFloatPixelData"
    assert keyword in pydicom.dcmread(path)
    result = scan(path.parent)
    assert not result.problems
    (series,) = result.all_series()
    for source in (path, series):  # opened as a file, and from the browser's scanned index
        volume = load_series(source)
        assert volume.voxels.dtype == dtype  # kept as stored, no integer rescale
        np.testing.assert_array_equal(volume.voxels, values)
        np.testing.assert_allclose(volume.affine, ct_affine, atol=1e-6)
        assert not volume.bad_slices
        (window,) = volume.windows  # 1.5e-3 / 3e-3 mm2/s: too narrow for LINEAR's w >= 1
        assert (window.center, window.width, window.function) == \
            (pytest.approx(1.5e-3), pytest.approx(3e-3), "LINEAR_EXACT")


def _float_image(path: Path, frames: np.ndarray, syntax: str, *, double: bool) -> None:
    """A classic float image (one or several frames) as pydicom writes it."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.30"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = pydicom.uid.generate_uid(), \
        pydicom.uid.generate_uid()
    ds.Modality, ds.PatientID = "MR", "FLOAT"
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.NumberOfFrames = len(frames)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = 64 if double else 32
    order = "<" if pydicom.uid.UID(syntax).is_little_endian else ">"
    data = frames.astype(f"{order}f{8 if double else 4}").tobytes()
    if double:
        ds.DoubleFloatPixelData = data
    else:
        ds.FloatPixelData = data
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                                    ExplicitVRBigEndian], ids=["explicit", "implicit", "big"])
@pytest.mark.parametrize("double", [False, True], ids=["float", "double"])
@pytest.mark.parametrize("count", [1, 3], ids=["single", "multi"])
def test_float_images_in_every_native_syntax(tmp_path: Path, syntax: str, double: bool,
                                             count: int) -> None:
    frames = _adc((count, 9, 7), seed=count)
    path = tmp_path / "float.dcm"
    _float_image(path, frames, syntax, double=double)
    (series,) = scan(tmp_path).all_series()
    for source in (path, series):
        volume = load_series(source)
        np.testing.assert_array_equal(volume.voxels, frames.astype(volume.voxels.dtype))
        assert volume.voxels.dtype == (np.float64 if double else np.float32)


# -- PALETTE COLOR in Explicit VR Big Endian ---------------------------------------------------


def _as_big_endian(source: Path, target: Path) -> None:
    """Re-encode a little-endian file in Explicit VR Big Endian the way a big-endian writer
    does: every OW value (pixels, palette LUT data) as 16-bit words in big-endian order."""
    ds = pydicom.dcmread(source)
    for element in ds.iterall():
        if element.VR == "OW" and isinstance(element.value, bytes):
            element.value = np.frombuffer(element.value, "<u2").astype(">u2").tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    pydicom.dcmwrite(target, ds)


def _palette_files(tmp_path: Path) -> list[Path]:
    bundled = Path(get_testdata_file("examples_palette.dcm"))  # 8-bit indices, 16-bit LUTs
    yy, xx = np.mgrid[0:40, 0:50]
    wide = syn.write_palette(tmp_path / "wide", (yy * 50 + xx).astype(np.uint16) % 4096,
                             syn.hot_iron_palette(4096))  # 16-bit indices into 4096 entries
    return [bundled, wide]


def test_big_endian_palette_decodes_like_little_endian(tmp_path: Path) -> None:
    for k, little in enumerate(_palette_files(tmp_path)):
        big = tmp_path / f"big{k}.dcm"
        _as_big_endian(little, big)
        assert pydicom.dcmread(big).file_meta.TransferSyntaxUID == ExplicitVRBigEndian
        expected = load_series(little).voxels
        assert expected.max() > 0  # the reference is not black itself
        decoded = load_series(big).voxels
        assert decoded.shape == expected.shape
        np.testing.assert_array_equal(decoded, expected)


def test_big_endian_voi_lut_reads_like_little_endian(tmp_path: Path) -> None:
    """A VOI LUT Sequence whose LUT Data is OW: 16-bit words in the file's byte order too."""
    hu = np.random.default_rng(5).integers(-1000, 1000, (1, 24, 20)).astype(np.int16)
    (little,) = syn.write_series(tmp_path / "le", hu, spacing=(2.0, 0.8, 0.8))
    ds = pydicom.dcmread(little)
    table = np.linspace(0, 4095, 2048).astype(np.uint16)
    item = Dataset()
    item.add_new(0x00283002, "SS", [2048, -1024, 12])  # LUT Descriptor: first value -1024
    item.add_new(0x00283006, "OW", table.astype("<u2").tobytes())  # LUT Data
    ds.VOILUTSequence = [item]
    ds.save_as(little)
    big = tmp_path / "be.dcm"
    _as_big_endian(little, big)
    for path in (little, big):
        volume = load_series(path)
        np.testing.assert_array_equal(volume.voi_lut, table)
        assert volume.voi_lut_first == -1024
        np.testing.assert_array_equal(volume.voxels, hu)
