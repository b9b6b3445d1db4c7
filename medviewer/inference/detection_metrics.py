"""Detection metrics (numpy only): IoU, average precision at an IoU threshold, recall.

Boxes are (n, 4) x0 y0 x1 y1 with exclusive far edges, as `Box` and the phantoms' truth.
Predictions and truths are per image; labels are integer indices into the model's labels.
AP is PASCAL VOC's all-point interpolated area under the precision-recall curve, detections
matched greedily in score order, each truth box matched at most once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ImageBoxes:
    """The boxes of one image: truths leave `scores` empty."""

    boxes: np.ndarray  # (n, 4)
    labels: np.ndarray  # (n,) int
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float64).reshape(-1, 4)
        self.labels = np.asarray(self.labels, np.int64).reshape(-1)
        self.scores = np.asarray(self.scores, np.float64).reshape(-1)
        if len(self.labels) != len(self.boxes):
            raise ValueError("one label per box")

    def only(self, label: int | None) -> ImageBoxes:
        """The boxes of one label (all of them for None)."""
        keep = np.ones(len(self.boxes), bool) if label is None else self.labels == label
        scores = self.scores[keep] if len(self.scores) else self.scores
        return ImageBoxes(self.boxes[keep], self.labels[keep], scores)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) intersection over union of two box sets."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _true_positives(pred: ImageBoxes, truth: ImageBoxes, iou_threshold: float) -> np.ndarray:
    """For each prediction (in the given order): did it claim a still-unmatched truth box?"""
    hits = np.zeros(len(pred.boxes), bool)
    taken = np.zeros(len(truth.boxes), bool)
    if not len(truth.boxes):
        return hits
    ious = box_iou(pred.boxes, truth.boxes)
    for i in np.argsort(-pred.scores, kind="stable"):
        j = int(np.argmax(np.where(taken, -1.0, ious[i])))
        if not taken[j] and ious[i, j] >= iou_threshold:
            hits[i] = taken[j] = True
    return hits


def average_precision(predictions: Sequence[ImageBoxes], truths: Sequence[ImageBoxes], *,
                      iou_threshold: float = 0.5, label: int | None = None) -> float:
    """AP of one label (None: class-agnostic, i.e. localisation only); nan with no truths."""
    scores, hits, total = [], [], 0
    for pred, truth in zip(predictions, truths, strict=True):
        p, t = pred.only(label), truth.only(label)
        total += len(t.boxes)
        scores.append(p.scores)
        hits.append(_true_positives(p, t, iou_threshold))
    if total == 0:
        return float("nan")
    order = np.argsort(-np.concatenate(scores), kind="stable")
    tp = np.concatenate(hits)[order].astype(np.float64)
    if not len(tp):
        return 0.0
    recall = np.cumsum(tp) / total
    precision = np.cumsum(tp) / np.arange(1, len(tp) + 1)
    return _area(recall, precision)


def _area(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point interpolation: precision made monotone, summed over recall steps."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def recall(predictions: Sequence[ImageBoxes], truths: Sequence[ImageBoxes], *,
           iou_threshold: float = 0.5, score_threshold: float = 0.5,
           label: int | None = None) -> float:
    """Share of truth boxes found by a same-label box scoring >= score_threshold."""
    found = total = 0
    for pred, truth in zip(predictions, truths, strict=True):
        keep = pred.scores >= score_threshold
        p = ImageBoxes(pred.boxes[keep], pred.labels[keep], pred.scores[keep])
        for lab in np.unique(truth.labels) if label is None else [label]:
            t = truth.only(int(lab))
            total += len(t.boxes)
            found += int(_true_positives(p.only(int(lab)), t, iou_threshold).sum())
    return found / total if total else float("nan")


def top_box_correct(predictions: Sequence[ImageBoxes], truths: Sequence[ImageBoxes], *,
                    iou_threshold: float = 0.5) -> float:
    """Share of images whose best-scoring box overlaps a truth box of the same label."""
    good = 0
    for pred, truth in zip(predictions, truths, strict=True):
        if not len(pred.boxes):
            continue
        i = int(np.argmax(pred.scores))
        same = truth.only(int(pred.labels[i]))
        good += bool(len(same.boxes)) and box_iou(pred.boxes[i], same.boxes).max() >= iou_threshold
    return good / len(truths) if len(truths) else float("nan")


def detection_report(predictions: Sequence[ImageBoxes], truths: Sequence[ImageBoxes],
                     labels: Sequence[str], *, iou_threshold: float = 0.5,
                     score_threshold: float = 0.5) -> dict[str, float]:
    """AP per label, their mean, class-agnostic AP, recall and top-box accuracy, rounded.

    Keys name the IoU threshold in percent: ap50_<label>, map50, ap50_any_label, ...
    """
    kw = {"iou_threshold": iou_threshold}
    tag = f"ap{round(iou_threshold * 100)}"
    ap = {name: average_precision(predictions, truths, label=k, **kw)
          for k, name in enumerate(labels)}
    present = [v for v in ap.values() if not np.isnan(v)]
    out = {f"{tag}_{name.replace(' ', '_')}": v for name, v in ap.items()}
    out[f"m{tag}"] = float(np.mean(present)) if present else float("nan")
    out[f"{tag}_any_label"] = average_precision(predictions, truths, **kw)
    out["recall"] = recall(predictions, truths, score_threshold=score_threshold, **kw)
    out["top_box_correct"] = top_box_correct(predictions, truths, **kw)
    return {k: round(float(v), 4) for k, v in out.items()}
