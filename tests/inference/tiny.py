"""Helpers of the inference tests: tiny model folders built with onnx.helper (no torch).

The classifier graph is `logits = Flatten(image) @ W` with a fixed W, so a test can compute
the expected answer with numpy; the segmenter returns (batch, 2, rows, cols) logits whose
label-1 channel is the image itself (label 1 wherever a pixel is above 0).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from medviewer.inference import manifest as mf

SIZE = (8, 8)


def classifier_onnx(size: tuple[int, int] = SIZE, classes: int = 2, *, input_name: str = "image",
                    output_name: str = "logits", channels: int = 1) -> tuple[bytes, np.ndarray]:
    """Serialized ONNX model and its weight matrix (channels*rows*cols, classes)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = channels * size[0] * size[1]
    weights = np.random.default_rng(7).normal(size=(n, classes)).astype(np.float32) / n
    graph = helper.make_graph(
        [helper.make_node("Flatten", [input_name], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "W"], [output_name])],
        "tiny-classifier",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT,
                                       ["batch", channels, *size])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(weights, "W")])
    return _serialise(onnx, helper, graph), weights


def segmenter_onnx(size: tuple[int, int] = SIZE) -> bytes:
    """logits (batch, 2, rows, cols): channel 0 is 0, channel 1 is the image."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["image", "zero"], ["background"]),
         helper.make_node("Concat", ["background", "image"], ["logits"], axis=1)],
        "tiny-segmenter",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, *size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2, *size])],
        [numpy_helper.from_array(np.zeros(1, np.float32), "zero")])
    return _serialise(onnx, helper, graph)


def _serialise(onnx: Any, helper: Any, graph: Any) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def manifest_dict(**overrides: Any) -> dict[str, Any]:
    """A valid manifest dict for the tiny classifier; keyword arguments replace fields."""
    d: dict[str, Any] = {
        "id": "test-classifier", "title": "Test classifier", "lab": 0, "plugin": "test-plugin",
        "task": "classification", "arch": "test.tiny", "version": "1.0.0",
        "labels": [{"name": "normal", "colour": "#00ff00"},
                   {"name": "nodule", "colour": "#ff0000"}],
        "input": {"size": list(SIZE), "channels": 1, "context": "single",
                  "window": [-600, 1500], "mean": [0.0], "std": [1.0], "extras": [],
                  "modalities": ["CT"]},
        "onnx_inputs": {"image": ["batch", 1, *SIZE]}, "onnx_outputs": ["logits"],
        "metrics": {"accuracy": 0.5, "split": "none", "n": 0},
        "provenance": {"command": "pytest", "seed": 0}, "options": {},
        "description": "a test model",
    }
    d.update(overrides)
    return d


def write_model_folder(folder: Path, onnx_bytes: bytes, **overrides: Any) -> mf.Manifest:
    """model.onnx + weights.safetensors (placeholder bytes) + manifest.json with checksums."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / mf.ONNX_FILE).write_bytes(onnx_bytes)
    (folder / mf.WEIGHTS_FILE).write_bytes(b"weights of " + folder.name.encode())
    manifest = mf.manifest_from_dict(manifest_dict(**overrides), folder)
    mf.write_manifest(manifest, folder)
    return mf.load_manifest(folder)


def fake_volume(voxels: np.ndarray, modality: str = "CT", **header: str) -> SimpleNamespace:
    """What a Pipeline reads of a core Volume: voxels, modality, header, sources, series."""
    sources = [SimpleNamespace(sop_instance_uid=f"1.2.3.{k}") for k in range(voxels.shape[0])]
    return SimpleNamespace(voxels=voxels, modality=modality, header=dict(header),
                           sources=sources, series=SimpleNamespace(series_instance_uid="1.2.3"),
                           is_colour=False)
