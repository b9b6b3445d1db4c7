"""The numeric steps between a volume and a model's input (and from outputs back to pixels)."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.inference import preprocess as pp
from medviewer.inference.manifest import InputSpec


def numbered_volume(n: int = 5, rows: int = 4, cols: int = 6) -> np.ndarray:
    """Slice k is filled with the value k: a slice's origin is readable from its pixels."""
    return np.broadcast_to(np.arange(n, dtype=np.int16)[:, None, None], (n, rows, cols)).copy()


# --- slice context ---------------------------------------------------------------------------

@pytest.mark.parametrize(("k", "expected"), [(0, [0, 0, 1]), (2, [1, 2, 3]), (4, [3, 4, 4])])
def test_previous_current_next_at_the_edges(k: int, expected: list[int]) -> None:
    stack = pp.slice_context(numbered_volume(), k, 3)
    assert stack.shape == (3, 4, 6)
    assert stack[:, 0, 0].tolist() == expected


def test_stack_of_five_and_single() -> None:
    v = numbered_volume()
    assert pp.slice_context(v, 0, 5)[:, 0, 0].tolist() == [0, 0, 0, 1, 2]
    assert pp.slice_context(v, 4, 5)[:, 0, 0].tolist() == [2, 3, 4, 4, 4]
    assert pp.slice_context(v, 3, 1)[:, 0, 0].tolist() == [3]


def test_context_of_a_one_slice_series() -> None:
    assert pp.slice_context(numbered_volume(1), 0, 3)[:, 0, 0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("k", [-1, 5])
def test_context_outside_the_series(k: int) -> None:
    with pytest.raises(IndexError):
        pp.slice_context(numbered_volume(), k, 3)


def test_volume_samples_spread_over_the_series() -> None:
    v = numbered_volume(10)
    picks = pp.volume_samples(v, 4)[:, 0, 0].tolist()
    assert picks[0] == 0 and picks[-1] == 9
    assert picks == sorted(picks) and len(set(picks)) == 4
    # more samples than slices repeats slices rather than failing
    assert pp.volume_samples(numbered_volume(3), 5)[:, 0, 0].tolist() == [0, 0, 1, 2, 2]


# --- PatientAge, PatientSex, the extras vector -----------------------------------------------

@pytest.mark.parametrize(("text", "years"), [
    ("045Y", 45.0), ("006M", 0.5), ("010W", 70 / 365.25), ("003D", 3 / 365.25),
    ("45", 45.0), (" 012y ", 12.0)])
def test_patient_age(text: str, years: float) -> None:
    assert pp.parse_age(text) == pytest.approx(years)


@pytest.mark.parametrize("text", [None, "", "   ", "unknown", "45Q", "1234Y", "-05Y", "4.5Y"])
def test_patient_age_missing_or_garbage(text: str | None) -> None:
    assert pp.parse_age(text) is None


@pytest.mark.parametrize(("text", "code"), [
    ("M", 1.0), ("F", 0.0), ("m ", 1.0), ("O", 0.5), ("", 0.5), (None, 0.5)])
def test_sex_codes(text: str | None, code: float) -> None:
    assert pp.sex_code(text) == code


def test_extras_vector_in_manifest_order() -> None:
    header = {"PatientAge": "045Y", "PatientSex": "F"}
    assert pp.extras_vector(header, ("age", "sex")).tolist() == pytest.approx([0.45, 0.0])
    assert pp.extras_vector(header, ("sex", "age")).tolist() == pytest.approx([0.0, 0.45])
    assert pp.extras_vector(header, ("age", "sex")).dtype == np.float32


def test_extras_vector_defaults_for_missing_values() -> None:
    for header in ({}, {"PatientAge": "garbage", "PatientSex": ""}):
        age, sex = pp.extras_vector(header, ("age", "sex")).tolist()
        assert age == pytest.approx(pp.MISSING_AGE_YEARS / 100)
        assert sex == 0.5


def test_extras_vector_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="weight"):
        pp.extras_vector({}, ("age", "weight"))


# --- intensities ------------------------------------------------------------------------------

def test_to_unit_through_a_window() -> None:
    hu = np.array([-2000, -1000, -600, -200, 0, 3000], np.int16)
    x = pp.to_unit(hu, (-600, 800))  # -1000 .. -200
    assert x.dtype == np.float32
    assert x.tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0, 1.0])


def test_to_unit_min_max_without_window() -> None:
    x = pp.to_unit(np.array([[10, 20], [30, 50]], np.uint16), None)
    assert x.min() == 0.0 and x.max() == 1.0
    assert x[0, 1] == pytest.approx(0.25)


