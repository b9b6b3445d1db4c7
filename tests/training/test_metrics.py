"""Validation scores agree with their references: scikit-learn for classification, COCOeval
(pycocotools) for AP and recall, a direct set computation for Dice / IoU."""

from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from sklearn import metrics as skm

from medviewer.inference import detection_metrics as dm
from medviewer.inference.metrics import dice as viewer_dice
from medviewer.training import metrics as tm

SEEDS = [0, 1, 2, 3]


def softmax_scores(rng: np.random.Generator, truth: np.ndarray, k: int) -> np.ndarray:
    """Class probabilities that lean towards the truth, so no score is trivially 0 or 1."""
    logits = rng.normal(size=(len(truth), k))
    logits[np.arange(len(truth)), truth] += rng.uniform(0, 2, len(truth))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --- classification ----------------------------------------------------------------------------

@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("seed", SEEDS)
def test_classification_agrees_with_scikit_learn(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, 200)
    probs = softmax_scores(rng, truth, k)
    s = tm.classification_scores(truth, probs)
    predicted = probs.argmax(axis=1)
    assert s["accuracy"] == pytest.approx(skm.accuracy_score(truth, predicted), abs=1e-6)
    average = "binary" if k == 2 else "macro"
    assert s["f1"] == pytest.approx(skm.f1_score(truth, predicted, average=average), abs=1e-6)
    auc = (skm.roc_auc_score(truth, probs[:, 1]) if k == 2 else
           skm.roc_auc_score(truth, probs, multi_class="ovr", average="macro"))
    assert s["roc_auc"] == pytest.approx(auc, abs=1e-6)
    assert s["confusion"]["matrix"] == skm.confusion_matrix(truth, predicted).tolist()
    assert "roc_auc_note" not in s and tm.main_metric("classification", s) == "roc_auc"
    if k == 2:
        fpr, tpr, _ = skm.roc_curve(truth, probs[:, 1])
        assert np.allclose(s["roc"]["fpr"], fpr) and np.allclose(s["roc"]["tpr"], tpr)
        assert np.trapezoid(s["roc"]["tpr"], s["roc"]["fpr"]) == pytest.approx(s["roc_auc"])
    else:
        assert s["roc"] is None


