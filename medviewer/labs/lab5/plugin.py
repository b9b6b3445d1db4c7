"""Lab 5's plugin: heart (and other) boxes on chest radiographs with Faster R-CNN.

numpy only (imported through the `medviewer.plugins` entry point, so no torch here). The lab's
contrast steps, then the film resized to the manifest's working size, grey to 3 channels:
the exported graph does no resizing, so its boxes are in that working grid and are scaled
back to the film's pixels here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medviewer.inference import preprocess as pp
from medviewer.inference.pipeline import Pipeline
from medviewer.inference.registry import Plugin
from medviewer.inference.results import Box, Result

BALANCE_PERCENT = 1.0  # simplest colour balance clips half of this at each end


def film_to_unit(image: np.ndarray, *, inverted: bool = False,
                 percent: float = BALANCE_PERCENT) -> np.ndarray:
    """One film as the lab prepares it: log transform, then simplest colour balance (0..1).

    `inverted`: a MONOCHROME1 film stores bright as low values; flip it first so the model
    always sees bone and heart bright, as it learnt them.
    """
    x = np.asarray(image)
    if inverted:
        x = x.max() - x
    return pp.log_balance(x, percent)


def prepare_film(image: np.ndarray, size: tuple[int, int], channels: int = 3, *,
                 inverted: bool = False, percent: float = BALANCE_PERCENT) -> np.ndarray:
    """(channels, rows, cols) float32 model input for one film at the working `size`."""
    x = pp.resize(film_to_unit(image, inverted=inverted, percent=percent), size)
    return np.ascontiguousarray(np.broadcast_to(x, (channels, *size)), np.float32)


class FilmDetector(Pipeline):
    """Faster R-CNN over each film (slice): every box above the graph's score threshold.

    The viewer's score slider filters `Result.boxes` further; nothing is dropped here.
    """

    batch_size = 1  # the exported graph takes one image (torchvision detection export)

    def preprocess(self, voxels: np.ndarray, batch: list[int], volume: Any
                   ) -> dict[str, np.ndarray]:
        spec = self.manifest.input
        inverted = getattr(volume, "photometric", "") == "MONOCHROME1"
        percent = float(self.manifest.options.get("balance_percent", BALANCE_PERCENT))
        film = prepare_film(voxels[batch[0]], spec.size, spec.channels, inverted=inverted,
                            percent=percent)
        return {"image": pp.normalise(film, spec)[None].astype(np.float32)}

    def postprocess(self, outputs: dict[str, np.ndarray], batch: list[int], voxels: np.ndarray,
                    result: Result) -> None:
        boxes, scores, labels = (outputs[name] for name in self.manifest.onnx_outputs)
        pixels = pp.scale_boxes(boxes, self.manifest.input.size, voxels.shape[1:3])
        names = self.manifest.label_names
        found = [Box(*map(float, xyxy), label=_label_name(names, int(k)), score=float(s),
                     slice_index=batch[0])
                 for xyxy, s, k in zip(pixels, scores, labels, strict=True)]
        result.boxes.extend(sorted(found, key=lambda b: -b.score))


def _label_name(names: list[str], k: int) -> str:
    """Graph labels are 1-based (0 is torchvision's background)."""
    return names[k - 1] if 1 <= k <= len(names) else f"label {k}"


PLUGIN = Plugin(name="lab5", lab=5, title="Lab 5: chest X-ray detection (Faster R-CNN)",
                pipelines={"detection": FilmDetector})
