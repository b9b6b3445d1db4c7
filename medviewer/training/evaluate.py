"""Scores on the validation split: from torch outputs (each epoch) or a model folder (ONNX).

`Collector` turns a model's raw outputs (logits, or boxes / scores / 1-based labels as the
detector graph returns them) plus the items' truth into the metrics module's scores; the
loop feeds it torch outputs, `evaluate_folder` feeds it ONNX Runtime's, so the epoch curves
and the final comparison are computed the same way. The comparison runs the exported
model.onnx - what the viewer will run - not the torch weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medviewer.inference.detection_metrics import ImageBoxes
from medviewer.inference.manifest import Manifest, load_manifest

DETAIL_KEYS = ("per_case", "roc", "confusion")
# what `per_case` holds for each task: the score the paired comparison of two versions uses
PER_CASE = {"segmentation": "the mean Dice of each case",
            "classification": "the accuracy on each case's samples",
            "detection": "the recall of each case's boxes (IoU 0.5, score 0.5)"}


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Collector:
    """Outputs and truths of one pass over the validation items -> scores."""

    def __init__(self, task: str, labels: Sequence[str]) -> None:
        self.task, self.labels = task, list(labels)
        self.pred: list[Any] = []
        self.truth: list[Any] = []
        self.cases: list[str] = []
        self.tally = None  # segmentation: confusion counts per case, no maps kept
        if task == "segmentation":
            from medviewer.training.metrics import SegmentationTally

            self.tally = SegmentationTally(self.labels)

    def add_logits(self, logits: np.ndarray, target: np.ndarray, cases: Sequence[str]) -> None:
        """Classification (n, K) or segmentation (n, K, ...) logits with their truth."""
        if self.tally is not None:
            # a binary net's one foreground logit (lab 4): foreground where it is > 0
            labels = (logits[:, 0] > 0).astype(np.int64) if logits.shape[1] == 1 else (
                logits.argmax(axis=1))
            self.tally.add(labels, np.asarray(target), list(cases))
        else:
            self.pred.append(softmax(logits))
            self.truth.append(np.asarray(target, np.int64).reshape(-1))
        self.cases.extend(cases)

    def add_boxes(self, found: tuple[np.ndarray, np.ndarray, np.ndarray], target: dict,
                  case: str) -> None:
        """One image: the detector's (boxes, scores, 1-based labels) and its truth boxes."""
        boxes, scores, labels = (np.asarray(a) for a in found)
        self.pred.append(ImageBoxes(boxes, labels.astype(np.int64) - 1, scores))
        self.truth.append(ImageBoxes(np.asarray(target["boxes"]),
                                     np.asarray(target["labels"], np.int64) - 1))
        self.cases.append(case)

    def scores(self) -> dict[str, Any]:
        from medviewer.training import metrics

        if self.tally is not None:
            return self.tally.scores()
        if self.task == "detection":
            out = dict(metrics.detection_scores(self.pred, self.truth, self.labels))
            out.setdefault("per_case", _per_case_f1(self.pred, self.truth, self.cases))
            return out
        truth, probs = np.concatenate(self.truth), np.concatenate(self.pred)
        out = dict(metrics.classification_scores(truth, probs, self.labels))
        out.setdefault("per_case", _per_case_accuracy(truth, probs, self.cases))
        return out


def _per_case_accuracy(truth: np.ndarray, probs: np.ndarray, cases: Sequence[str]
                       ) -> dict[str, float]:
    """Fraction of each case's samples (slices) classified right."""
    right = probs.argmax(axis=1) == truth
    out: dict[str, list[bool]] = {}
    for case, ok in zip(cases, right, strict=True):
        out.setdefault(case, []).append(bool(ok))
    return {case: float(np.mean(v)) for case, v in out.items()}


def _per_case_f1(pred: Sequence[ImageBoxes], truth: Sequence[ImageBoxes],
                 cases: Sequence[str]) -> dict[str, float]:
    """Box F1 of each case at IoU 0.5 and score 0.5: boxes found and boxes made up both count
    (a case with no truth box scores 0 for any box kept, and is left out when none is)."""
    from medviewer.inference.detection_metrics import f1

    groups: dict[str, list[int]] = {}
    for i, case in enumerate(cases):
        groups.setdefault(case, []).append(i)
    out = {}
    for case, rows in groups.items():
        value = f1([pred[i] for i in rows], [truth[i] for i in rows])
        if value == value:  # not NaN
            out[case] = float(value)
    return out


def main_metric(task: str, scores: dict[str, Any] | None = None) -> str:
    """The metric the run is judged by (accuracy when the split leaves ROC-AUC undefined)."""
    from medviewer.training import metrics

    return metrics.main_metric(task, scores)


def split_details(scores: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(headline numbers, per_case / roc / confusion), the way compare.json holds them."""
    numbers = {k: v for k, v in scores.items() if k not in DETAIL_KEYS}
    return numbers, {k: scores.get(k) for k in DETAIL_KEYS}


def json_safe(value: Any) -> Any:
    """NaN / inf -> None and numpy scalars -> Python: strict JSON a GUI can parse."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- a model folder through ONNX Runtime --------------------------------------------------

def _feed(manifest: Manifest, batch: dict) -> dict[str, np.ndarray]:
    return {name: np.ascontiguousarray(
        (batch["extras"] if name == "extras" else batch["image"]).numpy(), np.float32)
        for name in manifest.onnx_inputs}


def evaluate_folder(model: str | Path | Manifest, validation: Any, collate: Callable,
                    task: str, labels: Sequence[str], batch_size: int = 16,
                    providers: list[str] | None = None) -> dict[str, Any]:
    """Run model.onnx of a model folder over the validation items; the metrics' scores."""
    from torch.utils.data import DataLoader

    from medviewer.inference.session import ModelSession

    manifest = model if isinstance(model, Manifest) else load_manifest(model, verify=True)
    session = ModelSession(manifest, providers or ["CPUExecutionProvider"])
    collector = Collector(task, labels)
    detection = task == "detection"
    loader = DataLoader(validation, batch_size=1 if detection else batch_size,
                        collate_fn=collate, num_workers=0)
    for batch in loader:
        if detection:
            for item in batch:
                out = session.run({"image": item["image"][None].numpy()})
                collector.add_boxes(tuple(out.values()), item["target"], item["case"])
        else:
            out = session.run(_feed(manifest, batch))
            collector.add_logits(next(iter(out.values())), batch["target"].numpy(),
                                 batch["case"])
    return collector.scores()
