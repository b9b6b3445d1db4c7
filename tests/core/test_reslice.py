"""True MPR planes for oblique acquisitions: a sphere of known size must stay a sphere.

The volume is a 30 degree oblique stack (2 mm slices, 1 mm pixels) holding a 15 mm radius
sphere whose centre lies on the reslice grid: each true plane through the centre must show a
disc of 30 mm diameter (within a voxel), with pure R/L, A/P, S/I edge letters.
"""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.core import geometry, reslice
from medviewer.core.synthetic import AXIAL, CORONAL, SAGITTAL, Geometry, oblique

RADIUS_MM = 15.0
GEOMETRY = Geometry((40, 64, 64), (2.0, 1.0, 1.0), oblique(30))
PURE = {"R", "L", "A", "P", "S", "I"}


def voxel_lps(geom: Geometry) -> np.ndarray:
    """LPS mm of every voxel centre, shape (slices, rows, cols, 3)."""
    s, r, c = np.indices(geom.shape)
    ones = np.ones(s.size)
    lps = geom.affine @ np.stack([c.ravel(), r.ravel(), s.ravel(), ones])
    return lps[:3].T.reshape(*geom.shape, 3)


def sphere_centre(geom: Geometry) -> np.ndarray:
    """A grid point of the true planes near the volume centre (shared by all three planes)."""
    axial = reslice.plane_view_for(geom.shape, geom.affine, "axial")
    k, r, c = (n // 2 for n in axial.shape)
    return axial.to_lps(k, r, c)


def sphere_volume(geom: Geometry = GEOMETRY, inside: int = 1000, outside: int = 0,
                  dtype=np.int16) -> tuple[np.ndarray, np.ndarray]:
    centre = sphere_centre(geom)
    inside_sphere = np.linalg.norm(voxel_lps(geom) - centre, axis=-1) <= RADIUS_MM
    return np.where(inside_sphere, inside, outside).astype(dtype), centre


@pytest.mark.parametrize("orientation", [AXIAL, CORONAL, SAGITTAL])
def test_aligned_acquisitions_are_not_oblique(orientation):
    affine = Geometry((8, 8, 8), (3.0, 0.7, 0.7), orientation).affine
    assert not reslice.is_oblique(affine)
    flipped = affine @ np.diag([-1.0, 1.0, -1.0, 1.0])  # reversed axes are still aligned
    assert not reslice.is_oblique(flipped)


@pytest.mark.parametrize("degrees", [0.5, 10, 25, 30, 45])
def test_tilted_acquisitions_are_oblique(degrees):
    assert reslice.is_oblique(Geometry((8, 8, 8), orientation=oblique(degrees)).affine)


@pytest.mark.parametrize("plane", geometry.PLANES)
def test_aligned_volume_keeps_the_numpy_view_planes(plane):
    geom = Geometry((6, 10, 12), (2.5, 0.5, 0.5), AXIAL)
    view = reslice.plane_view_for(geom.shape, geom.affine, plane)
    assert isinstance(view, geometry.PlaneView)
    assert view == geometry.plane_view(geom.shape, geom.affine, plane)
    voxels = np.arange(6 * 10 * 12, dtype=np.int16).reshape(geom.shape)
    assert np.shares_memory(view.image(voxels, 2), voxels)  # a view, not a resampled copy


def test_unknown_plane_is_refused():
    with pytest.raises(ValueError, match="unknown plane"):
        reslice.plane_view_for(GEOMETRY.shape, GEOMETRY.affine, "oblique")


@pytest.mark.parametrize("plane", geometry.PLANES)
def test_sphere_shows_a_disc_of_its_diameter_in_every_true_plane(plane):
    voxels, centre = sphere_volume()
    view = reslice.plane_view_for(GEOMETRY.shape, GEOMETRY.affine, plane)
    assert isinstance(view, reslice.ResliceView)
    k, r, c = np.rint(view.from_lps(centre)).astype(int)
    assert np.allclose(view.to_lps(k, r, c), centre)
    disc = view.image(voxels, k) >= 500
    assert disc.shape == view.shape[1:] and disc[r, c]
    width = disc[r].sum() * view.spacing[1]
    height = disc[:, c].sum() * view.spacing[0]
    tolerance = max(GEOMETRY.spacing)
    assert width == pytest.approx(2 * RADIUS_MM, abs=tolerance)
    assert height == pytest.approx(2 * RADIUS_MM, abs=tolerance)
    area = disc.sum() * view.spacing[0] * view.spacing[1]
    assert area == pytest.approx(np.pi * RADIUS_MM**2, rel=0.1)


def test_edge_letters_are_pure_patient_directions():
    expected = {"axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I"),
                "sagittal": ("A", "P", "S", "I")}
    for plane, letters in expected.items():
        view = reslice.plane_view_for(GEOMETRY.shape, GEOMETRY.affine, plane)
        labels = view.edge_labels()
        assert set(labels.values()) <= PURE
        assert (labels["left"], labels["right"], labels["top"], labels["bottom"]) == letters
    oblique_cut = geometry.plane_view(GEOMETRY.shape, GEOMETRY.affine, "coronal")
    assert not set(oblique_cut.edge_labels().values()) <= PURE  # what the reslice fixes


