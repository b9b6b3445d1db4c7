"""Validation scores of a training run, per epoch: numpy and scikit-learn only, no torch.

The viewer (compare dialog, model versions) reads the same numbers, so nothing here may pull
torch in. One convention everywhere:

- classification: accuracy, F1 (binary: class 1 is the finding; more classes: macro over the
  classes in the truth or the prediction, as scikit-learn), ROC-AUC (binary: P(class 1); more
  classes: macro one-vs-rest), the ROC curve (binary) and the confusion matrix.
- segmentation: Dice, IoU, precision, recall, boundary F1 and HD95 of each foreground label
  and pixel accuracy, mean pixel accuracy, mean IoU (background included) on each case (all
  slices of a case pooled: a volume score, as a radiologist reads it), then averaged; a label
  absent from both truth and prediction scores 1.0, as in `medviewer.inference.metrics`.
  Outlines are per slice on the model's input grid (no voxel size reaches the loop), so
  boundary F1 is at a tolerance in pixels and HD95 is in pixels ("hd95_px"); HD95 is the one
  lower-is-better score (`lower_is_better`).
- detection: COCO AP at IoU 0.5 and recall at the viewer's score threshold, from
  `medviewer.inference.detection_metrics`.

A score that cannot be computed on this split is NaN with a "<name>_note" saying why.
`score_summary` turns a result into plain JSON-safe numbers (NaN -> None).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medviewer.inference.detection_metrics import ImageBoxes, average_precision, recall
from medviewer.training.segmentation_metrics import (  # noqa: F401 - this module's API
    SEGMENTATION_OVERALL,
    SEGMENTATION_PER_LABEL,
    SegmentationTally,
    _key,
    lower_is_better,
    segmentation_scores,
)

MAIN_METRICS = {"classification": "roc_auc", "segmentation": "dice", "detection": "ap50"}


# --- classification ----------------------------------------------------------------------------

def _as_probabilities(truth: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Checked (n,) int truth and (n, K) float scores; a 1-D score is P(class 1) of two."""
    truth = np.asarray(truth).reshape(-1).astype(np.int64)
    probs = np.asarray(probs, np.float64)
    if probs.ndim == 1:
        probs = np.stack([1.0 - probs, probs], axis=1)
    if probs.ndim != 2 or probs.shape[1] < 2 or len(probs) != len(truth):
        raise ValueError(f"need (n, K >= 2) class scores for {len(truth)} samples, "
                         f"got shape {probs.shape}")
    if not len(truth):
        raise ValueError("no validation samples to score")
    if truth.min() < 0 or truth.max() >= probs.shape[1]:
        raise ValueError(f"truth classes must lie in 0..{probs.shape[1] - 1}")
    return truth, probs


