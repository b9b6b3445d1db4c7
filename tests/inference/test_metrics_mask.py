"""Dice / IoU against a mask whose label table differs from the model's (a SEG's)."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.inference.metrics import scores_against_mask


def test_labels_are_matched_by_name_and_unknown_ones_left_out():
    pred = np.zeros((2, 4, 4), np.uint8)
    pred[0, :2] = 1  # lung, 8 voxels on slice 0
    pred[1, 2:] = 2  # nodule on slice 1
    mask = np.zeros_like(pred)
    mask[0, :1] = 7  # the SEG calls lung 7: half of the model's lung
    scores = scores_against_mask(pred, ["background", "lung", "nodule"], mask,
                                 ["background"] + ["x"] * 6 + ["Lung"])
    assert set(scores) == {"lung"}  # the SEG has no nodule: nothing to score it against
    assert scores["lung"]["dice"] == pytest.approx(2 * 4 / (8 + 4))
    assert scores["lung"]["iou"] == pytest.approx(4 / 8)


def test_only_the_rows_the_model_ran_on_count():
    pred = np.zeros((3, 2, 2), np.uint8)
    mask = np.ones_like(pred)
    pred[1] = 1
    scores = scores_against_mask(pred, ["background", "lung"], mask, ["background", "lung"],
                                 rows=[1])
    assert scores["lung"]["dice"] == 1.0


def test_a_mask_on_another_grid_is_refused():
    with pytest.raises(ValueError, match="grid"):
        scores_against_mask(np.zeros((2, 2, 2), np.uint8), ["b", "a"],
                            np.zeros((2, 3, 3), np.uint8), ["b", "a"])
