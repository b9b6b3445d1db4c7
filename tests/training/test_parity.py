"""The ONNX parity guard of export_model, against an independent reference.

The reference here is numpy's own comparison of torch's and ONNX Runtime's outputs (never the
guard's `relative_error`): an ONNX graph edited by hand to differ from torch, in values or in
shape, and weights holding NaN or infinity must all be refused, and nothing written.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper
from torch import nn

from medviewer.inference import ModelError
from medviewer.inference.staging import host_tag
from medviewer.labs.architectures import Architecture
from medviewer.training import export

ARCH = Architecture(name="test.parity_linear", lab=0, task="classification",
                    build=lambda num_classes=3: nn.Linear(16, num_classes),
                    example_inputs=lambda: (torch.rand(4, 16, generator=torch.Generator()
                                                       .manual_seed(0)),),
                    input_names=("image",), output_names=("logits",),
                    dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
FIELDS = {"id": "parity", "title": "Parity", "version": "1.0.0", "plugin": "test",
          "labels": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
          "input": {"size": [4, 4], "channels": 1}, "metrics": {}, "provenance": {}}


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(16, 3).eval()


def _exported(tmp_path: Path, model: nn.Module) -> Path:
    path = tmp_path / "model.onnx"
    export.export_onnx(model, ARCH, path, ARCH.example_inputs())
    return path


def _reference_error(model: nn.Module, path: Path) -> float:
    """max |ort - torch| / max |torch|, computed here with numpy alone."""
    x = ARCH.example_inputs()[0]
    want = model(x).detach().numpy().astype(np.float64)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"image": x.numpy()})[0].astype(np.float64)
    if got.shape != want.shape:
        return math.inf
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def _edit_initializer(path: Path, scale: float) -> None:
    """Multiply the largest entry of the graph's weight matrix by `scale`, by hand."""
    graph = onnx.load(str(path))
    init = max(graph.graph.initializer, key=lambda t: np.prod(t.dims))  # the weight matrix
    values = numpy_helper.to_array(init).copy()
    values.flat[np.abs(values).argmax()] *= scale
    init.CopyFrom(numpy_helper.from_array(values, init.name))
    onnx.save(graph, str(path))


def test_a_faithful_export_passes_and_agrees_with_numpy(tmp_path):
    model = _model()
    path = _exported(tmp_path, model)
    reference = _reference_error(model, path)
    assert reference < 1e-5
    worst = export.parity_check(model, path, ARCH, ARCH.example_inputs())
    assert worst <= export.PARITY_RTOL and worst == pytest.approx(reference, abs=1e-6)


@pytest.mark.parametrize("scale", [1.05, 0.0, -1.0, 1.5])
def test_an_onnx_graph_that_differs_from_torch_is_refused(tmp_path, scale):
    model = _model()
    path = _exported(tmp_path, model)
    _edit_initializer(path, scale)
    reference = _reference_error(model, path)
    # well above the limit, yet small: a guard made 10,000 times laxer would let it through
    assert 10 * export.PARITY_RTOL < reference < 1.0
    with pytest.raises(ModelError, match="differs from torch"):
        export.parity_check(model, path, ARCH, ARCH.example_inputs())


def test_an_onnx_output_of_another_shape_is_refused(tmp_path):
    """Same values, one more axis: no element-wise difference, still not the same model."""
    model = _model()
    path = _exported(tmp_path, model)
    graph = onnx.load(str(path))
    out = graph.graph.output[0].name
    for node in graph.graph.node:
        node.output[:] = ["pre_" + o if o == out else o for o in node.output]
    graph.graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    graph.graph.node.append(helper.make_node("Unsqueeze", ["pre_" + out, "axis1"], [out]))
    del graph.graph.output[:]
    graph.graph.output.append(helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT,
                                                            ["batch", 1, 3]))
    onnx.save(graph, str(path))
    assert _reference_error(model, path) == math.inf
    with pytest.raises(ModelError, match="differs from torch.*shapes"):
        export.parity_check(model, path, ARCH, ARCH.example_inputs())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_fail_the_parity_check(tmp_path, bad):
    """torch and ONNX Runtime then both answer NaN: 'equal' to any tolerance, never right."""
    model = _model()
    with torch.no_grad():
        model.weight[0, 0] = bad
    path = _exported(tmp_path, model)
    with pytest.raises(ModelError, match="NaN or infinity"):
        export.parity_check(model, path, ARCH, ARCH.example_inputs())


