"""MPR planes, orientation letters and measurements on known geometry."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.core.geometry import (
    acquisition_plane,
    direction_label,
    distance_mm,
    lps_to_voxel,
    plane_view,
    roi_stats,
    shape_mask,
    voxel_to_lps,
)


def axial_affine(spacing=(2.5, 0.5, 0.7), origin=(-100.0, -120.0, 30.0)) -> np.ndarray:
    """(col, row, slice) -> LPS for an axial stack: columns towards L, rows towards P, slices S."""
    a = np.eye(4)
    a[:3, 0] = [spacing[2], 0, 0]
    a[:3, 1] = [0, spacing[1], 0]
    a[:3, 2] = [0, 0, spacing[0]]
    a[:3, 3] = origin
    return a


def test_voxel_lps_round_trip():
    a = axial_affine()
    p = voxel_to_lps(a, 10, 20, 3)
    np.testing.assert_allclose(p, [-100 + 7.0, -120 + 10.0, 30 + 7.5])
    np.testing.assert_allclose(lps_to_voxel(a, p), [10, 20, 3])


@pytest.mark.parametrize(
    ("vector", "label"),
    [((1, 0, 0), "L"), ((-1, 0, 0), "R"), ((0, -1, 0), "A"), ((0, 0, 1), "S"),
     ((0.8, 0.6, 0), "LP"), ((0, -0.3, -0.95), "IA"), ((0.1, 0, -1), "I")],
)
def test_direction_letters(vector, label):
    assert direction_label(np.array(vector, float)) == label


def test_axial_plane_is_the_acquisition_itself():
    vox = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    pv = plane_view(vox.shape, axial_affine(), "axial")
    assert acquisition_plane(axial_affine()) == "axial"
    np.testing.assert_array_equal(pv.image(vox, 2), vox[2])
    assert pv.edge_labels() == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert pv.spacing == (0.5, 0.7)


def test_coronal_and_sagittal_put_superior_on_top_with_true_spacing():
    vox = np.zeros((4, 5, 6), np.int16)
    vox[3] = 100  # the most superior slice
    a = axial_affine()
    cor = plane_view(vox.shape, a, "coronal")
    sag = plane_view(vox.shape, a, "sagittal")
    assert cor.shape == (5, 4, 6) and sag.shape == (6, 4, 5)
    assert (cor.image(vox, 0)[0] == 100).all() and (cor.image(vox, 0)[1:] == 0).all()
    assert (sag.image(vox, 0)[0] == 100).all()
    assert cor.spacing == (2.5, 0.7) and sag.spacing == (2.5, 0.5)
    assert cor.edge_labels()["top"] == "S" and sag.edge_labels()["left"] == "A"


def test_plane_pixel_maps_back_to_the_same_voxel():
    rng = np.random.default_rng(0)
    vox = rng.integers(0, 1000, (4, 5, 6))
    a = axial_affine()
    a[:3, :3] = a[:3, :3] @ np.diag([1, -1, -1])  # rows towards A, slices towards I
    for plane in ("axial", "coronal", "sagittal"):
        pv = plane_view(vox.shape, a, plane)
        for k, r, c in [(0, 0, 0), (pv.count - 1, 1, 2), (1, pv.shape[1] - 1, pv.shape[2] - 1)]:
            col, row, sl = pv.to_voxel(k, r, c)
            assert pv.image(vox, k)[r, c] == vox[sl, row, col]
            assert pv.from_voxel(col, row, sl) == (k, r, c)
        assert pv.edge_labels()["right"] in ("L", "P")  # radiological convention kept


def test_sagittal_acquisition_is_recognised():
    a = np.zeros((4, 4))
    a[:3, 0] = [0, 1, 0]  # columns towards P
    a[:3, 1] = [0, 0, -1]  # rows towards I
    a[:3, 2] = [1, 0, 0]  # slices towards L
    a[3, 3] = 1
    assert acquisition_plane(a) == "sagittal"
    pv = plane_view((3, 4, 5), a, "sagittal")
    assert pv.axes[0] == 0 and pv.edge_labels() == {"left": "A", "right": "P", "top": "S",
                                                      "bottom": "I"}


def test_distance_uses_row_and_column_spacing():
    assert distance_mm((0, 0), (10, 0), (0.5, 0.5)) == pytest.approx(5.0)
    assert distance_mm((0, 0), (3, 4), (2.0, 1.0)) == pytest.approx(np.hypot(3, 8))


def test_rectangle_and_ellipse_roi_statistics():
    img = np.full((50, 50), 40, np.int16)
    img[10:20, 10:30] = 100
    rect = roi_stats(img, shape_mask(img.shape, 10, 10, 30, 20), (0.5, 0.8))
    assert rect["n"] == 200 and rect["mean"] == 100 and rect["sd"] == 0
    assert rect["area_mm2"] == pytest.approx(200 * 0.4)
    ell = shape_mask(img.shape, 0, 0, 40, 40, ellipse=True)
    assert abs(ell.sum() - np.pi * 20 * 20) / (np.pi * 400) < 0.02
    mixed = roi_stats(img, shape_mask(img.shape, 5, 5, 30, 20), (1, 1))
    assert mixed["min"] == 40 and mixed["max"] == 100 and mixed["sd"] > 0
    assert roi_stats(img, np.zeros_like(img, bool), (1, 1))["n"] == 0