def test_one_class_only_leaves_roc_auc_undefined_but_scores_accuracy() -> None:
    rng = np.random.default_rng(5)
    truth = np.ones(12, int)
    probs = softmax_scores(rng, truth, 2)
    s = tm.classification_scores(truth, probs, ["normal", "nodule"])
    assert math.isnan(s["roc_auc"]) and "only nodule" in s["roc_auc_note"] and s["roc"] is None
    assert s["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == 1))
    assert tm.main_metric("classification", s) == "accuracy"
    assert tm.score_summary(s)["roc_auc"] is None


def test_a_class_missing_from_the_truth_averages_over_the_others() -> None:
    rng = np.random.default_rng(6)
    truth = rng.integers(0, 2, 80)  # class 2 never occurs
    probs = softmax_scores(rng, truth, 3)
    s = tm.classification_scores(truth, probs, ["a", "b", "c"])
    expected = np.mean([skm.roc_auc_score(truth == c, probs[:, c]) for c in (0, 1)])
    assert s["roc_auc"] == pytest.approx(expected, abs=1e-6) and "no case of c" in s["roc_auc_note"]
    assert s["f1"] == pytest.approx(
        skm.f1_score(truth, probs.argmax(1), average="macro", zero_division=0.0), abs=1e-6)


def test_no_finding_anywhere_gives_f1_zero_with_a_note() -> None:
    truth = np.zeros(6, int)
    probs = np.tile([0.9, 0.1], (6, 1))
    s = tm.classification_scores(truth, probs, ["normal", "nodule"])
    assert s["f1"] == 0.0 and "no nodule" in s["f1_note"] and s["accuracy"] == 1.0


def test_bad_classification_input_is_refused() -> None:
    with pytest.raises(ValueError, match="0..1"):
        tm.classification_scores([0, 2], [[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match="shape"):
        tm.classification_scores([0, 1, 1], [[0.5, 0.5], [0.5, 0.5]])


# --- segmentation ------------------------------------------------------------------------------

def set_scores(pred: list, truth: list, cases: list, label: int) -> dict[str, tuple]:
    """{case: (dice, iou)} from Python sets of (slice, pixel) positions of one label."""
    out = {}
    for case in dict.fromkeys(cases):
        mine = [i for i, c in enumerate(cases) if c == case]
        p = {(i, j) for i in mine for j in np.flatnonzero(pred[i] == label)}
        t = {(i, j) for i in mine for j in np.flatnonzero(truth[i] == label)}
        if not p and not t:
            out[case] = (1.0, 1.0)
        else:
            out[case] = (2 * len(p & t) / (len(p) + len(t)), len(p & t) / len(p | t))
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_dice_and_iou_agree_with_sets(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = ["background", "lung", "heart", "nodule"]
    truth = [rng.integers(0, 4, (16, 12)) for _ in range(7)]
    pred = [np.where(rng.random(t.shape) < 0.6, t, rng.integers(0, 4, t.shape)) for t in truth]
    pred[3][pred[3] == 3] = 0  # one slice without any nodule predicted
    truth[3][truth[3] == 3] = 0  # ... nor in the truth: that case-slice pair scores 1.0
    cases = ["a", "a", "b", "c", "b", "d", "d"]
    s = tm.segmentation_scores(pred, truth, labels, cases)
    by_label = {v: set_scores(pred, truth, cases, v) for v in (1, 2, 3)}
    for v, name in [(1, "lung"), (2, "heart"), (3, "nodule")]:
        assert s[f"dice_{name}"] == pytest.approx(
            np.mean([d for d, _ in by_label[v].values()]), abs=1e-6)
        assert s[f"iou_{name}"] == pytest.approx(
            np.mean([j for _, j in by_label[v].values()]), abs=1e-6)
    for case in "abcd":
        assert s["per_case"][case] == pytest.approx(
            np.mean([by_label[v][case][0] for v in (1, 2, 3)]), abs=1e-6)
    assert s["dice"] == pytest.approx(np.mean(list(s["per_case"].values())), abs=1e-6)
    assert s["n_cases"] == 4


def test_empty_truth_and_prediction_follow_the_viewers_convention() -> None:
    empty, blob = np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8)
    blob[2:5, 2:5] = 1
    for pred, truth in [(empty, empty), (blob, empty), (empty, blob), (blob, blob)]:
        s = tm.segmentation_scores([pred], [truth], ["background", "lesion"])
        assert s["dice_lesion"] == viewer_dice(pred, truth, 1)
    assert tm.segmentation_scores([empty], [empty], ["background", "lesion"])["iou"] == 1.0


def test_batches_add_up_to_the_whole() -> None:
    rng = np.random.default_rng(9)
    truth = rng.integers(0, 3, (6, 10, 10))
    pred = rng.integers(0, 3, (6, 10, 10))
    cases = ["x", "y", "x", "y", "z", "z"]
    tally = tm.SegmentationTally(["bg", "liver", "spleen"])
    tally.add(pred[:4], truth[:4], cases[:4])
    tally.add(pred[4:], truth[4:], cases[4:])
    assert tally.scores() == tm.segmentation_scores(pred, truth, tally.labels, cases)


def test_bad_label_maps_are_refused() -> None:
    with pytest.raises(ValueError, match="0..1"):
        tm.segmentation_scores([np.full((2, 2), 2)], [np.zeros((2, 2))], ["bg", "lesion"])
    with pytest.raises(ValueError, match="shape"):
        tm.segmentation_scores([np.zeros((2, 3))], [np.zeros((2, 2))], ["bg", "lesion"])


# --- detection ---------------------------------------------------------------------------------

def random_detection_split(rng: np.random.Generator, n_images: int = 12, k: int = 3):
    """Truth boxes (some images have none) and predictions: jittered truths, strays, and
    one image with more than COCO's 100 boxes."""
    truths, preds = [], []
    for i in range(n_images):
        n = int(rng.integers(0, 4)) if i % 5 else 0
        xy = rng.uniform(0, 200, (n, 2))
        t = np.hstack([xy, xy + rng.uniform(10, 60, (n, 2))])
        t_labels = rng.integers(0, k, n)
        corner = t[:, :2] + rng.normal(0, 4, (n, 2))  # a near miss or a hit, never a
        jitter = np.hstack([corner, corner + (t[:, 2:] - t[:, :2])  # degenerate box
                            * rng.uniform(0.7, 1.3, (n, 2))])
        m = 120 if i == 3 else int(rng.integers(0, 6))
        xy = rng.uniform(0, 200, (m, 2))
        strays = np.hstack([xy, xy + rng.uniform(10, 60, (m, 2))])
        boxes = np.vstack([jitter, strays])
        labels = np.concatenate([np.where(rng.random(n) < 0.8, t_labels,
                                          rng.integers(0, k, n)), rng.integers(0, k, m)])
        truths.append(dm.ImageBoxes(t, t_labels))
        scores = np.concatenate([rng.uniform(0.3, 1, n), rng.uniform(0, 0.8, m)])
        preds.append(dm.ImageBoxes(boxes, labels, scores))
    return preds, truths


def coco_eval(preds, truths, use_cats: bool = True):
    """pycocotools' COCOeval at IoU 0.5, area "all", 100 boxes per image."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(b):
        return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]

    anns, dets = [], []
    for i, (p, t) in enumerate(zip(preds, truths, strict=True)):
        for b, lab in zip(t.boxes, t.labels, strict=True):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(lab),
                         "bbox": xywh(b), "area": float((b[2] - b[0]) * (b[3] - b[1])),
                         "iscrowd": 0})
        dets += [{"image_id": i, "category_id": int(lab), "bbox": xywh(b), "score": float(s)}
                 for b, lab, s in zip(p.boxes, p.labels, p.scores, strict=True)]
    with contextlib.redirect_stdout(io.StringIO()):  # COCO prints its progress
        gt = COCO()
        gt.dataset = {"images": [{"id": i} for i in range(len(truths))], "annotations": anns,
                      "categories": [{"id": c} for c in range(3)]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.params.iouThrs = np.array([0.5])
        ev.params.areaRng, ev.params.areaRngLbl, ev.params.maxDets = [[0, 1e10]], ["all"], [100]
        ev.params.useCats = int(use_cats)
        ev.evaluate()
        ev.accumulate()
    return ev.eval


@pytest.mark.parametrize("seed", SEEDS)
def test_ap50_and_recall_agree_with_cocoeval(seed: int) -> None:
    pytest.importorskip("pycocotools")
    preds, truths = random_detection_split(np.random.default_rng(seed))
    s = tm.detection_scores(preds, truths, ["a", "b", "c"])
    coco = coco_eval(preds, truths)
    per_label = coco["precision"][0, :, :, 0, 0]  # (recall points, labels); -1: no truth
    for c in range(3):
        expected = per_label[:, c].mean() if per_label[0, c] > -1 else float("nan")
        assert s[f"ap50_{'abc'[c]}"] == pytest.approx(expected, abs=1e-6, nan_ok=True)
    assert s["ap50"] == pytest.approx(per_label[:, per_label[0] > -1].mean(), abs=1e-6)
    agnostic = coco_eval(preds, truths, use_cats=False)["precision"][0, :, 0, 0, 0].mean()
    assert dm.average_precision(preds, truths) == pytest.approx(agnostic, abs=1e-6)
    # recall of the boxes scoring >= 0.5, pooled over labels from COCO's per-label recall
    kept = [dm.ImageBoxes(p.boxes[p.scores >= 0.5], p.labels[p.scores >= 0.5],
                          p.scores[p.scores >= 0.5]) for p in preds]
    found = coco_eval(kept, truths)["recall"][0, :, 0, 0]
    n_truth = np.bincount(np.concatenate([t.labels for t in truths]), minlength=3)
    assert s["recall"] == pytest.approx((found * n_truth).sum() / n_truth.sum(), abs=1e-6)


def test_ap_reads_precision_at_101_recall_points() -> None:
    """Two truths; hit (0.9), miss (0.8), hit (0.7): precision 1 up to recall 0.5 (51 of
    the 101 points), then 2/3. PASCAL VOC's area would be 0.8333."""
    truth = [dm.ImageBoxes([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0])]
    pred = [dm.ImageBoxes([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], [0, 0, 0],
                          [0.9, 0.8, 0.7])]
    assert tm.detection_scores(pred, truth)["ap50"] == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_images_without_boxes_and_no_predictions() -> None:
    none = dm.ImageBoxes(np.zeros((0, 4)), [])
    heart = dm.ImageBoxes([[10, 10, 50, 50]], [1])
    s = tm.detection_scores([none, none], [heart, none], ["cardiomegaly", "normal heart"])
    assert s["ap50"] == 0.0 and s["recall"] == 0.0 and math.isnan(s["ap50_cardiomegaly"])
    stray = dm.ImageBoxes([[100, 100, 120, 120]], [1], [0.9])
    found = dm.ImageBoxes([[10, 10, 50, 51]], [1], [0.6])
    s = tm.detection_scores([found, stray], [heart, none])  # the stray ranks first
    assert s["ap50"] == pytest.approx(0.5) and s["recall"] == 1.0
    s = tm.detection_scores([{"boxes": [[1, 1, 5, 5]], "labels": [0], "scores": [0.9]}],
                            [{"boxes": np.zeros((0, 4)), "labels": []}])
    assert math.isnan(s["ap50"]) and "no truth boxes" in s["ap50_note"]
    assert tm.main_metric("detection", s) == "ap50"


# --- choosing and reporting --------------------------------------------------------------------

def test_main_metric_and_summary() -> None:
    assert [tm.main_metric(t) for t in ("classification", "segmentation", "detection")] == \
        ["roc_auc", "dice", "ap50"]
    with pytest.raises(ValueError, match="unknown task"):
        tm.main_metric("registration")
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, 30)
    s = tm.classification_scores(truth, softmax_scores(rng, truth, 2))
    summary = tm.score_summary(s, digits=4)
    assert set(summary) == {"accuracy", "f1", "roc_auc", "n"}
    assert summary["roc_auc"] == round(s["roc_auc"], 4) and type(summary["n"]) is int
    json.dumps(summary, allow_nan=False)
    assert tm.score_summary({"dice": np.float32(0.5), "x": float("nan"), "ok": True}) == \
        {"dice": 0.5, "x": None}


def test_the_viewer_can_import_the_metrics_without_torch() -> None:
    code = "import sys, medviewer.training.metrics; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_only_the_best_100_boxes_of_an_image_count() -> None:
    """COCO's maxDets: a hit ranked 101st on its image is not seen."""
    truth = [dm.ImageBoxes([[0, 0, 10, 10]], [0])]
    strays = np.array([[20 + i, 20, 30 + i, 30] for i in range(100)], float)
    boxes = np.vstack([strays, [[0, 0, 10, 10]]])
    pred = [dm.ImageBoxes(boxes, np.zeros(101, int), np.r_[np.full(100, 0.9), 0.8])]
    assert tm.detection_scores(pred, truth)["ap50"] == 0.0
    assert dm.average_precision(pred, truth, max_detections=101) == pytest.approx(1 / 101)
