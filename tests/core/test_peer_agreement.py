"""Our voxels and affine against a peer reader: SimpleITK's ImageSeriesReader (GDCM).

An ML engineer feeding MedViewer volumes to a model trained on SimpleITK / MONAI loaders needs
the same numbers: same voxel values in the same order, same LPS geometry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import RLELossless

import medviewer.core.synthetic as syn
from medviewer.core.dicom import load_series

sitk = pytest.importorskip("SimpleITK")

SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def _sitk_volume(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    affine = np.eye(4)
    affine[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return sitk.GetArrayFromImage(image), affine


@pytest.mark.parametrize("orientation, syntax", [
    (syn.AXIAL, None), (syn.oblique(25), None), (SAGITTAL, None), (syn.oblique(-40), RLELossless),
], ids=["axial", "oblique", "sagittal", "oblique-rle"])
def test_voxels_and_affine_match_simpleitk(tmp_path: Path, orientation, syntax) -> None:
    voxels = np.random.default_rng(3).integers(-1000, 2000, (7, 20, 24)).astype(np.int16)
    extra = {"transfer_syntax": syntax} if syntax else {}
    syn.write_series(tmp_path, voxels, orientation=orientation, spacing=(2.0, 0.7, 0.8),
                     origin=(-50.0, -60.0, 30.0), shuffle_names=True, **extra)
    ours = load_series(tmp_path)
    theirs, affine = _sitk_volume(tmp_path)
    np.testing.assert_array_equal(ours.voxels, theirs)
    np.testing.assert_allclose(ours.affine, affine, atol=1e-4)
