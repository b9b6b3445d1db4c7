"""Lab 1 in the viewer: the digit on each slice, and the course's submission CSV.

numpy only (plugins are imported through entry points and never pull in torch). Training
(`demo.py`) calls `digit_features` too, so the network sees in the viewer exactly what it saw
while learning.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from medviewer.core.atomic import atomic_file
from medviewer.inference import preprocess as pp
from medviewer.inference.pipelines import SliceClassifier
from medviewer.inference.registry import Plugin
from medviewer.inference.results import Result

DIGIT_SIZE = (8, 8)
INK = 16.0  # scikit-learn's digits run from 0 (paper) to 16 (ink)


def digit_features(images: np.ndarray, size: tuple[int, int] = DIGIT_SIZE) -> np.ndarray:
    """(n, rows, cols) grey images -> (n, rows*cols of `size`) float32 on the digits' 0..16 scale.

    Shrinks by block averaging (a 64 x 64 slice averages 8 x 8 blocks back to the original
    digit), then stretches each digit from its darkest to its brightest pixel: the stored values'
    range (12-bit, 8-bit, scaled) does not matter, only the drawing.
    """
    x = pp.resize(np.asarray(images, np.float32), tuple(size))
    lo = x.min(axis=(-2, -1), keepdims=True)
    hi = x.max(axis=(-2, -1), keepdims=True)
    span = np.where(hi > lo, hi - lo, np.float32(1.0))
    return ((x - lo) / span * np.float32(INK)).reshape(len(x), -1).astype(np.float32)


def digit_images(images: np.ndarray, size: tuple[int, int] = DIGIT_SIZE) -> np.ndarray:
    """`digit_features` as (n, 1, rows, cols) images, the input of a convolutional network."""
    return digit_features(images, size).reshape(len(images), 1, *size)


class DigitClassifier(SliceClassifier):
    """One row of digit probabilities per slice, from a fully connected network (flat
    features) or a convolutional one (images: its graph's input has four axes)."""

    batch_size = 256  # 64 numbers a slice: one ONNX call covers a whole test series

    def preprocess(self, voxels: np.ndarray, batch: list[int], volume: Any
                   ) -> dict[str, np.ndarray]:
        size = self.manifest.input.size
        as_images = len(self.manifest.onnx_inputs.get("image", ())) == 4
        return {"image": (digit_images if as_images else digit_features)(voxels[batch], size)}


def submission_rows(result: Result) -> list[tuple[int, str]]:
    """(id, label) per slice run: id is the 1-based slice number, label the predicted digit."""
    if result.scores is None:
        raise ValueError("this result has no class scores to submit")
    return [(k + 1, result.predicted(row)[0]) for row, k in enumerate(result.slice_indices)]


def write_submission(result: Result, path: str | Path) -> Path:
    """The course's submission file: header `id,label`, one row per slice, atomically written.

    The course numbered its test images with a running id from 1. Here the id is the slice's
    1-based position in the series, which is that running id when the whole series is run and
    still names the slice the reader sees when only some slices are.
    """
    with atomic_file(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "label"])
        writer.writerows(submission_rows(result))
    return Path(path)


PLUGIN = Plugin(name="lab1", lab=1, title="Lab 1: handwritten digits (SimpleNN, MedicalCNN)",
                pipelines={"classification": DigitClassifier},
                writers={"submission.csv": write_submission})
