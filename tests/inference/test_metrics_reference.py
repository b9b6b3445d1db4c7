"""The segmentation scores against independent references: scikit-learn for the ones made of
voxel counts, a brute-force pairwise distance computation for boundary F1 and HD95."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    jaccard_score,
    precision_score,
    recall_score,
)

from medviewer.inference.metrics import (
    against_mask,
    boundary_scores,
    compare_label_maps,
    per_label_scores,
    text_table,
)

LABELS = ["background", "lung", "nodule"]


def _blobs(rng: np.random.Generator, shape: tuple[int, ...], labels: int = 3) -> np.ndarray:
    """Random label maps with some spatial structure (smoothed noise, thresholded)."""
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.normal(size=shape), 1.5)
    edges = np.quantile(noise, np.linspace(0, 1, labels + 1)[1:-1])
    return np.digitize(noise, edges).astype(np.uint8)


def _surface_brute(mask: np.ndarray) -> np.ndarray:
    """Labelled voxels with a face neighbour outside, by shifting the padded mask."""
    padded = np.pad(mask, 1)
    core = tuple(slice(1, -1) for _ in mask.shape)
    outside = np.zeros_like(mask)
    for axis in range(mask.ndim):
        for step in (-1, 1):
            outside |= ~np.roll(padded, step, axis=axis)[core]
    return mask & outside


def _directed_brute(a: np.ndarray, b: np.ndarray, spacing) -> np.ndarray:
    """For each surface voxel of a: the distance to the nearest surface voxel of b."""
    pa = np.argwhere(_surface_brute(a)) * np.asarray(spacing)
    pb = np.argwhere(_surface_brute(b)) * np.asarray(spacing)
    return np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1)).min(axis=1)


@pytest.mark.parametrize("seed", range(4))
def test_count_scores_agree_with_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    truth = _blobs(rng, (6, 20, 24))
    pred = np.where(rng.random(truth.shape) < 0.15, rng.integers(0, 3, truth.shape), truth)
    if seed == 2:
        pred[pred == 2] = 0  # the nodule is never predicted
    if seed == 3:
        truth[truth == 2] = 0  # the nodule is only predicted
    t, p = truth.ravel(), pred.ravel()
    report = compare_label_maps(pred, truth, LABELS, spacing=(2.5, 0.7, 0.7))
    for value, name in enumerate(LABELS[1:], start=1):
        s = report["labels"][name]
        assert s["precision"] == pytest.approx(
            precision_score(t, p, labels=[value], average=None, zero_division=0)[0])
        assert s["recall"] == pytest.approx(
            recall_score(t, p, labels=[value], average=None, zero_division=0)[0])
        assert s["iou"] == pytest.approx(jaccard_score(t, p, labels=[value], average=None)[0])
        assert s["dice"] == pytest.approx(
            f1_score(t, p, labels=[value], average=None, zero_division=0)[0])
    overall = report["overall"]
    assert overall["pixel_accuracy"] == pytest.approx(accuracy_score(t, p))
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true" (seed 3)
        warnings.simplefilter("ignore", UserWarning)
        assert overall["mean_pixel_accuracy"] == pytest.approx(balanced_accuracy_score(t, p))
    assert overall["mean_iou"] == pytest.approx(jaccard_score(t, p, average="macro"))


@pytest.mark.parametrize(("shape", "spacing"), [((30, 26), (0.8, 1.3)),
                                                ((7, 16, 18), (3.0, 0.9, 1.1)),
                                                ((5, 12, 12), None)])
@pytest.mark.parametrize("seed", range(3))
def test_boundary_f1_and_hd95_agree_with_brute_force_distances(shape, spacing, seed):
    rng = np.random.default_rng(seed)
    truth = _blobs(rng, shape, 2).astype(bool)
    pred = _blobs(np.random.default_rng(seed + 100), shape, 2).astype(bool) | truth & (
        rng.random(shape) < 0.5)
    sampling = spacing or (1.0,) * len(shape)
    to_truth = _directed_brute(pred, truth, sampling)
    to_pred = _directed_brute(truth, pred, sampling)
    for tolerance in (1.0, 2.0):
        got = boundary_scores(pred, truth, spacing, tolerance)
        precision, recall = np.mean(to_truth <= tolerance), np.mean(to_pred <= tolerance)
        assert got["boundary_f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    expected = max(np.percentile(to_truth, 95), np.percentile(to_pred, 95))
    assert got["hd95"] == pytest.approx(expected)
    assert got["hd95"] > 0


def test_empty_masks_have_no_distance_and_say_so():
    empty, square = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    square[2:5, 2:5] = True
    assert boundary_scores(empty, empty, (1, 1)) == {"boundary_f1": 1.0, "hd95": None}
    assert boundary_scores(square, empty, (1, 1)) == {"boundary_f1": 0.0, "hd95": None}
    assert boundary_scores(empty, square, (1, 1)) == {"boundary_f1": 0.0, "hd95": None}
    same = per_label_scores(square.astype(np.uint8), square.astype(np.uint8), ["b", "a"],
                            spacing=(0.5, 0.5))["a"]
    assert (same["hd95"], same["boundary_f1"], same["unit"]) == (0.0, 1.0, "mm")


def test_a_one_slice_volume_is_scored_as_an_image():
    """A square inside another, 2 pixels in from its edge: the outlines are 2 pixels apart
    everywhere, so no outline point lies within 1.5 mm. Read as a 3D slab every voxel of
    a one-slice map would be surface and the inner square would match perfectly."""
    truth = np.zeros((1, 20, 20), np.uint8)
    pred = truth.copy()
    truth[0, 4:16, 4:16] = 1
    pred[0, 6:14, 6:14] = 1
    s = per_label_scores(pred, truth, ["b", "a"], spacing=(5.0, 1.0, 1.0), tolerance=1.5)["a"]
    to_truth = _directed_brute(pred[0] > 0, truth[0] > 0, (1.0, 1.0))
    to_pred = _directed_brute(truth[0] > 0, pred[0] > 0, (1.0, 1.0))
    assert s["boundary_f1"] == 0.0 and to_truth.min() == to_pred.min() == 2.0
    assert s["hd95"] == pytest.approx(max(np.percentile(to_truth, 95),
                                          np.percentile(to_pred, 95)))


def test_without_spacing_distances_are_in_pixels_and_the_table_says_so():
    truth = np.zeros((3, 10, 10), np.uint8)
    truth[:, 2:6, 2:6] = 1
    report = compare_label_maps(truth, truth, ["background", "lung", "nodule"])
    assert report["unit"] == "px"
    text = text_table(report)
    assert "BF1 (2 px)" in text and "HD95 (px)" in text
    assert "n/a" in text.splitlines()[2]  # no nodule anywhere: no distance to give
    mm = text_table(compare_label_maps(truth, truth, ["b", "lung"], spacing=(1, 1, 1),
                                       tolerance=3))
    assert "BF1 (3 mm)" in mm and "HD95 (mm)" in mm and "mean IoU 1.000" in mm


def test_overall_scores_against_a_mask_treat_unnamed_labels_as_background():
    pred = np.zeros((2, 4, 4), np.uint8)
    pred[0, :2] = 1  # lung
    pred[1, 2:] = 2  # nodule: the mask has no nodule, so it is not held against the model
    mask = np.zeros_like(pred)
    mask[0, :2] = 5
    report = against_mask(pred, LABELS, mask, ["background"] + ["x"] * 4 + ["lung"],
                          spacing=(1, 1, 1))
    assert set(report["labels"]) == {"lung"}
    assert report["overall"]["pixel_accuracy"] == 1.0
    assert report["labels"]["lung"]["hd95"] == 0.0
