"""The training run's segmentation scores against independent references: scikit-learn on
each case's pooled voxels, brute-force pairwise distances for the outline scores."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    jaccard_score,
    precision_score,
    recall_score,
)

from medviewer.training import metrics as tm
from tests.inference.test_metrics_reference import _blobs, _directed_brute

LABELS = ["background", "lung", "nodule"]


def _maps(seed: int, n: int = 6) -> tuple[list, list, list]:
    rng = np.random.default_rng(seed)
    truth = [_blobs(rng, (24, 20)) for _ in range(n)]
    pred = [np.where(rng.random(t.shape) < 0.1, rng.integers(0, 3, t.shape), t) for t in truth]
    pred[2][pred[2] == 2] = 0  # a slice where the nodule is missed
    truth[4][truth[4] == 2] = 0  # and one where it is made up
    return pred, truth, ["a", "a", "b", "b", "c", "c"][:n]


@pytest.mark.parametrize("seed", range(3))
def test_count_scores_agree_with_scikit_learn_case_by_case(seed):
    pred, truth, cases = _maps(seed)
    s = tm.segmentation_scores(pred, truth, LABELS, cases)
    expected: dict[str, list] = {}
    for case in dict.fromkeys(cases):
        t = np.concatenate([m.ravel() for m, c in zip(truth, cases, strict=True) if c == case])
        p = np.concatenate([m.ravel() for m, c in zip(pred, cases, strict=True) if c == case])
        with warnings.catch_warnings():  # a class only predicted (case "c")
            warnings.simplefilter("ignore")
            row = {"pixel_accuracy": accuracy_score(t, p),
                   "mean_pixel_accuracy": balanced_accuracy_score(t, p),
                   "mean_iou": jaccard_score(t, p, average="macro")}
            for v, name in enumerate(LABELS[1:], start=1):
                row[f"precision_{name}"] = precision_score(t, p, labels=[v], average=None,
                                                           zero_division=0)[0]
                row[f"recall_{name}"] = recall_score(t, p, labels=[v], average=None,
                                                     zero_division=0)[0]
        for key, value in row.items():
            expected.setdefault(key, []).append(value)
    for key, values in expected.items():
        assert s[key] == pytest.approx(np.mean(values)), key
    assert s["precision"] == pytest.approx(np.mean([s["precision_lung"],
                                                    s["precision_nodule"]]))


def test_outline_scores_agree_with_brute_force_per_slice_pooled_by_case():
    pred, truth, cases = _maps(7)
    tolerance = 1.5
    tally = tm.SegmentationTally(LABELS, tolerance_px=tolerance)
    tally.add(pred, truth, cases)
    s = tally.scores()
    for v, name in enumerate(LABELS[1:], start=1):
        f1s, hd95s = [], []
        for case in dict.fromkeys(cases):
            near = {"p": [], "t": []}
            far = {"p": [], "t": []}
            for pm, tm_, c in zip(pred, truth, cases, strict=True):
                p, t = pm == v, tm_ == v
                if c != case or not (p.any() or t.any()):
                    continue
                if p.any() and t.any():
                    for side, (a, b) in {"p": (p, t), "t": (t, p)}.items():
                        d = _directed_brute(a, b, (1.0, 1.0))
                        near[side].append(d <= tolerance)
                        far[side].append(d)
                else:  # no counterpart on this slice: every outline point is a miss
                    side, a = ("p", p) if p.any() else ("t", t)
                    n = len(_directed_brute(a, a, (1.0, 1.0)))
                    near[side].append(np.zeros(n, bool))
            pr, rc = (np.concatenate(near[k]).mean() for k in ("p", "t"))
            f1s.append(0.0 if pr + rc == 0 else 2 * pr * rc / (pr + rc))
            if far["p"]:
                hd95s.append(max(np.percentile(np.concatenate(far[k]), 95) for k in "pt"))
        assert s[f"boundary_f1_{name}"] == pytest.approx(np.mean(f1s)), name
        assert s[f"hd95_px_{name}"] == pytest.approx(np.mean(hd95s)), name
    assert "2 px" not in s["boundary_note"] and "1.5 px" in s["boundary_note"]


def test_hd95_is_the_one_score_where_lower_is_better_and_nan_says_why():
    empty = np.zeros((6, 6), np.int64)
    square = empty.copy()
    square[1:4, 1:4] = 1
    s = tm.segmentation_scores([square], [empty], ["background", "lesion"])
    assert np.isnan(s["hd95_px"]) and "no validation slice" in s["hd95_px_note"]
    assert s["boundary_f1"] == 0.0 and s["precision"] == 0.0 and s["recall"] == 0.0
    assert tm.lower_is_better("hd95_px_lesion") and not tm.lower_is_better("dice")
    assert "hd95_px" not in tm.score_summary(s) or tm.score_summary(s)["hd95_px"] is None
