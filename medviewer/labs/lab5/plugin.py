"""Lab 5's plugin: heart (and other) boxes on chest radiographs with Faster R-CNN.

numpy only (imported through the `medviewer.plugins` entry point, so no torch here). The lab's
contrast steps, then the film resized to the manifest's working size, grey to 3 channels:
the exported graph does no resizing, so its boxes are in that working grid and are scaled
back to the film's pixels here. Each film with a heart box also gets its cardiothoracic
ratio (`ctr`: the top-scoring box's width over the thoracic width measured on the film).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medviewer.inference import preprocess as pp
from medviewer.inference.pipeline import Pipeline
from medviewer.inference.registry import Plugin
from medviewer.inference.results import Box, Measurement, Result

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
    _film: tuple[bool, str] = (False, "")  # the film being run: MONOCHROME1?, ViewPosition

    def preprocess(self, voxels: np.ndarray, batch: list[int], volume: Any
                   ) -> dict[str, np.ndarray]:
        spec = self.manifest.input
        inverted = getattr(volume, "photometric", "") == "MONOCHROME1"
        self._film = (inverted, view_position(volume, batch[0]))
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
        found.sort(key=lambda b: -b.score)
        result.boxes.extend(found)
        if found:
            result.measurements.extend(ctr_measurements(voxels[batch[0]], found[0], *self._film))


def ctr_measurements(film: np.ndarray, heart: Box, inverted: bool = False, view: str = ""
                     ) -> list[Measurement]:
    """The film's cardiothoracic ratio from its heart box, or nothing when the thorax cannot
    be measured on it."""
    from medviewer.labs.lab5.ctr import cardiothoracic_ratio

    ctr = cardiothoracic_ratio(film, (heart.x0, heart.y0, heart.x1, heart.y1),
                               inverted=inverted, view=view)
    if ctr is None:
        return []
    return [Measurement(CTR_NAME, round(ctr.ratio, 4), "ratio", heart.slice_index, ctr.verdict,
                        tuple(ctr.lines()), CTR_METHOD)]


CTR_NAME = "Cardiothoracic ratio"
CTR_METHOD = ("heart box width / inner thoracic width at the lung fields' widest row, "
              "measured on the film (medviewer.labs.lab5.ctr)")


def view_position(volume: Any, k: int) -> str:
    """The film's ViewPosition (PA, AP, ...) from its header, "" when absent or unreadable."""
    sources = getattr(volume, "sources", None) or []
    if not 0 <= k < len(sources):
        return ""
    import pydicom

    try:
        ds = pydicom.dcmread(sources[k].path, stop_before_pixels=True,
                             specific_tags=["ViewPosition"])
    except (OSError, ValueError, EOFError):
        return ""
    return str(ds.get("ViewPosition", "") or "").strip().upper()


def _label_name(names: list[str], k: int) -> str:
    """Graph labels are 1-based (0 is torchvision's background)."""
    return names[k - 1] if 1 <= k <= len(names) else f"label {k}"


PLUGIN = Plugin(name="lab5", lab=5, title="Lab 5: chest X-ray detection (Faster R-CNN)",
                pipelines={"detection": FilmDetector})
