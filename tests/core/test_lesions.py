"""Per-lesion measurements against independent references: brute-force distances over the
outline, analytic ellipse axes and ball volumes, the affine's own voxel -> LPS mapping."""

from __future__ import annotations

from itertools import combinations
from types import SimpleNamespace

import numpy as np
import pytest

from medviewer.core.lesions import (
    axial_diameters,
    find_lesions,
    keep_tracking,
    lesion_labels,
)

LABELS = ["background", "lung", "nodule"]


def _volume(shape, spacing, origin=(-100.0, -80.0, 40.0), voxels=None):
    """An axial volume: (slice, row, column) spacing in mm, affine like Volume's."""
    dz, dr, dc = spacing
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = (dc, 0, 0), (0, dr, 0), (0, 0, dz)
    affine[:3, 3] = origin
    if voxels is None:
        voxels = np.zeros(shape, np.int16)
    return SimpleNamespace(affine=affine, voxels=voxels)


def _ellipse(shape, centre, axes_mm, spacing_rc, angle=0.0):
    rows, cols = np.mgrid[:shape[0], :shape[1]].astype(float)
    y, x = (rows - centre[0]) * spacing_rc[0], (cols - centre[1]) * spacing_rc[1]
    c, s = np.cos(angle), np.sin(angle)
    u, v = x * c + y * s, -x * s + y * c
    return (u / axes_mm[0]) ** 2 + (v / axes_mm[1]) ** 2 <= 1.0


def _brute_force_longest(mask, spacing_rc):
    """Largest distance between any two outer-edge midpoints, every pair tried."""
    rows, cols = np.nonzero(mask)
    points = np.array([(r + dr, c + dc) for r, c in zip(rows, cols, strict=True)
                       for dr, dc in ((-0.5, 0), (0.5, 0), (0, -0.5), (0, 0.5))])
    i, j = np.array(list(combinations(range(len(points)), 2))).T
    gap = (points[i] - points[j]) * spacing_rc
    return float(np.hypot(gap[:, 0], gap[:, 1]).max())


@pytest.mark.parametrize("spacing_rc,angle", [((0.7, 0.7), 0.0), ((0.5, 0.9), 0.6),
                                              ((1.0, 0.4), 2.0)])
def test_longest_diameter_is_the_brute_force_feret_diameter(spacing_rc, angle):
    mask = _ellipse((40, 60), (20, 30), (7.0, 4.0), spacing_rc, angle)
    mask[5:8, 5:9] = False  # stays one blob; the hull must not matter
    affine = _volume((1, 40, 60), (2.0, *spacing_rc)).affine
    long_mm, short_mm, _, _ = axial_diameters(mask, affine)
    assert long_mm == pytest.approx(_brute_force_longest(mask, spacing_rc), abs=1e-9)


@pytest.mark.parametrize("spacing_rc", [(0.7, 0.7), (0.5, 0.9)])
def test_an_ellipses_axes_are_its_long_and_short_diameters(spacing_rc):
    mask = _ellipse((80, 80), (40, 40), (12.0, 5.0), spacing_rc, angle=0.5)
    affine = _volume((1, 80, 80), (2.0, *spacing_rc)).affine
    long_mm, short_mm, long_axis, short_axis = axial_diameters(mask, affine)
    pixel = max(spacing_rc)
    assert long_mm == pytest.approx(24.0, abs=pixel)
    assert short_mm == pytest.approx(10.0, abs=pixel)
    (r0, c0), (r1, c1) = long_axis
    (r2, c2), (r3, c3) = short_axis
    d_long = np.array([(c1 - c0) * spacing_rc[1], (r1 - r0) * spacing_rc[0]])
    d_short = np.array([(c3 - c2) * spacing_rc[1], (r3 - r2) * spacing_rc[0]])
    cosine = abs(d_long @ d_short) / np.linalg.norm(d_long) / np.linalg.norm(d_short)
    assert cosine < 0.15  # the short axis is (about) perpendicular to the long one