@pytest.mark.parametrize("bad", [float("nan"), float("-inf")])
def test_export_model_refuses_non_finite_weights_and_writes_nothing(tmp_path, bad):
    model = _model()
    with torch.no_grad():
        model.bias[1] = bad
    folder = tmp_path / "store" / "parity" / "1.0.0"
    with pytest.raises(ModelError, match=r"NaN or infinite values \(bias\)"):
        export.export_model(model, ARCH, folder, FIELDS)
    assert not folder.exists()
    assert not folder.parent.exists() or list(folder.parent.iterdir()) == []


def test_export_model_writes_a_checked_folder_and_clears_a_dead_staging_folder(tmp_path):
    folder = tmp_path / "store" / "parity" / "1.0.0"
    folder.parent.mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = folder.parent / f".1.0.0-{host_tag()}-{gone.pid}-abcd1234"  # a killed export's
    dead.mkdir()
    (dead / "model.onnx").write_bytes(b"half")
    manifest = export.export_model(_model(), ARCH, folder, FIELDS)
    assert manifest.provenance["parity_max_relative_error"] <= export.PARITY_RTOL
    assert sorted(p.name for p in folder.parent.iterdir()) == ["1.0.0"]


@pytest.mark.parametrize(("change", "field"), [
    ({"input": {"size": [0, 0]}}, r"input.size\[\d\] is wrong"),
    ({"input": {"size": [4, 4], "std": [0.0]}}, r"input.std\[0\]"),
    ({"id": "../../outside"}, "cannot name a folder"),
    ({"version": "../x"}, "cannot name a folder"),
    ({"options": [1, 2]}, "options is wrong"),
    ({"metrics": "x"}, "metrics is wrong"),
])
def test_export_model_checks_the_fields_before_writing(tmp_path, change, field):
    folder = tmp_path / "out" / "m"
    with pytest.raises(ModelError, match=field):
        export.export_model(_model(), ARCH, folder, {**FIELDS, **change})
    assert not (tmp_path / "out").exists() and not (tmp_path / "outside").exists()


def _worst(expected, actual) -> float:
    return max(export.relative_error(e, a) for e, a in zip(expected, actual, strict=True))


def test_detections_whose_scores_tie_are_compared_box_to_box_not_row_to_row():
    """Two boxes tied within float noise may leave NMS in either order: the same boxes in
    another order agree; a box that moved, or one of another label, is still a difference."""
    boxes = np.array([[10, 10, 50, 60], [100, 90, 140, 150]], np.float32)
    torch_side = [boxes, np.array([0.5, 0.5 - 1e-7], np.float32), np.array([1, 1])]
    ort_side = [boxes[::-1].copy(), np.array([0.5 - 1e-7, 0.5], np.float32), np.array([1, 1])]
    row_by_row = _worst(torch_side, ort_side)
    assert row_by_row > 0.5  # the comparison this replaces: a whole box "off"
    matched = export.same_order(torch_side, ort_side)
    assert _worst(torch_side, matched) < 1e-6
    moved = [ort_side[0] + [[0, 0, 0, 0], [5, 0, 0, 0]], ort_side[1], ort_side[2]]
    matched = export.same_order(torch_side, moved)
    assert _worst(torch_side, matched) > 0.03
    other_label = [ort_side[0], ort_side[1], np.array([1, 2])]
    matched = export.same_order(torch_side, other_label)
    assert _worst(torch_side, matched) > 0.5