def _roc_auc(truth: np.ndarray, probs: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """ROC-AUC (+ the curve when binary), or NaN and a note when the truth cannot rank.

    scikit-learn's roc_auc_score / roc_curve: tie handling and the curve's corner points
    are easy to get subtly wrong, and the result must agree with it anyway. More classes:
    the mean of one-vs-rest AUCs (scikit-learn's multi_class="ovr", average="macro"), taken
    over the classes the truth holds so that one missing class does not void the score.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    present = np.unique(truth)
    out: dict[str, Any] = {"roc_auc": float("nan"), "roc": None}
    if len(present) < 2:
        out["roc_auc_note"] = (f"ROC-AUC needs cases of two classes; the validation truth "
                               f"holds only {names[int(present[0])]}")
        return out
    if probs.shape[1] == 2:
        out["roc_auc"] = float(roc_auc_score(truth, probs[:, 1]))
        fpr, tpr, _ = roc_curve(truth, probs[:, 1])
        out["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
        return out
    aucs = [roc_auc_score(truth == k, probs[:, k]) for k in present]
    out["roc_auc"] = float(np.mean(aucs))
    missing = [names[k] for k in range(probs.shape[1]) if k not in set(present.tolist())]
    if missing:
        out["roc_auc_note"] = (f"ROC-AUC averaged over the {len(present)} classes the "
                               f"validation truth holds; no case of {', '.join(missing)}")
    return out


def classification_scores(truth: Any, probs: Any,
                          labels: Sequence[str] | None = None) -> dict[str, Any]:
    """accuracy, f1, roc_auc (+ roc_auc_note), roc (binary), confusion, n.

    `truth`: (n,) class indices; `probs`: (n, K) class probabilities (softmax), index = class;
    `labels`: class names for the notes and the confusion matrix (default "0", "1", ...).
    F1 comes from scikit-learn's f1_score (zero_division=0: no finding in truth nor
    prediction scores 0, as scikit-learn does); accuracy and the confusion matrix are counts.
    """
    from sklearn.metrics import f1_score

    truth, probs = _as_probabilities(truth, probs)
    k = probs.shape[1]
    names = [str(n) for n in labels] if labels is not None else [str(i) for i in range(k)]
    predicted = probs.argmax(axis=1)
    binary = k == 2
    scores: dict[str, Any] = {
        "accuracy": float(np.mean(predicted == truth)),
        "f1": float(f1_score(truth, predicted, average="binary" if binary else "macro",
                             zero_division=0.0)),
        "n": len(truth)}
    if binary and not (truth.any() or predicted.any()):
        scores["f1_note"] = f"no {names[1]} in the truth nor the predictions: F1 is 0"
    scores.update(_roc_auc(truth, probs, names))
    matrix = np.bincount(truth * k + predicted, minlength=k * k).reshape(k, k)
    scores["confusion"] = {"labels": names, "matrix": matrix.tolist(),
                           "rows": "truth", "columns": "prediction"}
    return scores


# --- segmentation ------------------------------------------------------------------------------

# --- detection ---------------------------------------------------------------------------------

def _image_boxes(item: ImageBoxes | Mapping[str, Any]) -> ImageBoxes:
    """An ImageBoxes, or one made from a {"boxes", "labels"[, "scores"]} dict."""
    if isinstance(item, ImageBoxes):
        return item
    scores = item.get("scores")
    return ImageBoxes(np.asarray(item["boxes"]), np.asarray(item["labels"]),
                      np.zeros(0) if scores is None else np.asarray(scores))


def detection_scores(pred: Sequence[ImageBoxes | Mapping[str, Any]],
                     truth: Sequence[ImageBoxes | Mapping[str, Any]],
                     labels: Sequence[str] | None = None, *,
                     score_threshold: float = 0.5) -> dict[str, Any]:
    """ap50 (COCO AP at IoU 0.5, mean over labels with truth boxes), ap50_<label>, recall.

    One entry per image, boxes x0 y0 x1 y1 in the same pixels, labels 0-based indices into
    the model's labels (torchvision's detector counts from 1: subtract 1 first). Images
    without boxes are fine (their predictions are false positives); no predictions: 0.0.
    `recall`: share of truth boxes found at IoU 0.5 by a same-label box scoring at least
    `score_threshold`, the boxes the viewer shows.
    """
    pred = [_image_boxes(p) for p in pred]
    truth = [_image_boxes(t) for t in truth]
    if len(pred) != len(truth):
        raise ValueError(f"{len(pred)} predicted images for {len(truth)} truth images")
    found = sorted({int(v) for t in truth for v in t.labels})
    classes = range(len(labels)) if labels is not None else found
    per_label = {k: average_precision(pred, truth, label=k, iou_threshold=0.5)
                 for k in classes}
    scored = [v for v in per_label.values() if not math.isnan(v)]
    out: dict[str, Any] = {"ap50": float(np.mean(scored)) if scored else float("nan")}
    for k, v in per_label.items():
        out[f"ap50_{_key(labels[k]) if labels is not None else k}"] = v
    out["recall"] = recall(pred, truth, iou_threshold=0.5, score_threshold=score_threshold)
    out["truth_boxes"] = sum(len(t.boxes) for t in truth)
    out["n"] = len(truth)
    if not scored:
        out["ap50_note"] = out["recall_note"] = "the validation images hold no truth boxes"
    return out


# --- choosing and reporting --------------------------------------------------------------------

def main_metric(task: str, scores: Mapping[str, Any] | None = None) -> str:
    """The score that picks the best epoch and the better version; higher is better.

    Classification ranks by ROC-AUC, or by accuracy when the split makes ROC-AUC undefined
    (one class only; it stays so for the whole run, the split being fixed).
    """
    if task not in MAIN_METRICS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(MAIN_METRICS)}")
    name = MAIN_METRICS[task]
    if scores is not None and name == "roc_auc" and _is_nan(scores.get(name)):
        return "accuracy"
    return name


def _is_nan(value: Any) -> bool:
    return value is None or (isinstance(value, float | np.floating) and math.isnan(value))


def score_summary(scores: Mapping[str, Any], digits: int | None = None
                  ) -> dict[str, float | int | None]:
    """The scalar scores only (no curves, matrices, per-case tables or notes), JSON-safe.

    NaN becomes None (JSON has no NaN); numpy numbers become Python ones; `digits` rounds,
    as the manifests store them.
    """
    out: dict[str, float | int | None] = {}
    for name, value in scores.items():
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
            continue
        if isinstance(value, int | np.integer):
            out[name] = int(value)
        elif math.isnan(value):
            out[name] = None
        else:
            out[name] = round(float(value), digits) if digits is not None else float(value)
    return out


# --- is the candidate better? ------------------------------------------------------------------

# Below this many paired validation cases no verdict is given. The percentile bootstrap's
# nominal 95% interval is too narrow on few cases: simulated on normal per-case differences it
# covers the true mean difference in 76% of runs with 3 cases, 83% with 5 and 90% with 10
# (92% with 20), so with fewer than 10 cases "better" would overstate the evidence.
MIN_PAIRED_CASES = 10
BOOTSTRAP_RESAMPLES = 2000
VERDICTS = {"better": "better", "worse": "worse",
            "no clear difference": "no clear difference",
            "too few cases": "not enough validation cases to tell"}


def paired_comparison(current: Mapping[str, Any] | None, candidate: Mapping[str, Any] | None,
                      *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                      min_cases: int = MIN_PAIRED_CASES, level: float = 0.95
                      ) -> dict[str, Any]:
    """Candidate minus current on each validation case both scored, with a paired bootstrap
    interval of the mean difference (cases resampled with replacement, `seed` fixed).

    The verdict (higher is better): "better" when the whole interval lies above 0, "worse"
    when below, "no clear difference" when it holds 0, "too few cases" below `min_cases`
    (the interval is still given from 2 cases on, as a hint). JSON-safe.
    """
    current, candidate = dict(current or {}), dict(candidate or {})
    cases = sorted((c for c in set(current) & set(candidate)
                    if not _is_nan(current[c]) and not _is_nan(candidate[c])), key=_natural)
    old = np.array([float(current[c]) for c in cases])
    new = np.array([float(candidate[c]) for c in cases])
    diffs = np.round(new - old, 9)  # float noise (1e-12) is no difference, not "better"
    n = len(cases)
    out: dict[str, Any] = {
        "cases": cases, "current": old.tolist(), "candidate": new.tolist(),
        "differences": diffs.tolist(), "n": n, "min_cases": min_cases, "level": level,
        "resamples": resamples, "seed": seed,
        "mean_difference": float(diffs.mean()) if n else None, "ci": None,
        "unpaired": sorted(set(current) ^ set(candidate)),
        "unscored": sorted(set(current) & set(candidate) - set(cases))}  # NaN on one side
    if n >= 2:
        rng = np.random.default_rng(seed)
        means = diffs[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
        tail = (1 - level) / 2
        out["ci"] = [float(v) for v in np.quantile(means, [tail, 1 - tail])]
    if n < min_cases:
        out["verdict"] = "too few cases"
    elif out["ci"][0] > 0:
        out["verdict"] = "better"
    elif out["ci"][1] < 0:
        out["verdict"] = "worse"
    else:
        out["verdict"] = "no clear difference"
    return out


def _natural(name: str) -> list:
    """'case 2' before 'case 10': numbers in names compare as numbers."""
    import re

    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", str(name))]


def comparison_text(paired: Mapping[str, Any], what: str = "score") -> str:
    """One sentence: the verdict, the mean difference and its interval, the cases."""
    n, verdict = int(paired.get("n") or 0), str(paired.get("verdict") or "too few cases")
    mean, ci = paired.get("mean_difference"), paired.get("ci")
    left = len(paired.get("unpaired") or []) + len(paired.get("unscored") or [])
    left_out = (f" ({left} case(s) left out: not scored by both versions)" if left else "")
    interval = (f"mean difference {mean:+.4f}, {round(100 * paired.get('level', 0.95))}% "
                f"interval {ci[0]:+.4f} to {ci[1]:+.4f} (paired bootstrap, "
                f"{paired.get('resamples')} resamples)") if ci else ""
    if verdict == "too few cases":
        return (f"Not enough validation cases to tell: {n} case(s) scored by both versions, "
                f"at least {paired.get('min_cases')} needed" + (f"; {interval}" if ci else "")
                + left_out + ".")
    head = {"better": "The candidate is better", "worse": "The candidate is worse",
            "no clear difference": "No clear difference"}[verdict]
    return f"{head} on {what} over {n} validation cases: {interval}{left_out}."