def test_each_ball_is_one_lesion_with_its_volume_centre_and_mean_value():
    shape, spacing = (30, 64, 64), (1.5, 0.8, 0.6)
    z, r, c = np.mgrid[:30, :64, :64].astype(float)
    big = ((z - 12) * 1.5) ** 2 + ((r - 20) * 0.8) ** 2 + ((c - 20) * 0.6) ** 2 <= 8.0 ** 2
    small = ((z - 20) * 1.5) ** 2 + ((r - 45) * 0.8) ** 2 + ((c - 45) * 0.6) ** 2 <= 4.0 ** 2
    label_map = np.zeros(shape, np.uint8)
    label_map[:, 5:60, 5:60] = 1  # lung: anatomy, no table
    label_map[big | small] = 2
    hu = np.where(big | small, 40, -850).astype(np.int16)
    hu[big & (z > 12)] = 60  # the mean must come from the voxels themselves
    volume = _volume(shape, spacing, voxels=hu)
    lesions = find_lesions(label_map, volume, LABELS)
    assert [(les.name, les.voxels) for les in lesions] == [("nodule 1", int(big.sum())),
                                                           ("nodule 2", int(small.sum()))]
    first = lesions[0]
    assert first.volume_ml == pytest.approx(big.sum() * 1.5 * 0.8 * 0.6 / 1000)
    assert first.volume_ml == pytest.approx(4 / 3 * np.pi * 8.0 ** 3 / 1000, rel=0.05)
    assert first.mean_value == pytest.approx(hu[big].mean())
    centroid = np.argwhere(big).mean(axis=0)
    assert first.centre_voxel == pytest.approx(tuple(centroid))
    expected = volume.affine @ np.array([centroid[2], centroid[1], centroid[0], 1.0])
    assert first.centre_lps == pytest.approx(tuple(expected[:3]))
    assert first.slice_index == 12  # the equator: where the ball is widest
    assert first.long_axis_mm == pytest.approx(16.0, abs=0.8 + 1e-6)  # within a pixel
    assert first.key_point == pytest.approx((20.0, 20.0), abs=0.01)
    assert {les.site for les in lesions} == {"lung"}  # the label around it: its finding site


def test_only_lesion_labels_get_a_table_unless_the_manifest_names_them():
    assert lesion_labels(["background", "body", "lung", "nodule", "spine"]) == [3]
    assert lesion_labels(["background", "Liver tumour", "liver"]) == [1]
    assert lesion_labels(["background", "body", "heart"], declared=["heart"]) == [2]
    assert lesion_labels(["background", "nodule"], declared=[]) == []
    assert lesion_labels(["background", "body", "heart"], declared="heart") == [2]  # hand-typed
    label_map = np.ones((3, 8, 8), np.uint8)
    assert find_lesions(label_map, _volume((3, 8, 8), (1, 1, 1)), ["background", "lung"]) == []


def test_a_lesion_found_again_keeps_its_tracking_uid_and_a_new_one_gets_its_own():
    shape, spacing = (10, 40, 40), (2.0, 1.0, 1.0)
    label_map = np.zeros(shape, np.uint8)
    label_map[3:6, 5:11, 5:11] = 2
    label_map[3:6, 25:31, 25:31] = 2
    volume = _volume(shape, spacing)
    first = keep_tracking(find_lesions(label_map, volume, LABELS), [])
    assert len({les.tracking_uid for les in first}) == 2 and all(les.tracking_uid for les in first)
    label_map[3:6, 5:11, 11] = 2  # one grows by a column: still the same lesion
    label_map[7:9, 30:34, 5:9] = 2  # and a new one appears
    again = keep_tracking(find_lesions(label_map, volume, LABELS), first)
    old = {les.tracking_uid for les in first}
    kept = [les for les in again if les.tracking_uid in old]
    assert len(kept) == 2 and {les.tracking_uid for les in kept} == old
    grown = next(les for les in again if les.voxels == 3 * 6 * 7)
    was = next(les for les in first if les.centre_voxel[2] < 20)
    assert grown.tracking_uid == was.tracking_uid and grown.tracking_id == was.tracking_id
    new = [les for les in again if les.tracking_uid not in old]
    assert len(new) == 1 and new[0].slice_index in (7, 8) and new[0].tracking_uid
