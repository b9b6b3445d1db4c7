"""Pipelines shared by the labs: per-slice classification and per-slice segmentation."""

from __future__ import annotations

from typing import Any

import numpy as np

from medviewer.inference import preprocess as pp
from medviewer.inference.pipeline import Pipeline
from medviewer.inference.results import Result


class SliceClassifier(Pipeline):
    """One class-probability row per slice; inputs 'image' (+ 'extras' when the spec has them)."""

    def preprocess(self, voxels: np.ndarray, batch: list[int], volume: Any
                   ) -> dict[str, np.ndarray]:
        spec = self.manifest.input
        inputs = {"image": pp.prepare_slices(voxels, batch, spec)}
        if spec.extras:
            extras = pp.extras_vector(getattr(volume, "header", {}) or {}, spec.extras)
            inputs["extras"] = np.repeat(extras[None], len(batch), axis=0)
        return inputs

    def postprocess(self, outputs: dict[str, np.ndarray], batch: list[int], voxels: np.ndarray,
                    result: Result) -> None:
        probs = pp.softmax(outputs[self.manifest.onnx_outputs[0]].astype(np.float64))
        result.scores = probs if result.scores is None else np.vstack([result.scores, probs])


class SliceSegmenter(Pipeline):
    """Argmax label map per slice, resized back (nearest) to the slice's grid."""

    def preprocess(self, voxels: np.ndarray, batch: list[int], volume: Any
                   ) -> dict[str, np.ndarray]:
        return {"image": pp.prepare_slices(voxels, batch, self.manifest.input)}

    def postprocess(self, outputs: dict[str, np.ndarray], batch: list[int], voxels: np.ndarray,
                    result: Result) -> None:
        if result.label_map is None:
            result.label_map = np.zeros(voxels.shape[:3], np.uint8)
        logits = outputs[self.manifest.onnx_outputs[0]]  # (batch, labels, rows, cols)
        labels = logits.argmax(axis=1).astype(np.uint8)
        for k, mask in zip(batch, labels, strict=True):
            result.label_map[k] = pp.resize(mask, voxels.shape[1:3], order=0)
