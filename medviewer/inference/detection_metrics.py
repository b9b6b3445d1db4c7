"""Detection metrics (numpy only): IoU, average precision at an IoU threshold, recall.

Boxes are (n, 4) x0 y0 x1 y1 with exclusive far edges, as `Box` and the phantoms' truth.
Predictions and truths are per image; labels are integer indices into the model's labels.
AP follows COCO (pycocotools' COCOeval, crowd-free, area range "all"): per image and label the
100 best-scoring boxes, matched greedily in score order to the best still-unmatched truth box
of IoU >= the threshold, then precision made monotone and read at 101 recall points 0, 0.01,
.., 1. COCO rather than PASCAL VOC's all-point area because it is the reference detection
papers and torchvision report, and retraining must agree with it (issue 5). On the shipped
heart detector's 64 held-out films the two give mAP50 0.9974 (COCO) and 0.9975 (VOC).
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
    last = len(truth.boxes) - 1
    for i in np.argsort(-pred.scores, kind="stable"):
        free = np.where(taken, -1.0, ious[i])
        j = last - int(np.argmax(free[::-1]))  # on a tie the later truth box, as COCOeval
        if not taken[j] and ious[i, j] >= iou_threshold:
            hits[i] = taken[j] = True
    return hits


def _best(pred: ImageBoxes, max_detections: int) -> ImageBoxes:
    """The `max_detections` best-scoring boxes, best first (ties keep their order)."""
    order = np.argsort(-pred.scores, kind="stable")[:max_detections]
    return ImageBoxes(pred.boxes[order], pred.labels[order], pred.scores[order])


def average_precision(predictions: Sequence[ImageBoxes], truths: Sequence[ImageBoxes], *,
                      iou_threshold: float = 0.5, label: int | None = None,
                      max_detections: int = 100) -> float:
    """COCO AP of one label (None: class-agnostic, i.e. localisation only); nan with no truths.

    Boxes on an image without truth boxes count as false positives; no boxes at all: 0.0.
    """
    scores, hits, total = [], [], 0
    for pred, truth in zip(predictions, truths, strict=True):
        p, t = _best(pred.only(label), max_detections), truth.only(label)
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


RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCOeval's recThrs


def _area(recall: np.ndarray, precision: np.ndarray) -> float:
    """COCO 101-point interpolation: the best precision at recall >= r, averaged over r.

    Recall points the curve never reaches count as precision 0.
    """
    best = np.maximum.accumulate(precision[::-1])[::-1]
    at = np.searchsorted(recall, RECALL_POINTS, side="left")
    reached = at < len(best)
    return float(np.where(reached, best[np.minimum(at, len(best) - 1)], 0.0).mean())


def recall(predictions: Sequence[ImageBoxes], truths: Sequence[ImageBoxes], *,
           iou_threshold: float = 0.5, score_threshold: float = 0.5,
           label: int | None = None, max_detections: int = 100) -> float:
    """Share of truth boxes found by a same-label box scoring >= score_threshold.

    Matched as for `average_precision`: COCOeval's recall of the boxes above the threshold,
    pooled over labels (found / truth boxes) rather than averaged per label.
    """
    found = total = 0
    for pred, truth in zip(predictions, truths, strict=True):
        keep = pred.scores >= score_threshold
        p = ImageBoxes(pred.boxes[keep], pred.labels[keep], pred.scores[keep])
        for lab in np.unique(truth.labels) if label is None else [label]:
            t = truth.only(int(lab))
            total += len(t.boxes)
            mine = _best(p.only(int(lab)), max_detections)
            found += int(_true_positives(mine, t, iou_threshold).sum())
    return found / total if total else float("nan")


def f1(predictions: Sequence[ImageBoxes], truths: Sequence[ImageBoxes], *,
       iou_threshold: float = 0.5, score_threshold: float = 0.5,
       max_detections: int = 100) -> float:
    """2 TP / (2 TP + FP + FN) of the boxes scoring >= score_threshold, matched per label as
    for `recall`: unlike recall, a detector that adds boxes where there is nothing pays for
    them. NaN when there is neither a truth box nor a kept box."""
    hits = kept = total = 0
    for pred, truth in zip(predictions, truths, strict=True):
        keep = pred.scores >= score_threshold
        p = ImageBoxes(pred.boxes[keep], pred.labels[keep], pred.scores[keep])
        for lab in np.union1d(np.unique(truth.labels), np.unique(p.labels)):
            t, mine = truth.only(int(lab)), _best(p.only(int(lab)), max_detections)
            total += len(t.boxes)
            kept += len(mine.boxes)
            hits += int(_true_positives(mine, t, iou_threshold).sum())
    return 2 * hits / (kept + total) if kept + total else float("nan")


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
