"""Editing tools: exact voxels for brush / eraser / fills, islands, smoothing, interpolation."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.core.annotations.history import History
from medviewer.core.annotations.labelmap import LabelMap
from medviewer.core.annotations.seg import AnnotationError
from medviewer.core.annotations.tools import (
    accept_prediction,
    brush,
    brush_stroke,
    erase,
    fill_between_slices,
    flood_fill,
    keep_largest,
    polygon_fill,
    polygon_mask,
    remove_islands,
    smooth,
    stroke_centres,
)

SPACING = (2.5, 0.5, 0.8)  # slice, row, column mm: anisotropic on every axis


def _map(shape=(9, 80, 80), spacing=SPACING, labels=("lung", "nodule")):
    lm = LabelMap(np.zeros(shape, np.uint8), spacing=spacing)
    for name in labels:
        lm.table.add(name)
    return lm, History(lm)


def _disc(shape, centre, radius, spacing, sphere=False):
    k, r, c = np.indices(shape)
    dk = (k - centre[0]) * spacing[0] if sphere else np.where(k == centre[0], 0.0, np.inf)
    d2 = dk ** 2 + ((r - centre[1]) * spacing[1]) ** 2 + ((c - centre[2]) * spacing[2]) ** 2
    return d2 <= radius ** 2


def test_brush_paints_exactly_a_disc_in_mm():
    lm, history = _map()
    box = brush(lm, history, (4, 40, 40), 6.0, 1)
    expected = _disc(lm.shape, (4, 40, 40), 6.0, SPACING)
    np.testing.assert_array_equal(lm.array == 1, expected)
    rows = np.flatnonzero(expected[4].any(axis=1))
    cols = np.flatnonzero(expected[4].any(axis=0))
    assert (rows.size, cols.size) == (25, 15)  # 6 mm: 12 rows of 0.5 mm, 7 cols of 0.8 mm
    assert box == (slice(4, 5), slice(28, 53), slice(33, 48))


def test_brush_sphere_and_fractional_centre():
    lm, history = _map()
    brush(lm, history, (4.2, 40.3, 39.6), 6.0, 2, sphere=True)
    expected = _disc(lm.shape, (4.2, 40.3, 39.6), 6.0, SPACING, sphere=True)
    np.testing.assert_array_equal(lm.array == 2, expected)
    assert np.flatnonzero(expected.any(axis=(1, 2))).tolist() == [2, 3, 4, 5, 6]


def test_brush_at_the_edge_is_clipped_and_outside_is_nothing():
    lm, history = _map()
    brush(lm, history, (0, 0, 0), 3.0, 1, sphere=True)
    np.testing.assert_array_equal(lm.array == 1, _disc(lm.shape, (0, 0, 0), 3.0, SPACING, True))
    assert brush(lm, history, (4, -50, -50), 3.0, 1) is None
    assert brush(lm, history, (20, 10, 10), 3.0, 1) is None


def test_brush_without_overwrite_and_unknown_label():
    lm, history = _map()
    lm.array[4, 40, :] = 2
    brush(lm, history, (4, 40, 40), 5.0, 1, overwrite=False)
    assert (lm.array[4, 40, :] == 2).all()
    with pytest.raises(AnnotationError, match="not in the label table"):
        brush(lm, history, (4, 40, 40), 5.0, 7)


def test_eraser_clears_a_disc_or_only_one_label():
    lm, history = _map()
    lm.array[4] = 1
    lm.array[4, :, 40] = 2
    erase(lm, history, (4, 40, 40), 4.0, label=1)
    disc = _disc(lm.shape, (4, 40, 40), 4.0, SPACING)
    assert (lm.array[disc] != 1).all() and (lm.array[4, :, 40] == 2).all()
    erase(lm, history, (4, 40, 40), 4.0)
    rest = lm.array[4][~disc[4]]
    assert (lm.array[disc] == 0).all() and ((rest == 1) | (rest == 2)).all()


def test_range_limited_paint_only_paints_within_the_range():
    lm, history = _map()
    image = np.random.default_rng(0).integers(-1000, 1000, lm.shape).astype(np.int16)
    brush(lm, history, (4, 40, 40), 8.0, 1, sphere=True, image=image, value_range=(-100, 200))
    ball = _disc(lm.shape, (4, 40, 40), 8.0, SPACING, sphere=True)
    expected = ball & (image >= -100) & (image <= 200)
    np.testing.assert_array_equal(lm.array == 1, expected)
    assert expected.sum() > 50
    with pytest.raises(ValueError, match="image"):
        brush(lm, history, (4, 40, 40), 8.0, 1, value_range=(-100, 200))


def test_stroke_centres_leave_no_gaps_and_a_stroke_is_one_item():
    lm, history = _map()
    centres = stroke_centres([(4, 10, 10), (4, 10, 70)], 4.0, SPACING)
    steps = np.diff([c[2] for c in centres]) * SPACING[2]
    assert steps.max() <= 2.0 + 1e-9
    box = brush_stroke(lm, history, centres, 4.0, 1)
    assert len(history) == 1 and (lm.array[4, 10, 10:71] == 1).all()
    assert box == (slice(4, 5), slice(2, 19), slice(5, 76))


def test_flood_fill_within_label_region_and_value_range():
    lm, history = _map()
    lm.array[4, 20:60, 20] = lm.array[4, 20:60, 59] = 1  # a square ring of label 1
    lm.array[4, 20, 20:60] = lm.array[4, 59, 20:60] = 1
    flood_fill(lm, history, (4, 40, 40), 2)  # the background hole inside the ring
    assert (lm.array[4, 21:59, 21:59] == 2).all() and (lm.array == 2).sum() == 38 * 38
    assert flood_fill(lm, history, (4, 20, 20), 2) is not None  # relabel the ring
    assert (lm.array[4, 20:60, 20:60] == 2).all() and not (lm.array == 1).any()
    image = np.zeros(lm.shape, np.int16)
    image[5, 10:30, 10:30] = 50
    image[5, 50:60, 50:60] = 50  # same range, not connected: stays empty
    flood_fill(lm, history, (5, 15, 15), 1, image=image, value_range=(40, 100))
    assert (lm.array[5] == 1).sum() == 400 and (lm.array[5, 10:30, 10:30] == 1).all()
    assert flood_fill(lm, history, (5, 0, 0), 1, image=image, value_range=(40, 60)) is None
    assert len(history) == 3


def test_polygon_fill_of_a_square_and_a_triangle_is_the_analytic_mask():
    lm, history = _map()
    polygon_fill(lm, history, 3, [(10, 10), (10, 30), (25, 30), (25, 10)], 1)
    expected = np.zeros(lm.shape, bool)
    expected[3, 10:25, 10:30] = True  # integer corners: exactly the area, 15 x 20
    np.testing.assert_array_equal(lm.array == 1, expected)
    tri = [(5.3, 40.2), (70.7, 44.9), (30.1, 78.6)]
    polygon_fill(lm, history, 6, tri, 2)
    r, c = np.indices(lm.shape[1:]).astype(float)

    def side(p, q):
        return (q[0] - p[0]) * (c - p[1]) - (q[1] - p[1]) * (r - p[0])

    sides = [side(tri[i], tri[(i + 1) % 3]) for i in range(3)]
    inside = np.all([s > 0 for s in sides], axis=0) | np.all([s < 0 for s in sides], axis=0)
    np.testing.assert_array_equal(lm.array[6] == 2, inside)
    assert len(history) == 2


def test_polygon_even_odd_and_clipping():
    star = [(0, 10), (20, 16), (6, 0), (6, 20), (20, 4)]  # pentagram: the centre is a hole
    _, mask = polygon_mask((30, 30), star)
    assert not mask[9, 10] and mask[3, 10]
    area, mask = polygon_mask((10, 10), [(-5, -5), (-5, 50), (50, 50), (50, -5)])
    assert area == (slice(0, 10), slice(0, 10)) and mask.all()
    assert polygon_mask((10, 10), [(1, 1), (2, 2)]) == (None, None)


def test_remove_small_islands_and_keep_largest():
    lm, history = _map(spacing=(1.0, 1.0, 1.0))
    lm.array[2:5, 10:20, 10:20] = 1  # 300 voxels
    lm.array[6, 50:53, 50:53] = 1  # 9
    lm.array[7, 70, 70] = 1  # 1
    lm.array[7, 60:62, 60:62] = 2  # another label: never touched
    remove_islands(lm, history, 1, min_voxels=5)
    assert (lm.array == 1).sum() == 309 and lm.array[7, 70, 70] == 0
    remove_islands(lm, history, 1, min_mm3=10.0)
    assert (lm.array == 1).sum() == 300
    lm.array[6, 50:53, 50:53] = 1
    keep_largest(lm, history, 1)
    assert (lm.array == 1).sum() == 300 and (lm.array == 2).sum() == 4
    assert len(history) == 3


def test_keep_largest_on_one_slice():
    lm, history = _map(spacing=(1.0, 1.0, 1.0))
    lm.array[3, 10:20, 10:20] = 1
    lm.array[3, 40:42, 40:42] = 1
    lm.array[4, 40:42, 40:42] = 1  # other slice: left alone
    keep_largest(lm, history, 1, slice_index=3)
    assert (lm.array[3] == 1).sum() == 100 and (lm.array[4] == 1).sum() == 4


def test_smoothing_opening_removes_spurs_closing_fills_gaps():
    lm, history = _map(spacing=(1.0, 1.0, 1.0))
    lm.array[2:7, 20:40, 20:40] = 1
    lm.array[4, 30, 40:50] = 1  # a one-voxel spur
    smooth(lm, history, 1, radius_mm=1.5, operation="opening")
    assert not lm.array[4, 30, 41:50].any() and lm.array[4, 30, 30] == 1
    lm.array[4, 29:32, 25:35] = 0  # a thin crack
    lm.array[4, 30, 28] = 2  # another label in it stays
    lm.array[5, 29:32, 25:35] = 0  # the same crack one slice on: not this slice's business
    others = np.delete(lm.array, 4, axis=0)
    smooth(lm, history, 1, radius_mm=2.0, operation="closing", slice_index=4)
    crack = lm.array[4, 29:32, 25:35]
    assert (crack[crack != 2] == 1).all() and lm.array[4, 30, 28] == 2
    np.testing.assert_array_equal(np.delete(lm.array, 4, axis=0), others)
    assert len(history) == 2
    with pytest.raises(ValueError):
        smooth(lm, history, 1, operation="median")


def test_fill_between_slices_fills_only_the_slices_between():
    lm, history = _map(shape=(12, 60, 60), spacing=(2.0, 1.0, 1.0))
    lm.array[2, 20:30, 20:30] = 1  # 10 x 10 square
    lm.array[6, 16:34, 16:34] = 1  # 18 x 18 square
    lm.array[9, 20:30, 20:30] = 1
    lm.array[4, 25, 25] = 2  # another label between: kept
    drawn = lm.array.copy()
    box = fill_between_slices(lm, history, 1)
    assert len(history) == 1 and box == (slice(3, 9), slice(16, 34), slice(16, 34))
    for k in (0, 1, 2, 6, 9, 10, 11):
        np.testing.assert_array_equal(lm.array[k], drawn[k])
    sizes = [(lm.array[k] == 1).sum() for k in range(3, 9)]
    assert all(s > 0 for s in sizes)
    assert sizes[0] < sizes[1] < sizes[2] < 18 * 18 and sizes[3] > sizes[5]
    assert lm.array[4, 25, 25] == 2
    middle = np.argwhere(lm.array[4] == 1)  # the 14 x 14 square halfway
    assert middle.min(axis=0).tolist() == [18, 18] and middle.max(axis=0).tolist() == [31, 31]
    history.undo()
    np.testing.assert_array_equal(lm.array, drawn)


def test_fill_between_identical_slices_copies_the_shape():
    lm, history = _map(shape=(6, 40, 40))
    yy, xx = np.indices((40, 40))
    blob = (yy - 20) ** 2 / 100 + (xx - 18) ** 2 / 40 <= 1
    lm.array[0][blob] = lm.array[5][blob] = 1
    fill_between_slices(lm, history, 1, slices=[0, 5])
    for k in range(6):
        np.testing.assert_array_equal(lm.array[k] == 1, blob)


def test_accept_prediction_is_one_undo_step_matching_labels_by_name():
    lm, history = _map(labels=("Lung",))
    lm.array[1, 5:10, 5:10] = 1
    before = lm.array.copy()
    predicted = np.zeros(lm.shape, np.int64)
    predicted[3, 10:20, 10:20] = 1  # "lung": existing value 1
    predicted[3, 30:40, 30:40] = 2  # "tumour": new label
    box = accept_prediction(lm, history, predicted, ["background", "lung", "tumour"])
    tumour = lm.table.by_name("tumour")
    assert tumour.value == 2 and len(history) == 1
    assert (lm.array == 1).sum() == 100 and (lm.array == 2).sum() == 100
    assert box == (slice(1, 4), slice(5, 40), slice(5, 40))
    history.undo()
    np.testing.assert_array_equal(lm.array, before)
    assert lm.table.by_name("tumour") is None
    history.redo()
    assert (lm.array[3, 30:40, 30:40] == 2).all() and lm.table.by_name("tumour").value == 2


def test_accept_prediction_refuses_a_foreign_grid_or_unnamed_values():
    lm, history = _map()
    with pytest.raises(AnnotationError, match="grid"):
        accept_prediction(lm, history, np.zeros((2, 2, 2), np.uint8), ["bg", "a"])
    bad = np.zeros(lm.shape, np.uint8)
    bad[0, 0, 0] = 5
    with pytest.raises(AnnotationError, match="names"):
        accept_prediction(lm, history, bad, ["bg", "a"])
    assert len(history) == 0


def test_tools_refuse_another_maps_history():
    lm, _ = _map()
    _, other = _map()
    with pytest.raises(ValueError, match="another"):
        brush(lm, other, (1, 1, 1), 1.0, 1)
