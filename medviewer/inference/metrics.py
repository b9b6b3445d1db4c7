"""Overlap scores between two label maps (numpy only): Dice and IoU per label.

The viewer compares a model's label map with an existing mask, the CLI and the lab 4 training
report held-out scores with the same functions, so the numbers mean the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _counts(pred: np.ndarray, truth: np.ndarray, label: int) -> tuple[int, int, int]:
    """(overlap, voxels labelled in pred, voxels labelled in truth) for one label value."""
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"label maps differ in shape: {pred.shape} vs {truth.shape}")
    p = pred == label
    t = truth == label
    return int(np.count_nonzero(p & t)), int(np.count_nonzero(p)), int(np.count_nonzero(t))


def dice(pred: np.ndarray, truth: np.ndarray, label: int) -> float:
    """2 |P & T| / (|P| + |T|) for the voxels carrying `label`, in 0..1.

    When neither map has the label (empty vs empty) the maps agree perfectly: 1.0. When only
    one has it, 0.0.
    """
    overlap, n_pred, n_truth = _counts(pred, truth, label)
    if n_pred + n_truth == 0:
        return 1.0
    return 2.0 * overlap / (n_pred + n_truth)


def iou(pred: np.ndarray, truth: np.ndarray, label: int) -> float:
    """|P & T| / |P | T| (Jaccard) for `label`, in 0..1; empty vs empty is 1.0, as for Dice."""
    overlap, n_pred, n_truth = _counts(pred, truth, label)
    union = n_pred + n_truth - overlap
    if union == 0:
        return 1.0
    return overlap / union


def per_label_scores(pred: np.ndarray, truth: np.ndarray, labels: Sequence[str],
                     skip_background: bool = True) -> dict[str, dict[str, float]]:
    """{label name: {"dice", "iou", "truth_voxels", "predicted_voxels"}}, label value = index.

    Label 0 is background by convention and left out unless `skip_background` is False. A
    label absent from both maps scores 1.0 (see `dice`). One comparison pass per label: on a
    120 x 512 x 512 map that is faster than a bincount confusion matrix.
    """
    scores: dict[str, dict[str, float]] = {}
    for value, name in enumerate(labels):
        if value == 0 and skip_background:
            continue
        overlap, n_pred, n_truth = _counts(pred, truth, value)
        union = n_pred + n_truth - overlap
        scores[name] = {
            "dice": 1.0 if n_pred + n_truth == 0 else 2.0 * overlap / (n_pred + n_truth),
            "iou": 1.0 if union == 0 else overlap / union,
            "truth_voxels": n_truth, "predicted_voxels": n_pred}
    return scores


def scores_against_mask(pred: np.ndarray, labels: Sequence[str], mask: np.ndarray,
                        mask_labels: Sequence[str], rows: Sequence[int] | None = None
                        ) -> dict[str, dict[str, float]]:
    """Dice / IoU of a model's label map against a mask labelled by another table (a SEG).

    Labels are matched by name, case-insensitively; the model's labels the mask does not name
    are left out (no truth to score them against). `rows`: only these slices count (a run on
    some slices is not penalised for the rest).
    """
    if pred.shape != mask.shape:
        raise ValueError(f"the mask {mask.shape} is not on the label map's grid {pred.shape}")
    by_name = {name.strip().lower(): value for value, name in enumerate(mask_labels) if value}
    remapped = np.zeros(mask.shape, np.uint8)
    shared = [0]
    for value, name in enumerate(labels):
        source = by_name.get(name.strip().lower())
        if value and source is not None:
            remapped[mask == source] = value
            shared.append(value)
    if rows is not None:
        pred, remapped = pred[list(rows)], remapped[list(rows)]
    scores = per_label_scores(pred, remapped, labels)
    return {name: s for value, (name, s) in enumerate(scores.items(), start=1)
            if value in shared}
