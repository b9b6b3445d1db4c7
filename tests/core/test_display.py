"""Display mapping: windows from the header, LINEAR / LINEAR_EXACT / SIGMOID, VOI LUT, invert."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_voi_lut

from medviewer.core import synthetic as syn
from medviewer.core.dicom.volume import load_series
from medviewer.core.display import (
    CT_PRESETS,
    Window,
    default_window,
    to_display,
    windows_from_dataset,
)


def _ds(**values) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def _pydicom_reference(frame: np.ndarray, window: Window) -> np.ndarray:
    ds = _ds(WindowCenter=window.center, WindowWidth=window.width, VOILUTFunction=window.function,
             PhotometricInterpretation="MONOCHROME2", BitsStored=16, PixelRepresentation=1)
    out = apply_voi_lut(frame.astype(np.float64), ds)  # returns values on the stored range
    lo, hi = -(2**15), 2**15 - 1
    return (out - lo) / (hi - lo) * 255.0


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize("center,width", [(40, 400), (-600, 1500), (0.5, 1), (100, 2)])
def test_window_functions_match_pydicom(function: str, center: float, width: float) -> None:
    frame = np.arange(-2048, 2048, dtype=np.int16).reshape(64, 64)
    window = Window(center, width, function=function)
    ours = to_display(frame, window).astype(float)
    ref = _pydicom_reference(frame, window)
    assert np.abs(ours - ref).max() <= 1.0


def test_float_frames_use_the_same_curve() -> None:
    frame = np.linspace(-1000, 1000, 400, dtype=np.float32).reshape(20, 20)
    ints = np.round(frame).astype(np.int16)
    window = Window(50, 350)
    assert np.abs(to_display(frame, window).astype(int) - to_display(ints, window)).max() <= 1


def test_windows_from_dataset_keeps_every_value_and_explanation() -> None:
    ds = _ds(WindowCenter=[40, -600], WindowWidth=[400, 1500],
             WindowCenterWidthExplanation=["MEDIASTINUM", "LUNG"], VOILUTFunction="SIGMOID")
    windows = windows_from_dataset(ds)
    assert windows == [Window(40, 400, "MEDIASTINUM", "SIGMOID"),
                       Window(-600, 1500, "LUNG", "SIGMOID")]
    assert windows_from_dataset(_ds(WindowCenter=50, WindowWidth=350)) == [Window(50, 350)]
    assert windows_from_dataset(_ds()) == []


def test_volume_windows_come_from_the_header(tmp_path: Path) -> None:
    syn.write_series(tmp_path, np.zeros((2, 8, 8), np.int16), windows=[(40, 80, "BRAIN")])
    volume = load_series(tmp_path)
    assert volume.windows == [Window(40, 80, "BRAIN")]
    assert default_window(volume, volume.windows) == Window(40, 80, "BRAIN")


def test_default_window_without_header_is_robust_to_outliers() -> None:
    rng = np.random.default_rng(0)
    vol = rng.normal(100, 10, (5, 64, 64)).astype(np.int16)
    vol[2, 0, 0] = 30000  # one hot pixel must not flatten the picture
    window = default_window(vol, [])
    assert 90 < window.center < 110 and 20 < window.width < 80


def test_invert_for_monochrome1() -> None:
    frame = np.array([[0, 100, 200]], dtype=np.uint16)
    window = Window(100, 200)
    np.testing.assert_array_equal(to_display(frame, window, invert=True),
                                  255 - to_display(frame, window))


def test_voi_lut_sequence_matches_pydicom() -> None:
    path = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
    ds = pydicom.dcmread(path)
    lut = np.linspace(0, 4095, 2048).astype(np.uint16)
    item = Dataset()
    item.LUTDescriptor = [2048, -1024, 12]
    item.LUTData = lut.tolist()
    ds.VOILUTSequence = [item]
    for keyword in ("WindowCenter", "WindowWidth"):
        if keyword in ds:
            delattr(ds, keyword)
    hu = ds.pixel_array.astype(np.int16) + np.int16(ds.RescaleIntercept)
    ours = to_display(hu, Window(0, 1), voi_lut=lut, voi_lut_first=-1024).astype(float)
    ref = apply_voi_lut(hu, ds).astype(float) * 255.0 / 4095.0
    assert np.abs(ours - ref).max() <= 1.0


def test_ct_presets_and_the_cached_table_give_the_same_image() -> None:
    """The speed of this mapping is measured by benchmarks/bench_render.py, not asserted."""
    for name in ("brain", "lung", "mediastinum", "abdomen", "bone"):
        assert CT_PRESETS[name].width > 0
    frame = np.random.default_rng(1).integers(-1024, 3000, (512, 512)).astype(np.int16)
    first = to_display(frame, CT_PRESETS["lung"])  # builds and caches the table
    out = to_display(frame, CT_PRESETS["lung"])  # from the cached table
    assert out.dtype == np.uint8 and out.shape == frame.shape
    np.testing.assert_array_equal(out, first)