@pytest.mark.parametrize("plane", geometry.PLANES)
def test_plane_covers_every_corner_of_the_volume(plane):
    view = reslice.plane_view_for(GEOMETRY.shape, GEOMETRY.affine, plane)
    s, r, c = (n - 1 for n in GEOMETRY.shape)
    for corner in [(ci, ri, si) for ci in (0, c) for ri in (0, r) for si in (0, s)]:
        index = view.from_lps(geometry.voxel_to_lps(GEOMETRY.affine, *corner))
        assert np.all(index > -1e-6) and np.all(index < np.array(view.shape) - 1 + 1e-6)


@pytest.mark.parametrize("plane", geometry.PLANES)
def test_voxel_and_plane_indices_round_trip_within_one_voxel(plane):
    view = reslice.plane_view_for(GEOMETRY.shape, GEOMETRY.affine, plane)
    rng = np.random.default_rng(7)
    s, r, c = GEOMETRY.shape
    for voxel in zip(rng.integers(0, c, 50), rng.integers(0, r, 50), rng.integers(0, s, 50),
                     strict=True):
        back = view.to_voxel(*view.from_voxel(*voxel))
        assert np.max(np.abs(np.subtract(back, voxel))) <= 1, (voxel, back)


def test_to_voxel_is_clamped_to_the_volume():
    view = reslice.plane_view_for(GEOMETRY.shape, GEOMETRY.affine, "axial")
    col, row, slice_ = view.to_voxel(0, 0, 0)  # a grid corner outside the tilted stack
    s, r, c = GEOMETRY.shape
    assert 0 <= col < c and 0 <= row < r and 0 <= slice_ < s
    assert view.from_voxel(10**6, -5, 10**6)[0] in (0, view.count - 1)


def test_outside_the_volume_is_its_minimum_and_dtypes_are_kept():
    voxels, centre = sphere_volume(inside=800, outside=-1000)
    view = reslice.plane_view_for(GEOMETRY.shape, GEOMETRY.affine, "coronal")
    k = int(round(view.from_lps(centre)[0]))
    image = view.image(voxels, k)
    assert image.dtype == np.int16 and image.min() == -1000 and image.max() == 800
    assert image[0, 0] == -1000  # grid corner: the tilted stack does not reach it
    as_float = view.image(voxels.astype(np.float64) / 2, k)
    assert as_float.dtype == np.float32
    assert np.allclose(as_float, image / 2, atol=0.5)


def test_colour_volumes_are_resampled_per_channel():
    grey, centre = sphere_volume(inside=200, outside=10, dtype=np.uint8)
    rgb = np.stack([grey, 255 - grey, np.full_like(grey, 10)], axis=-1)
    view = reslice.plane_view_for(GEOMETRY.shape, GEOMETRY.affine, "sagittal")
    k, r, c = np.rint(view.from_lps(centre)).astype(int)
    image = view.image(rgb, k)
    assert image.shape == (*view.shape[1:], 3) and image.dtype == np.uint8
    assert tuple(image[r, c]) == (200, 55, 10)
    assert np.array_equal(image[..., 0], view.image(grey, k))  # same minimum (10) outside


def test_slice_steps_follow_the_best_aligned_voxel_axes():
    axial = reslice.plane_view_for(GEOMETRY.shape, GEOMETRY.affine, "axial")
    coronal = reslice.plane_view_for(GEOMETRY.shape, GEOMETRY.affine, "coronal")
    assert axial.slice_spacing == pytest.approx(2.0) and axial.spacing == pytest.approx((1, 1))
    assert coronal.spacing == pytest.approx((2.0, 1.0))  # rows run S-I: the slice axis
    assert axial.to_lps(1, 0, 0)[2] - axial.to_lps(0, 0, 0)[2] == pytest.approx(2.0)


@pytest.mark.parametrize("plane", ["axial", "coronal"])
def test_a_slab_on_a_true_plane_reduces_the_resampled_images(plane):
    from medviewer.core.slab import plane_slab

    voxels, centre = sphere_volume()
    view = reslice.plane_view_for(GEOMETRY.shape, GEOMETRY.affine, plane)
    k = int(np.rint(view.from_lps(centre)[0]))
    mip = plane_slab(voxels, view, k, 3, "mip")
    expected = np.max([view.image(voxels, j) for j in range(k - 3, k + 4)], axis=0)
    assert mip.shape == view.shape[1:]
    np.testing.assert_array_equal(mip, expected)
