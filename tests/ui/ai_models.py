"""Tiny ONNX test models for the GUI tests (written with onnx.helper: no torch, fast, exact).

Their answers are predictable from the voxels, so a test can check what is drawn where:
- "test-seg" labels the HU of the chest phantom: background below -520 HU, "soft tissue"
  up to 120 HU, "bone" above (window -200/1600 -> x in 0..1; thresholds 0.3 and 0.7);
- "test-cls" says "brighter" when a slice's mean (windowed) is above 0.5;
- "test-det" returns two fixed boxes (scores 0.9 and 0.3);
- "test-fusion-a/-b" are series-level verdicts with opposite thresholds.
`write_test_models` is what the `models_dir` fixture (tests/ui/conftest.py) calls.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

from medviewer.inference import Box, Pipeline, Plugin, register_plugin
from medviewer.inference import preprocess as pp
from medviewer.inference.manifest import manifest_from_dict, write_manifest
from medviewer.inference.pipelines import SliceClassifier, SliceSegmenter

SIZE = 64  # the phantom's rows and columns: the models see it unresized
WINDOW = (-200.0, 1600.0)
SEG_COLOURS = ("#000000", "#00ff00", "#ff00ff")
BOXES = ((10, 12, 30, 40), (40, 36, 60, 58))
BOX_SCORES = (0.9, 0.3)


# ----------------------------------------------------------------------- tiny models
class FixedBoxes(Pipeline):
    """Test detection pipeline: outputs 'boxes' (n, 4), 'scores' (n,), 'classes' (n,)."""

    def preprocess(self, voxels, batch, volume):
        return {"image": pp.prepare_slices(voxels, batch[:1], self.manifest.input)}

    def postprocess(self, outputs, batch, voxels, result):
        for box, score, c in zip(outputs["boxes"], outputs["scores"], outputs["classes"],
                                 strict=True):
            result.boxes.append(Box(*map(float, box), label=result.labels[int(c)],
                                    score=float(score), slice_index=batch[0]))

    def batches(self, indices):
        yield from ([k] for k in indices)


class SeriesMean(Pipeline):
    """Test fusion pipeline: 4 slices spread over the series as channels, one verdict."""

    series_level = True

    def preprocess(self, voxels, batch, volume):
        spec = self.manifest.input
        x = pp.resize(pp.to_unit(pp.volume_samples(voxels, 4), spec.window), spec.size)
        return {"image": x[None]}

    def postprocess(self, outputs, batch, voxels, result):
        result.scores = pp.softmax(outputs["logits"].astype(np.float64))


def _const(name, values):
    values = np.asarray(values, np.float32)
    return helper.make_tensor(name, TensorProto.FLOAT, values.shape, values.ravel())


def _onnx(nodes, inputs, outputs, consts):
    initializers = [_const(k, v) for k, v in consts.items()]
    initializers.append(helper.make_tensor("axis1", TensorProto.INT64, [1], [1]))
    graph = helper.make_graph(
        nodes, "test", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
                        for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


def _seg_graph(size: int):
    nodes = [helper.make_node("Mul", ["image", "zero"], ["c0"]),
             helper.make_node("Sub", ["image", "t1"], ["c1"]),
             helper.make_node("Mul", ["image", "two"], ["x2"]),
             helper.make_node("Sub", ["x2", "one"], ["c2"]),
             helper.make_node("Concat", ["c0", "c1", "c2"], ["logits"], axis=1)]
    consts = {"zero": [0.0], "t1": [0.3], "two": [2.0], "one": [1.0]}
    return _onnx(nodes, {"image": ["batch", 1, size, size]}, ["logits"], consts)


def _mean_logits(axes, threshold):
    """(N, 2) logits [0, 10 (mean - threshold)] of the image's mean over `axes`."""
    nodes = [helper.make_node("ReduceMean", ["image"], ["m"], axes=axes, keepdims=0)]
    if len(axes) == 3:  # (N, C, H, W) -> (N,) -> (N, 1)
        nodes.append(helper.make_node("Unsqueeze", ["m", "axis1"], ["m1"]))
    else:  # (N, 1, H, W) -> (N, 1)
        nodes.append(helper.make_node("Identity", ["m"], ["m1"]))
    nodes += [helper.make_node("Sub", ["m1", "threshold"], ["d"]),
              helper.make_node("Mul", ["d", "ten"], ["z"]),
              helper.make_node("Mul", ["m1", "zero"], ["z0"]),
              helper.make_node("Concat", ["z0", "z"], ["logits"], axis=1)]
    consts = {"threshold": [threshold], "ten": [10.0], "zero": [0.0]}
    return nodes, consts


