"""Result objects and the layer's one exception type."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medviewer.inference import Box, ModelError, Result


def result(**kw) -> Result:
    return Result(model_id="m", model_version="1.0.0", task="classification",
                  labels=["normal", "nodule", "mass"], colours=["#0f0", "#f00", "#00f"], **kw)


def test_predicted_label_per_row() -> None:
    r = result(scores=np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]]))
    assert r.predicted(0) == ("nodule", pytest.approx(0.7))
    assert r.predicted(1) == ("normal", pytest.approx(0.5))


def test_predicted_without_scores() -> None:
    with pytest.raises(ValueError, match="no class scores"):
        result().predicted()


def test_boxes_on_a_slice_above_a_score() -> None:
    boxes = [Box(0, 0, 10, 20, "heart", 0.9, slice_index=0),
             Box(5, 5, 8, 8, "heart", 0.3, slice_index=0),
             Box(1, 1, 2, 2, "heart", 0.95, slice_index=1)]
    r = result(boxes=boxes)
    assert r.boxes_on(0) == boxes[:2]
    assert r.boxes_on(0, min_score=0.5) == boxes[:1]
    assert r.boxes_on(2) == []
    assert (boxes[0].width, boxes[0].height) == (10, 20)


def test_model_error_carries_path_and_sentence() -> None:
    e = ModelError(Path("/models/x/model.onnx"), "Re-export it.")
    assert e.path == "/models/x/model.onnx" and e.reason == "Re-export it."
    assert str(e) == "/models/x/model.onnx: Re-export it."
    assert str(ModelError(None, "No plugin.")) == "No plugin."
    assert ModelError(None, "x").path is None
