"""NIfTI out of the loader: voxels land on the patient coordinates the DICOM gives them."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from medviewer.core import synthetic
from medviewer.core.dataset.nifti import contiguous_labels, nifti_bytes, write_nifti
from medviewer.core.dicom import load_series
from medviewer.core.synthetic.writer import Geometry

SHAPE = (5, 7, 9)  # slices, rows, columns: all different, so a swapped axis shows
GEOMETRIES = {
    "axial": dict(spacing=(2.5, 0.8, 0.6), orientation=(1, 0, 0, 0, 1, 0)),
    "oblique": dict(spacing=(3.0, 0.7, 0.9), orientation=synthetic.oblique(25)),
    "flipped": dict(spacing=(2.0, 1.1, 0.5), orientation=(-1, 0, 0, 0, 0, -1),
                    origin=(40.0, -12.0, 30.0)),
}
PROBES = [(0, 0, 0), (8, 0, 0), (0, 6, 0), (0, 0, 4), (8, 6, 4), (3, 2, 1)]  # (col, row, slice)


def _series(folder, name):
    voxels = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)
    geometry = GEOMETRIES[name]
    synthetic.write_series(folder, voxels, modality="MR", rescale=None, shuffle_names=True,
                           **geometry)
    truth = Geometry(SHAPE, geometry["spacing"], tuple(geometry["orientation"]),
                     geometry.get("origin"))
    return voxels, truth


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_a_voxel_of_the_nifti_lies_where_the_dicom_puts_it(tmp_path, name):
    voxels, truth = _series(tmp_path / "dicom", name)
    volume = load_series(tmp_path / "dicom")
    path = write_nifti(tmp_path / "out" / "image.nii.gz", volume.voxels, volume.affine)
    image = nib.load(path)
    data = np.asarray(image.dataobj)
    assert data.shape == SHAPE[::-1]
    assert image.header.get_qform(coded=True)[1] == 1 and image.header.get_sform(coded=True)[1] == 1
    for col, row, k in PROBES:
        ras = (image.affine @ [col, row, k, 1])[:3]
        lps = truth.to_lps(k, row, col)  # where the writer put the voxel's centre
        np.testing.assert_allclose(ras * [-1, -1, 1], lps, atol=1e-3)
        np.testing.assert_allclose((volume.affine @ [col, row, k, 1])[:3], lps, atol=1e-3)
        assert data[col, row, k] == voxels[k, row, col]


@pytest.mark.parametrize("name", ["oblique", "flipped"])
def test_simpleitk_reads_the_nifti_onto_the_points_it_reads_from_the_dicom(tmp_path, name):
    sitk = pytest.importorskip("SimpleITK")
    _series(tmp_path / "dicom", name)
    volume = load_series(tmp_path / "dicom")
    path = write_nifti(tmp_path / "image.nii.gz", volume.voxels, volume.affine)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "dicom")))
    dicom, nifti = reader.Execute(), sitk.ReadImage(str(path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(nifti), sitk.GetArrayFromImage(dicom))
    for index in PROBES:
        np.testing.assert_allclose(nifti.TransformIndexToPhysicalPoint(index),
                                   dicom.TransformIndexToPhysicalPoint(index), atol=1e-3)


def test_the_same_volume_gives_the_same_bytes(tmp_path):
    voxels = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    a = write_nifti(tmp_path / "a.nii.gz", voxels, np.eye(4)).read_bytes()
    b = write_nifti(tmp_path / "b.nii.gz", voxels, np.eye(4)).read_bytes()
    assert a == b
    assert gzip.decompress(a) == nifti_bytes(voxels, np.eye(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz", "b.nii.gz"]  # no temp


def test_a_seg_label_map_gets_the_dataset_numbers_of_its_names():
    seg = np.array([[[0, 1, 2, 3]]], dtype=np.uint8)
    out = contiguous_labels(seg, ["background", "liver", "cyst", "spleen"],
                            {"spleen": 1, "liver": 2, "kidney": 3})
    assert out.dtype == np.uint8
    assert out.tolist() == [[[0, 2, 0, 1]]]  # 'cyst' is not in the dataset: background
    wide = contiguous_labels(seg, ["background", "a", "b", "c"],
                             {f"l{i}": i for i in range(1, 300)} | {"a": 299})
    assert wide.dtype == np.uint16 and wide.max() == 299


def test_a_4d_or_colour_array_is_refused_with_a_sentence():
    from medviewer.core.dataset.nifti import NiftiError

    with pytest.raises(NiftiError, match="grey-level volume"):
        nifti_bytes(np.zeros((2, 3, 4, 3), np.uint8), np.eye(4))


@pytest.mark.parametrize("name", ["oblique", "flipped"])
def test_dcm2niix_puts_every_value_where_our_nifti_does(tmp_path, name):
    """dcm2niix, the usual DICOM -> NIfTI converter, as an independent reader: every voxel
    value is unique, so each value's position in its file and in ours must agree in RAS."""
    import shutil
    import subprocess

    dcm2niix = shutil.which("dcm2niix")
    if dcm2niix is None:
        pytest.skip("dcm2niix is not installed")
    _series(tmp_path / "dicom", name)
    volume = load_series(tmp_path / "dicom")
    ours = nib.load(write_nifti(tmp_path / "ours.nii.gz", volume.voxels, volume.affine))
    (tmp_path / "ref").mkdir()
    subprocess.run([dcm2niix, "-z", "y", "-b", "n", "-f", "ref", "-o", str(tmp_path / "ref"),
                    str(tmp_path / "dicom")], check=True, capture_output=True, timeout=60)
    theirs = nib.load(tmp_path / "ref" / "ref.nii.gz")

    def ras_of_values(image):
        data = np.asarray(image.dataobj)
        ijk = np.argwhere(np.ones(data.shape, bool))
        ras = (image.affine @ np.c_[ijk, np.ones(len(ijk))].T)[:3].T
        return ras[np.argsort(data[tuple(ijk.T)], kind="stable")]

    np.testing.assert_allclose(ras_of_values(ours), ras_of_values(theirs), atol=1e-3)