def _cls_graph():
    nodes, consts = _mean_logits([2, 3], 0.5)
    return _onnx(nodes, {"image": ["batch", 1, SIZE, SIZE]}, ["logits"], consts)


def _fusion_graph(threshold):
    nodes, consts = _mean_logits([1, 2, 3], threshold)
    return _onnx(nodes, {"image": [1, 4, SIZE, SIZE]}, ["logits"], consts)


def _det_graph():
    nodes = [helper.make_node("ReduceMean", ["image"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["z"]),  # the input is used, not read
             helper.make_node("Add", ["boxes_c", "z"], ["boxes"]),
             helper.make_node("Add", ["scores_c", "z"], ["scores"]),
             helper.make_node("Add", ["classes_c", "z"], ["classes"])]
    consts = {"zero": [0.0], "boxes_c": BOXES, "scores_c": BOX_SCORES, "classes_c": [0, 1]}
    return _onnx(nodes, {"image": [1, 1, SIZE, SIZE]}, ["boxes", "scores", "classes"], consts)


def _write_model(root: Path, model_id: str, onnx_bytes: bytes, *, lab: int, task: str,
                 labels, outputs, image_shape, modalities=("CT",), pipeline=None) -> Path:
    folder = root / model_id
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(onnx_bytes)
    (folder / "weights.safetensors").write_bytes(b"unused by these tests")
    names = [lab_[0] for lab_ in labels]
    d = {"id": model_id, "title": model_id.replace("-", " ").title(), "lab": lab,
         "plugin": "aitest", "task": task, "arch": "test.onnx-helper", "version": "1.0.0",
         "labels": [{"name": n, "colour": c} for n, c in labels],
         "input": {"size": [SIZE, SIZE], "channels": image_shape[1], "context": "single",
                   "window": list(WINDOW), "mean": [0.0], "std": [1.0],
                   "modalities": list(modalities)},
         "onnx_inputs": {"image": list(image_shape)}, "onnx_outputs": list(outputs),
         "metrics": {"accuracy": 0.9, "dice": {n: 0.8 for n in names[1:]},
                     "split": "held-out test phantoms", "n": 12},
         "options": {"pipeline": pipeline} if pipeline else {},
         "description": f"A tiny test {task} graph."}
    write_manifest(manifest_from_dict(d, folder), folder)
    return folder


def write_test_models(root: Path) -> Path:
    """Register the test plugin and write the tiny models into `root`; returns `root`."""
    register_plugin(Plugin(name="aitest", lab=0, title="UI tests", pipelines={
        "classification": SliceClassifier, "segmentation": SliceSegmenter,
        "detection": FixedBoxes, "fusion": SeriesMean}))
    seg_labels = list(zip(("background", "soft tissue", "bone"), SEG_COLOURS, strict=True))
    _write_model(root, "test-seg", _seg_graph(SIZE), lab=4, task="segmentation",
                 labels=seg_labels, outputs=["logits"], image_shape=["batch", 1, SIZE, SIZE])
    _write_model(root, "test-cls", _cls_graph(), lab=2, task="classification",
                 labels=[("darker", "#4363d8"), ("brighter", "#f58231")], outputs=["logits"],
                 image_shape=["batch", 1, SIZE, SIZE])
    _write_model(root, "test-det", _det_graph(), lab=5, task="detection",
                 labels=[("nodule", "#ffe119"), ("mass", "#00ffff")],
                 outputs=["boxes", "scores", "classes"], image_shape=[1, 1, SIZE, SIZE],
                 modalities=())
    for name, threshold in (("a", 0.05), ("b", 0.95)):
        _write_model(root, f"test-fusion-{name}", _fusion_graph(threshold), lab=3,
                     task="fusion", labels=[("no nodule", "#3cb44b"), ("nodule", "#e6194b")],
                     outputs=["logits"], image_shape=[1, 4, SIZE, SIZE])
    return root
