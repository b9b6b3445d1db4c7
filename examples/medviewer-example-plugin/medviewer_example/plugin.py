"""The plugin object MedViewer loads through the `medviewer.plugins` entry point.

Rules a plugin module follows: import numpy / scipy / medviewer.inference only (never torch:
listing and running models must not pay for it), and keep the pre/post-processing here so the
ONNX model stays a plain network.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from medviewer.inference import Pipeline, Plugin, Result
from medviewer.inference import preprocess as pp


class BrightStructures(Pipeline):
    """Per-slice segmentation: window, resize, run, argmax, drop specks, resize back."""

    batch_size = 16

    def preprocess(self, voxels: np.ndarray, batch: list[int], volume: Any
                   ) -> dict[str, np.ndarray]:
        # window / resize / normalise exactly as the manifest's input spec says
        return {"image": pp.prepare_slices(voxels, batch, self.manifest.input)}

    def postprocess(self, outputs: dict[str, np.ndarray], batch: list[int], voxels: np.ndarray,
                    result: Result) -> None:
        if result.label_map is None:  # the first batch: one label map for the whole series
            result.label_map = np.zeros(voxels.shape[:3], np.uint8)
        logits = outputs[self.manifest.onnx_outputs[0]]  # (batch, labels, rows, cols)
        smallest = int(self.manifest.options.get("min_pixels", 0))
        for k, labels in zip(batch, logits.argmax(axis=1).astype(np.uint8), strict=True):
            mask = pp.resize(labels, voxels.shape[1:3], order=0)
            result.label_map[k] = drop_specks(mask, smallest)


def drop_specks(mask: np.ndarray, smallest: int) -> np.ndarray:
    """Clear connected regions under `smallest` pixels (noise, not structures)."""
    if smallest <= 1 or not mask.any():
        return mask
    regions, count = ndimage.label(mask > 0)
    sizes = np.bincount(regions.ravel(), minlength=count + 1)
    keep = sizes >= smallest
    keep[0] = False
    return np.where(keep[regions], mask, 0).astype(mask.dtype)


PLUGIN = Plugin(name="example", lab=0, title="Example: bright structures",
                pipelines={"segmentation": BrightStructures})
