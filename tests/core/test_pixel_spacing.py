"""A pixel spacing of 0\\0, a negative or a missing one reads as pixels, with a note; a valid
ImagerPixelSpacing or PixelSpacing gives millimetres."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

import medviewer.core.synthetic as syn
from medviewer.core import geometry
from medviewer.core.dicom import load_series


def _film(tmp_path: Path, **spacings: object) -> Path:
    path, _ = syn.write_chest_xray(tmp_path, size=32)
    ds = pydicom.dcmread(path)
    for keyword, value in spacings.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)
    return path


@pytest.mark.parametrize("stated", [["0", "0"], [-0.2, -0.2], [0.2, 0.0]])
def test_an_unusable_pixel_spacing_reads_as_pixels_and_says_so(tmp_path, stated):
    volume = load_series(_film(tmp_path, PixelSpacing=stated, ImagerPixelSpacing=None))
    assert not volume.spacing_known
    assert volume.spacing[1:] == (1.0, 1.0)
    assert np.linalg.det(volume.affine) != 0  # every axis has a size: views can divide by it
    plane = geometry.plane_view(volume.voxels.shape, volume.affine, "axial")
    assert plane.axes == (0, 1, 2) and plane.flips == (False, False)  # shown as stored
    assert any("is not a usable pixel size: measurements are in pixels" in w
               for w in volume.warnings)


def test_an_unusable_pixel_spacing_falls_back_to_the_detector_spacing(tmp_path):
    volume = load_series(_film(tmp_path, PixelSpacing=["0", "0"], ImagerPixelSpacing=[0.2, 0.3]))
    assert volume.spacing_known and volume.spacing[1:] == pytest.approx((0.2, 0.3))
    assert any("ImagerPixelSpacing" in w for w in volume.warnings)
