"""Thick-slab MIP / MinIP / average: values, clamping at the volume ends, dtypes, no copies."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from medviewer.core import geometry
from medviewer.core import slab as slabs

SHAPE = (20, 32, 32)  # slices, rows, columns
CENTRE = (10, 16, 12)  # the sphere's centre voxel (slice, row, column)
RADIUS = 3  # voxels
SPHERE_HU, BACKGROUND_HU = 1000, -850


def sphere_volume() -> np.ndarray:
    """Lung-like background with a small bright sphere whose value falls off from the centre
    (so the max over a slab is not the same on every slice), plus a dark dot for MinIP."""
    s, r, c = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    d2 = (s - CENTRE[0]) ** 2 + (r - CENTRE[1]) ** 2 + (c - CENTRE[2]) ** 2
    vol = np.full(SHAPE, BACKGROUND_HU, np.int16)
    inside = d2 <= RADIUS**2
    vol[inside] = (SPHERE_HU - 50 * d2[inside]).astype(np.int16)
    vol[3, 5, 5] = -1000  # air bubble, only on slice 3
    return vol


def test_mip_at_the_sphere_centre_shows_its_max_over_the_slab():
    vol = sphere_volume()
    k, n = CENTRE[0], 2
    mip = slabs.slab(vol, k, n, slabs.MIP)
    assert mip.shape == SHAPE[1:] and mip.dtype == vol.dtype
    np.testing.assert_array_equal(mip, vol[k - n: k + n + 1].max(axis=0))
    assert mip[CENTRE[1], CENTRE[2]] == SPHERE_HU
    # two slices away the sphere's own slice shows less of it; the slab shows its equator
    off_centre = slabs.slab(vol, k + 2, n, slabs.MIP)
    assert off_centre[CENTRE[1], CENTRE[2]] == SPHERE_HU
    assert vol[k + 2, CENTRE[1], CENTRE[2]] < SPHERE_HU
    edge = (CENTRE[1], CENTRE[2] + RADIUS)  # on the equator only
    assert vol[k + 2][edge] == BACKGROUND_HU and off_centre[edge] > BACKGROUND_HU


def test_thickness_clamps_at_the_volume_ends():
    vol = sphere_volume()
    last = SHAPE[0] - 1
    assert slabs.slab_bounds(0, 3, SHAPE[0]) == (0, 4)
    assert slabs.slab_bounds(last, 3, SHAPE[0]) == (last - 3, SHAPE[0])
    np.testing.assert_array_equal(slabs.slab(vol, 0, 3, slabs.MINIP), vol[:4].min(axis=0))
    np.testing.assert_array_equal(slabs.slab(vol, last, 3, slabs.MIP), vol[-4:].max(axis=0))
    assert slabs.slab(vol, 1, 2, slabs.MINIP)[5, 5] == -1000  # slice 3 is within 1 +- 2
    assert slabs.slab(vol, 6, 2, slabs.MINIP)[5, 5] == BACKGROUND_HU  # 4..8: no bubble
    with pytest.raises(IndexError):
        slabs.slab_bounds(SHAPE[0], 1, SHAPE[0])


def test_average_is_float32_and_the_true_mean():
    vol = sphere_volume()
    vol[CENTRE[0], 0, 0] = 1  # (1 - 4 * 850) / 5 = -679.8: an integer result would be wrong
    avg = slabs.slab(vol, CENTRE[0], 2, slabs.AVERAGE)
    assert avg.dtype == np.float32
    expected = vol[CENTRE[0] - 2: CENTRE[0] + 3].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(avg, expected, atol=1e-3)
    assert avg[0, 0] == pytest.approx(-679.8)


@pytest.mark.parametrize("mode", [slabs.MIP, slabs.MINIP, slabs.AVERAGE])
def test_images_from_a_function_give_the_same_slab(mode):
    vol = sphere_volume()
    for k in (0, 7, SHAPE[0] - 1):
        from_function = slabs.slab(lambda j: vol[j], k, 3, mode, count=SHAPE[0])
        np.testing.assert_allclose(from_function, slabs.slab(vol, k, 3, mode), rtol=1e-6)
    assert slabs.slab(lambda j: vol[j], 4, 2, slabs.MIP, count=SHAPE[0]) is not vol[2]


def test_only_the_needed_images_are_read():
    """A slab of 5 images of a 200-slice volume must not allocate anything volume-sized."""
    vol = np.zeros((200, 256, 256), np.int16)  # 26 MB
    image_bytes = 256 * 256 * 4  # one float32 image
    for mode in (slabs.MIP, slabs.AVERAGE):
        tracemalloc.start()
        slabs.slab(vol, 100, 2, mode)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 3 * image_bytes, (mode, peak)


@pytest.mark.parametrize("thickness, spacing, half", [
    (10.0, 2.5, 2),  # 5 images = 12.5 mm rather than 3 = 7.5 mm
    (10.0, 1.0, 5),  # 11 images
    (15.0, 5.0, 1),
    (2.0, 2.5, 0),  # thinner than a slice: no slab
    (0.0, 1.0, 0),
])
def test_thickness_to_images(thickness, spacing, half):
    assert slabs.half_width_for(thickness, spacing) == half


def test_a_reformatted_plane_is_reduced_along_its_own_normal_and_keeps_its_flips():
    vol = sphere_volume()
    affine = np.diag([0.7, 0.7, 2.5, 1.0])
    coronal = geometry.plane_view(vol.shape, affine, "coronal")
    assert coronal.flips[0]  # superior at the top: rows run backwards
    assert coronal.slice_spacing == pytest.approx(0.7)
    k = coronal.from_voxel(CENTRE[2], CENTRE[1], CENTRE[0])[0]
    got = slabs.plane_slab(vol, coronal, k, 3, slabs.MIP)
    expected = np.max([coronal.image(vol, j) for j in range(k - 3, k + 4)], axis=0)
    np.testing.assert_array_equal(got, expected)


def test_labels_and_bad_modes():
    # the thickness covered: 5 images 2.5 mm apart are 12.5 mm, 3 at the volume's end 7.5 mm
    assert slabs.slab_label(slabs.MIP, 2.5, (3, 8)) == "MIP 12.5 mm (5 images)"
    assert slabs.slab_label(slabs.MINIP, 2.5, (0, 3)) == "MinIP 7.5 mm (3 images)"
    assert slabs.slab_label(slabs.OFF, 2.5, (3, 8)) == ""
    with pytest.raises(ValueError):
        slabs.slab(sphere_volume(), 3, 1, "maxip")
