"""Siemens mosaic images (one MR image holding a grid of slices) load as their slices, 3D or
4D, with the geometry dcm2niix gives; checked against dcm2niix itself when it is installed."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from medviewer.core.dicom import scan
from medviewer.core.dicom.mosaic import csa_fields
from medviewer.core.dicom.volume import SeriesLoader, load_series
from tests.core.mosaic_files import (
    AXIAL,
    CORONAL,
    SAGITTAL,
    csa_header,
    mosaic_volumes,
    write_mosaics,
)


def _oblique() -> tuple[float, ...]:
    row = np.array([0.9848, 0.1736, 0.0])
    column = np.array([-0.1563, 0.8863, 0.4358])
    column -= row * (row @ column)
    return (*row / np.linalg.norm(row), *column / np.linalg.norm(column))


# -- reading dcm2niix's answer ------------------------------------------------------------------

_NIFTI_TYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 512: "u2", 768: "u4"}


def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(data indexed [i, j, k, t], sform: (i, j, k, 1) -> RAS mm) of an uncompressed NIfTI-1."""
    raw = path.read_bytes()
    dims = struct.unpack_from("<8h", raw, 40)
    dtype = "<" + _NIFTI_TYPES[struct.unpack_from("<h", raw, 70)[0]]
    offset = int(struct.unpack_from("<f", raw, 108)[0])
    sform = np.eye(4)
    sform[:3] = np.array(struct.unpack_from("<12f", raw, 280)).reshape(3, 4)
    shape = dims[1:1 + dims[0]]
    data = np.frombuffer(raw, dtype, int(np.prod(shape)), offset).reshape(shape, order="F")
    return data, sform


def _dcm2niix(folder: Path, out: Path) -> tuple[np.ndarray, np.ndarray]:
    out.mkdir()
    subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "mosaic", "-o", str(out),
                    str(folder)], check=True, capture_output=True, timeout=60)
    return _read_nifti(out / "mosaic.nii")


def _voxel_centres(volume) -> np.ndarray:
    """(4, n) homogeneous (column, row, slice) indices of every voxel of one time point."""
    slices, rows, columns = volume.voxels.shape[-3:]
    k, r, c = np.meshgrid(range(slices), range(rows), range(columns), indexing="ij")
    return np.stack([c.ravel(), r.ravel(), k.ravel(), np.ones(c.size)])


# -- tests ---------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="dcm2niix is not installed")
@pytest.mark.parametrize("orientation,flip", [(AXIAL, False), (AXIAL, True), (SAGITTAL, True),
                                              (CORONAL, False), (_oblique(), False)],
                         ids=["axial", "axial-flipped", "sagittal-flipped", "coronal",
                              "oblique"])
def test_mosaic_geometry_matches_dcm2niix(tmp_path: Path, orientation, flip: bool) -> None:
    """Every voxel of the loaded 4D volume lies where dcm2niix puts the same value."""
    volumes = mosaic_volumes(3, 10)
    write_mosaics(tmp_path / "dicom", volumes, orientation=orientation, flip_normal=flip)
    data, sform = _dcm2niix(tmp_path / "dicom", tmp_path / "nifti")
    volume = load_series(tmp_path / "dicom")
    assert volume.is_4d and volume.voxels.shape == (3, 10, 6, 8)
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    ijk = (np.linalg.inv(sform) @ lps_to_ras @ volume.affine @ _voxel_centres(volume))[:3]
    assert np.abs(ijk - np.rint(ijk)).max() < 0.01  # the same grid, voxel for voxel
    i, j, k = np.rint(ijk).astype(int)
    for t in range(3):
        np.testing.assert_array_equal(data[i, j, k, t], volume.voxels[t].reshape(-1))


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                                    ExplicitVRBigEndian], ids=["explicit", "implicit", "big"])
@pytest.mark.parametrize("flip", [False, True], ids=["normal", "flipped-normal"])
def test_mosaic_slices_by_hand(tmp_path: Path, syntax: str, flip: bool) -> None:
    """Tile k at the hand-computed position, sorted along the orientation's normal; 10 slices
    in a 4 x 4 grid (six empty tiles), in every native transfer syntax."""
    volumes = mosaic_volumes(1, 10)
    first = np.array([-100.0, -90.0, -20.0])
    write_mosaics(tmp_path, volumes, first=first, spacing=(3.0, 2.0, 2.5), flip_normal=flip,
                  syntax=syntax)
    volume = load_series(tmp_path)
    expected = volumes[0, ::-1] if flip else volumes[0]  # flipped: tile 0 is the highest
    np.testing.assert_array_equal(volume.voxels, expected)
    lowest = first + (-9 * 3.0 if flip else 0.0) * np.array([0, 0, 1.0])
    np.testing.assert_allclose(volume.affine[:3, 3], lowest, atol=1e-4)
    np.testing.assert_allclose(volume.affine[:3, :3], np.diag([2.5, 2.0, 3.0]), atol=1e-6)
    assert volume.has_geometry and not volume.warnings


def test_mosaic_series_in_the_browser_is_4d(tmp_path: Path) -> None:
    volumes = mosaic_volumes(4, 9, rows=5, columns=7)  # a 3 x 3 grid, four time points
    paths = write_mosaics(tmp_path, volumes)
    result = scan(tmp_path)
    assert not result.problems
    (series,) = result.all_series()
    assert len(series.instances) == 4 and series.image_count == 36
    assert all(i.mosaic_images == 9 for i in series.instances)
    loader = SeriesLoader(series)
    assert loader.shape == (4, 9, 5, 7)
    volume = loader.load()
    np.testing.assert_array_equal(volume.voxels, volumes)
    np.testing.assert_array_equal(loader.read_slice(6, 2), volumes[2, 6])  # preview path
    source = volume.source(6, 2)
    assert source is not None and Path(source.path) == paths[2] and source.tile == (10, 0, 5, 7)


def test_not_a_mosaic_keeps_its_picture(tmp_path: Path) -> None:
    """A Siemens image with a CSA header but no MOSAIC in ImageType stays one image."""
    volumes = mosaic_volumes(1, 4)
    write_mosaics(tmp_path, volumes, image_type="NORM")
    (series,) = scan(tmp_path).all_series()
    assert series.image_count == 1
    volume = load_series(series)
    assert volume.voxels.shape == (1, 12, 16)


def test_csa_reader_reads_what_siemens_writes() -> None:
    data = csa_header({"NumberOfImagesInMosaic": ("US", ["36"]),
                       "SliceNormalVector": ("FD", ["0.0", "-0.5", "0.8660254"]),
                       "Empty": ("IS", [])})
    assert csa_fields(data) == {"NumberOfImagesInMosaic": ["36"],
                                "SliceNormalVector": ["0.0", "-0.5", "0.8660254"], "Empty": []}
    assert csa_fields(data[:40]) == {}  # cut short: nothing, no exception
    assert csa_fields(b"not a CSA header") == {}
