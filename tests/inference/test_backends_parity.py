"""The fp32 paths beside ONNX Runtime keep the export contract: OpenVINO reproduces torch to
1e-4 relative on the shipped lab models (their trained weights, their pipeline's input)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("openvino")

from medviewer.inference.quantize import demo_feeds, demo_volume  # noqa: E402
from medviewer.inference.registry import open_model, shipped_models_dir  # noqa: E402
from medviewer.training.export import PARITY_RTOL, load_weights, relative_error  # noqa: E402

MODELS = ("lab2-nodule-slice", "lab4-chest-unet")


@pytest.mark.parametrize("name", MODELS)
def test_openvino_fp32_matches_torch(name: str, monkeypatch) -> None:
    from medviewer.labs import architectures

    folder = Path(shipped_models_dir()) / name
    if not folder.is_dir():
        pytest.skip(f"{name} is not shipped")
    monkeypatch.delenv("MEDVIEWER_BACKEND", raising=False)
    loaded = open_model(folder, providers=["CPUExecutionProvider"], threads=2)
    m = loaded.manifest
    arch = architectures.get(m.arch)
    model = arch.build(num_classes=len(m.labels),
                       **{**arch.default_options, **m.options.get("build", {})})
    model = load_weights(model, m.path("weights.safetensors")).eval()
    feed = demo_feeds(loaded.pipeline, demo_volume(m, 4, seed=3), batch=4)[0]
    with torch.no_grad():
        expected = model(*(torch.from_numpy(np.ascontiguousarray(feed[n]))
                           for n in arch.input_names))
    from medviewer.inference.session import ModelSession

    session = ModelSession(m, ["CPUExecutionProvider"], threads=2, backend="openvino,fp32")
    assert session.backend_label == "OpenVINO fp32"
    actual = session.run(feed)[m.onnx_outputs[0]]
    assert relative_error(expected.numpy(), actual) <= PARITY_RTOL
