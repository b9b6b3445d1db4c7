"""Segmentation scores of a training run's validation maps, per case: numpy only, no torch.

See `medviewer.training.metrics` (which re-exports this module's names) for the conventions
shared by every task.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from medviewer.training.labels import IGNORE


def _key(name: str) -> str:
    """A label name as part of a score key: "normal heart" -> "normal_heart"."""
    return str(name).strip().replace(" ", "_")


# per foreground label, each case; the keys are "<name>" (mean over labels) and "<name>_<label>"
SEGMENTATION_PER_LABEL = ("dice", "iou", "precision", "recall", "boundary_f1", "hd95_px")
SEGMENTATION_OVERALL = ("pixel_accuracy", "mean_pixel_accuracy", "mean_iou")
BOUNDARY_TOLERANCE_PX = 2.0
BOUNDARY_NOTE = ("boundary F1 within {tol:g} px and HD95 in px of the model's input grid, "
                 "outlines per slice; HD95 over the slices where both truth and prediction "
                 "hold the label")


def lower_is_better(name: str) -> bool:
    """HD95 is a distance: the smaller the better (every other score: the higher)."""
    return str(name).startswith("hd95")


class _Outline:
    """One case's outline points of one label, added slice by slice."""

    def __init__(self) -> None:
        self.matched = [0, 0]  # predicted / true outline points within the tolerance
        self.total = [0, 0]
        self.distances: tuple[list, list] = ([], [])  # finite ones, for HD95

    def add(self, pred: np.ndarray, truth: np.ndarray, tolerance: float) -> None:
        from medviewer.inference.metrics import surface, surface_distances

        if not (pred.any() or truth.any()):
            return
        found = surface_distances(pred, truth, None)
        if found is None:  # one side only on this slice: its outline matches nothing
            self.total[0] += int(np.count_nonzero(surface(pred)))
            self.total[1] += int(np.count_nonzero(surface(truth)))
            return
        for i, d in enumerate(found):
            self.matched[i] += int(np.count_nonzero(d <= tolerance))
            self.total[i] += len(d)
            self.distances[i].append(d)

    def scores(self) -> tuple[float, float]:
        """(boundary F1, HD95 or NaN when no slice held the label on both sides)."""
        if not any(self.total):
            f1 = 1.0  # neither side has the label in this case
        else:
            p, r = (m / t if t else 0.0 for m, t in zip(self.matched, self.total, strict=True))
            f1 = 0.0 if p + r == 0 else 2 * p * r / (p + r)
        if not all(self.distances):
            return f1, float("nan")
        return f1, max(float(np.percentile(np.concatenate(d), 95)) for d in self.distances)


class SegmentationTally:
    """Per-case confusion counts and outline matches of label maps, added batch by batch,
    scored at the end.

    The training loop adds each validation batch as it comes (no maps kept: one bincount per
    map, and the outline distances of each label, a few ms per 256 x 256 slice).
    """

    def __init__(self, labels: Sequence[str], ignore: int | None = IGNORE,
                 tolerance_px: float = BOUNDARY_TOLERANCE_PX) -> None:
        self.labels = [str(n) for n in labels]
        self.ignore = ignore
        self.tolerance = tolerance_px
        if len(self.labels) < 2:
            raise ValueError("segmentation needs background and at least one label")
        self.counts: dict[str, np.ndarray] = {}  # case -> (K, K) int64, rows truth
        self.outlines: dict[str, list[_Outline]] = {}  # case -> one per foreground label

    def add(self, pred: Iterable[Any], truth: Iterable[Any],
            cases: Sequence[str] | None = None) -> None:
        """Add maps pairwise (lists or (B, ...) arrays); `cases` names each (else its own).
        Truth voxels of excluded segments (`ignore`, training.labels.IGNORE) are not scored
        (for the outlines: neither side has a label there)."""
        k = len(self.labels)
        for i, (p, t) in enumerate(zip(pred, truth, strict=True)):
            p, t = np.asarray(p), np.asarray(t)
            if p.shape != t.shape:
                raise ValueError(f"label maps differ in shape: {p.shape} vs {t.shape}")
            if self.ignore is not None:
                scored = t != self.ignore
                p, t = np.where(scored, p, 0), np.where(scored, t, 0)
                flat_p, flat_t = p[scored], t[scored]
            else:
                flat_p, flat_t = p, t
            for m in (flat_p, flat_t):
                if m.size and (m.min() < 0 or m.max() >= k):
                    raise ValueError(f"label values must lie in 0..{k - 1}")
            case = str(cases[i]) if cases is not None else f"#{len(self.counts)}"
            pair = flat_t.astype(np.int64).ravel() * k + flat_p.astype(np.int64).ravel()
            tally = np.bincount(pair, minlength=k * k).reshape(k, k)
            self.counts[case] = self.counts.get(case, 0) + tally
            outlines = self.outlines.setdefault(case, [_Outline() for _ in range(k - 1)])
            for value, outline in enumerate(outlines, start=1):
                outline.add(p == value, t == value, self.tolerance)

    def scores(self) -> dict[str, Any]:
        """Each of SEGMENTATION_PER_LABEL as the mean over labels and as <name>_<label>,
        SEGMENTATION_OVERALL, per_case {case: mean Dice}, n_cases, boundary_note: every
        score computed per case (all slices of a case pooled), then averaged over cases
        (HD95 over the cases where it is defined)."""
        if not self.counts:
            raise ValueError("no validation label maps to score")
        per_case = [_case_scores(c, self.outlines[case]) for case, c in self.counts.items()]
        out: dict[str, Any] = {}
        with warnings.catch_warnings():  # a label with no HD95 in any case: NaN, noted
            warnings.simplefilter("ignore", RuntimeWarning)
            for name in SEGMENTATION_PER_LABEL:
                table = np.array([c[name] for c in per_case])  # (cases, foreground labels)
                out[name] = float(np.nanmean(table))
                for j, label in enumerate(self.labels[1:]):
                    out[f"{name}_{_key(label)}"] = float(np.nanmean(table[:, j]))
        for name in SEGMENTATION_OVERALL:
            out[name] = float(np.mean([c[name] for c in per_case]))
        if math.isnan(out["hd95_px"]):
            out["hd95_px_note"] = "no validation slice holds a label in truth and prediction"
        out["boundary_note"] = BOUNDARY_NOTE.format(tol=self.tolerance)
        out["per_case"] = {case: float(np.mean(c["dice"])) for case, c in zip(
            self.counts, per_case, strict=True)}
        out["n_cases"] = len(self.counts)
        return out