def test_to_unit_constant_image_and_zero_width() -> None:
    assert not pp.to_unit(np.full((3, 3), 7), None).any()
    assert not pp.to_unit(np.arange(9), (4, 0)).any()


# --- resizing ---------------------------------------------------------------------------------

def test_integer_shrink_averages_blocks() -> None:
    image = np.zeros((4, 4), np.float32)
    image[0, 0] = 4.0  # one bright pixel: interpolation could drop it, a block mean keeps 1/4
    out = pp.resize(image, (2, 2))
    assert out.tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert out.sum() * 4 == pytest.approx(image.sum())


def test_block_mean_keeps_leading_axes() -> None:
    stack = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6)
    out = pp.resize(stack, (3, 2))
    assert out.shape == (2, 3, 2)
    assert out[1, 0, 0] == pytest.approx(stack[1, :2, :3].mean())


def test_non_integer_factor_interpolates_smoothly() -> None:
    ramp = np.tile(np.arange(10, dtype=np.float32), (10, 1))
    out = pp.resize(ramp, (10, 4))
    assert out.shape == (10, 4)
    assert np.all(np.diff(out[0]) > 0), "a ramp stays a ramp"
    assert 0 <= out.min() and out.max() <= 9
    up = pp.resize(ramp, (20, 20))
    assert up.shape == (20, 20) and np.all(np.diff(up[0]) >= 0)


def test_interpolation_of_integer_images_is_not_truncated() -> None:
    hu = np.array([[0, 1], [0, 1]], np.int16)
    out = pp.resize(hu, (2, 3))
    assert out.dtype == np.float32 and out[0, 1] == pytest.approx(0.5)
    assert pp.resize(np.ones((4, 4), np.int16), (2, 2)).dtype == np.float32


def test_nearest_for_label_maps_keeps_labels() -> None:
    labels = np.zeros((8, 8), np.uint8)
    labels[2:6, 2:6] = 3
    labels[0, 0] = 1
    for size in ((4, 4), (12, 12), (5, 7)):
        out = pp.resize(labels, size, order=0)
        assert out.shape == size and out.dtype == np.uint8
        assert set(np.unique(out)) <= {0, 1, 3}, "no blended label values"
    back = pp.resize(pp.resize(labels, (16, 16), order=0), (8, 8), order=0)
    assert np.array_equal(back, labels)


@pytest.mark.parametrize("size", [(16, 16), (24, 8), (40, 40), (12, 20)])
def test_nearest_upscale_matches_scipy_zoom(size: tuple[int, int]) -> None:
    """The whole-number fast path gives zoom's answer (and fractions still go to zoom)."""
    from scipy import ndimage

    labels = np.random.default_rng(4).integers(0, 5, (2, 8, 8)).astype(np.uint8)
    out = pp.resize(labels, size, order=0)
    zoom = (1, size[0] / 8, size[1] / 8)
    expected = ndimage.zoom(labels, zoom, order=0, mode="nearest", grid_mode=True)
    assert out.dtype == np.uint8 and np.array_equal(out, expected)


def test_same_size_is_untouched() -> None:
    image = np.ones((4, 4))
    assert pp.resize(image, (4, 4)) is image


# --- the whole input tensor -------------------------------------------------------------------

