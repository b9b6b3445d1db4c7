"""What a model run returns: class scores, a label map, boxes, and explanations."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Box:
    """A detection in pixel coordinates of slice `slice_index` (x1, y1 exclusive edges)."""

    x0: float
    y0: float
    x1: float
    y1: float
    label: str
    score: float
    slice_index: int = 0

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0


@dataclass(frozen=True)
class Measurement:
    """A number a model's result gives on slice `slice_index` (e.g. lab 5's cardiothoracic
    ratio): its value, unit ("ratio", "mm"), what it suggests, and the segments it was
    measured along ((x0, y0), (x1, y1) in pixels of the slice) for the views to draw."""

    name: str
    value: float
    unit: str
    slice_index: int = 0
    verdict: str = ""
    lines: tuple[tuple[tuple[float, float], tuple[float, float]], ...] = ()
    method: str = ""  # how it was measured, in a sentence


@dataclass
class Result:
    """One run of one model over some slices (or the whole series) of one volume.

    scores: (len(slice_indices), len(labels)) probabilities for classification, one row per
    slice; one row for a series-level (fusion) verdict. label_map: uint8 in the volume's voxel
    grid, label values index `labels`; slices not run stay 0. Boxes carry their slice.
    """

    model_id: str
    model_version: str
    task: str
    labels: list[str]
    colours: list[str]
    provider: str = ""
    runtime: str = ""  # what ran the model on that provider: 'ONNX Runtime int8', ...
    slice_indices: list[int] = field(default_factory=list)
    scores: np.ndarray | None = None
    label_map: np.ndarray | None = None
    boxes: list[Box] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    series_instance_uid: str = ""
    sop_instance_uids: list[str] = field(default_factory=list)  # of slice_indices
    title: str = ""
    measurements: list[Measurement] = field(default_factory=list)  # e.g. lab 5's CTR

    def predicted(self, row: int = 0) -> tuple[str, float]:
        """Top label and its probability for one row of `scores`."""
        if self.scores is None:
            raise ValueError("this result has no class scores")
        k = int(np.argmax(self.scores[row]))
        return self.labels[k], float(self.scores[row, k])

    def boxes_on(self, slice_index: int, min_score: float = 0.0) -> list[Box]:
        return [b for b in self.boxes if b.slice_index == slice_index and b.score >= min_score]


@dataclass
class Explanation:
    """Where a model looked: a heatmap on one slice, values 0..1, in the slice's pixel grid."""

    method: str  # "Grad-CAM", "EigenCAM", "AblationCAM"
    model_id: str
    slice_index: int
    heatmap: np.ndarray  # float32 (rows, columns)
    target: str = ""  # the class or box it explains
    seconds: float = 0.0
    notes: str = ""  # e.g. "AblationCAM on 5% of the channels"