def _case_scores(confusion: np.ndarray, outlines: Sequence[_Outline]) -> dict[str, Any]:
    """One case's scores from its (K, K) truth x prediction count and outlines: arrays over
    the foreground labels for SEGMENTATION_PER_LABEL, floats for SEGMENTATION_OVERALL.

    Label absent from truth and prediction: 1.0 for the overlap scores; otherwise a zero
    denominator scores 0 (as `medviewer.inference.metrics`)."""
    overlap = np.diag(confusion).astype(np.float64)
    n_truth, n_pred = confusion.sum(axis=1), confusion.sum(axis=0)
    union = n_truth + n_pred - overlap

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.where(n_truth + n_pred == 0, 1.0, num / np.maximum(den, 1))[1:]

    boundary = np.array([o.scores() for o in outlines]).reshape(-1, 2)
    present = n_truth > 0
    return {"dice": ratio(2 * overlap, n_truth + n_pred), "iou": ratio(overlap, union),
            "precision": ratio(overlap, n_pred), "recall": ratio(overlap, n_truth),
            "boundary_f1": boundary[:, 0], "hd95_px": boundary[:, 1],
            "pixel_accuracy": float(overlap.sum() / max(confusion.sum(), 1)),
            "mean_pixel_accuracy": float(np.mean(overlap[present] / n_truth[present]))
            if present.any() else 1.0,
            "mean_iou": float(np.mean(overlap[union > 0] / union[union > 0]))
            if (union > 0).any() else 1.0}


def segmentation_scores(pred: Iterable[Any], truth: Iterable[Any], labels: Sequence[str],
                        cases: Sequence[str] | None = None) -> dict[str, Any]:
    """The scores of predicted label maps against the truth; label value = index in `labels`.

    Maps of the same case (the slices of one series) are pooled into one volume score; with
    no `cases` each map is a case of its own. See `SegmentationTally`.
    """
    tally = SegmentationTally(labels)
    tally.add(pred, truth, cases)
    return tally.scores()


# --- reading flat "<metric>_<label>" keys back as a table ------------------------------------

PER_LABEL_KEYS = ("dice", "iou", "precision", "recall", "boundary_f1", "hd95_px", "hd95_mm",
                  "hd95")
HEADINGS = {"dice": "Dice", "iou": "IoU", "precision": "Precision", "recall": "Recall",
            "hd95_px": "HD95 (px)", "hd95_mm": "HD95 (mm)", "hd95": "HD95 (mm)",
            "pixel_accuracy": "Pixel accuracy", "mean_pixel_accuracy": "Mean pixel accuracy",
            "mean_iou": "Mean IoU"}


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def label_names(metrics: Mapping[str, Any]) -> list[str]:
    """The label keys a flat metrics dict scores one by one: those with a "dice_<label>"."""
    return [k[5:] for k, v in metrics.items() if k.startswith("dice_") and _numeric(v)]


def per_label_table(metrics: Mapping[str, Any]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """(the per-label metric keys present, in PER_LABEL_KEYS order; {label: {key: value}})
    from "<metric>_<label>" keys (None where a label lacks one, e.g. an undefined HD95)."""
    labels = label_names(metrics)
    keys = [m for m in PER_LABEL_KEYS if any(f"{m}_{x}" in metrics for x in labels)]
    table = {x.replace("_", " "): {m: metrics.get(f"{m}_{x}") for m in keys} for x in labels}
    return keys, table


def headline_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics without the per-label ones (what fits on one line or in one row)."""
    labels = label_names(metrics)
    per_label = {f"{m}_{x}" for m in PER_LABEL_KEYS for x in labels}
    return {k: v for k, v in metrics.items() if k not in per_label}


def metric_heading(key: str, metrics: Mapping[str, Any] | None = None) -> str:
    """A column heading with its unit: "HD95 (px)", "BF1 (2 px)" (the boundary tolerance in
    the unit the distances of `metrics` are in); unknown keys as they are."""
    if key == "boundary_f1":
        unit = "px" if any(str(k).startswith("hd95_px") for k in (metrics or {})) else "mm"
        return f"BF1 ({BOUNDARY_TOLERANCE_PX:g} {unit})"
    return HEADINGS.get(key, key)