def test_prepare_slices_context_window_and_normalisation() -> None:
    v = numbered_volume(5, 8, 8) * 100  # slice k: k*100 HU
    spec = InputSpec(size=(4, 4), channels=3, context="prev-current-next", window=(200, 400),
                     mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = pp.prepare_slices(v, [0, 4], spec)
    assert x.shape == (2, 3, 4, 4) and x.dtype == np.float32
    unit = np.array([[0.0, 0.0, 0.25], [0.75, 1.0, 1.0]])  # slices [0,0,1] and [3,4,4]
    assert x[:, :, 0, 0] == pytest.approx((unit - 0.5) / 0.25)


@pytest.mark.parametrize("window", [(-600.0, 1500.0), None])
@pytest.mark.parametrize("context", ["single", "prev-current-next", "stack:5"])
def test_prepare_slices_does_not_depend_on_the_batch(window, context: str) -> None:
    """A slice's input is the same alone or in any batch (repeats and edges included)."""
    voxels = np.random.default_rng(2).integers(-1000, 1000, (6, 12, 12)).astype(np.int16)
    count = InputSpec(size=(6, 6), context=context).context_slices
    spec = InputSpec(size=(6, 6), channels=count, context=context, window=window)
    batch = [5, 0, 3, 3, 1]
    together = pp.prepare_slices(voxels, batch, spec)
    alone = np.concatenate([pp.prepare_slices(voxels, [k], spec) for k in batch])
    np.testing.assert_allclose(together, alone, rtol=1e-6, atol=1e-6)
    assert together.flags.c_contiguous and together.dtype == np.float32
    assert pp.prepare_slices(voxels, [], spec).shape == (0, count, 6, 6)


def test_prepare_slices_grey_slice_into_three_channels() -> None:
    spec = InputSpec(size=(4, 4), channels=3, context="single", window=None)
    x = pp.prepare_slices(np.random.default_rng(0).normal(size=(2, 8, 8)), [1], spec)
    assert x.shape == (1, 3, 4, 4)
    assert np.array_equal(x[0, 0], x[0, 2])


# --- lab 5's contrast steps -------------------------------------------------------------------

def test_log_transform_monotone_to_unit_range() -> None:
    image = np.random.default_rng(1).integers(100, 4096, (32, 32)).astype(np.uint16)
    out = pp.log_transform(image)
    assert out.min() == 0.0 and out.max() == pytest.approx(1.0)
    order = np.argsort(image, axis=None)
    assert np.all(np.diff(out.ravel()[order]) >= 0), "brighter stays brighter"
    # log lifts the dark end: the middle value lands above the middle
    mid = pp.log_transform(np.array([0.0, 50.0, 100.0]))
    assert mid[1] > 0.5


def test_log_transform_constant_image() -> None:
    out = pp.log_transform(np.full((4, 4), 1234, np.uint16))
    assert out.shape == (4, 4) and not out.any()


def test_simplest_color_balance_clips_exact_percent_of_a_ramp() -> None:
    ramp = np.arange(1000, dtype=np.float32).reshape(25, 40)
    out = pp.simplest_color_balance(ramp, percent=1.0)
    assert int((out == 0).sum()) == 5 and int((out == 1).sum()) == 5  # 0.5 % at each end
    assert out.min() == 0 and out.max() == 1
    inside = out[(out > 0) & (out < 1)]
    assert np.all(np.diff(np.sort(inside)) > 0)
    out4 = pp.simplest_color_balance(ramp, percent=4.0)
    assert int((out4 == 0).sum()) == 20 and int((out4 == 1).sum()) == 20


def test_simplest_color_balance_constant_image() -> None:
    assert not pp.simplest_color_balance(np.full((5, 5), 3.0)).any()


# --- boxes back to pixels, softmax ------------------------------------------------------------

def test_scale_boxes_back_to_pixel_coordinates() -> None:
    boxes = np.array([[10, 20, 30, 40], [0, 0, 64, 64]], np.float32)
    out = pp.scale_boxes(boxes, model_size=(64, 64), image_size=(128, 256))  # rows, cols
    assert out.tolist() == [[40, 40, 120, 80], [0, 0, 256, 128]]


def test_scale_boxes_clips_to_the_image() -> None:
    out = pp.scale_boxes(np.array([-5, -5, 70, 80]), (64, 64), (64, 64))
    assert out.tolist() == [[0, 0, 64, 64]]
    assert pp.scale_boxes(np.zeros((0, 4)), (64, 64), (32, 32)).shape == (0, 4)


def test_softmax_rows_sum_to_one_and_keep_order() -> None:
    logits = np.array([[1000.0, 1001.0, 999.0], [0.0, 0.0, 0.0]])
    p = pp.softmax(logits)
    assert np.all(np.isfinite(p))
    assert p.sum(axis=1) == pytest.approx([1.0, 1.0])
    assert np.argmax(p[0]) == 1 and p[1] == pytest.approx([1 / 3] * 3)


@pytest.mark.parametrize("dtype,low,high", [(np.uint16, 0, 4096), (np.int16, -1024, 3000),
                                            (np.uint8, 3, 7)])
def test_log_balance_on_stored_pixels_is_the_two_steps_composed(dtype, low, high):
    image = np.random.default_rng(3).integers(low, high, (67, 45)).astype(dtype)
    expected = pp.simplest_color_balance(pp.log_transform(image), 1.0)
    assert np.allclose(pp.log_balance(image, 1.0), expected, atol=2e-6)
    floats = image.astype(np.float32)  # float input takes the reference path
    assert np.allclose(pp.log_balance(floats, 1.0), expected, atol=2e-6)
