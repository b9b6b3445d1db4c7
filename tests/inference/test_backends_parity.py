"""The fp32 paths beside ONNX Runtime keep the export contract: OpenVINO (where the optional
extra is installed) reproduces torch to 1e-4 relative on the shipped lab models (their trained
weights, their pipeline's input); and the quantize command on a shipped model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medviewer.inference.quantize import demo_feeds, demo_volume  # noqa: E402
from medviewer.inference.registry import open_model, shipped_models_dir  # noqa: E402
from medviewer.training.export import PARITY_RTOL, load_weights, relative_error  # noqa: E402

MODELS = ("lab2-nodule-slice", "lab4-chest-unet")


@pytest.mark.parametrize("name", MODELS)
def test_openvino_fp32_matches_torch(name: str, monkeypatch) -> None:
    pytest.importorskip("openvino")  # an optional extra: the tests below run without it
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


def test_quantize_command_makes_int8_the_default_with_its_dice(tmp_path, capsys,
                                                              monkeypatch) -> None:
    import shutil

    from medviewer.inference.manifest import load_manifest
    from medviewer.inference.quantize import main

    monkeypatch.delenv("MEDVIEWER_BACKEND", raising=False)
    shipped = Path(shipped_models_dir()) / "lab4-chest-unet"
    if not shipped.is_dir():
        pytest.skip("lab4-chest-unet is not shipped")
    folder = Path(shutil.copytree(shipped, tmp_path / "unet"))
    assert main([str(folder)]) == 0
    assert "default precision now int8" in capsys.readouterr().out
    m = load_manifest(folder)  # still verifies: checksums rewritten
    accuracy = m.options["runtime"]["int8"]["accuracy"]
    assert accuracy["agreement"] >= 0.98 and len(accuracy["dice_per_label"]) == 4
    int8 = open_model(folder, providers=["CPUExecutionProvider"], threads=2)
    assert int8.session.backend_label == "ONNX Runtime int8"
    fp32 = open_model(shipped, providers=["CPUExecutionProvider"], threads=2)
    from medviewer.inference.quantize import demo_volume, dice_score

    volume = demo_volume(m, 4, seed=5)  # a phantom neither calibration nor the check saw
    a, b = fp32.run(volume).label_map, int8.run(volume).label_map
    assert a.shape == b.shape and (a > 0).any()
    assert dice_score(a > 0, b > 0) >= 0.95


def test_quantize_command_refuses_what_it_cannot_read(tmp_path, capsys) -> None:
    from medviewer.inference.quantize import main

    assert main([str(tmp_path / "nothing here")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medviewer quantize: ") and "Traceback" not in err


def test_a_new_export_does_not_inherit_the_old_int8_file(tmp_path) -> None:
    """Retraining exports with the old manifest's fields: its int8 record (of the old
    weights) is dropped, its runtime choice kept, and the new version runs fp32 quietly."""
    from medviewer.inference.session import ModelSession
    from medviewer.labs import architectures
    from medviewer.training.export import export_model

    shipped = Path(shipped_models_dir()) / "lab4-chest-unet"
    if not shipped.is_dir():
        pytest.skip("lab4-chest-unet is not shipped")
    old = open_model(shipped, providers=["CPUExecutionProvider"]).manifest
    fields = old.to_dict()
    fields["options"] = {**fields["options"], "runtime": {
        "backend": "onnxruntime", "precision": "int8",
        "int8": {"file": "model.int8.onnx", "sha256": "0" * 64, "accuracy": {}}}}
    arch = architectures.get(old.arch)
    model = arch.build(num_classes=len(old.labels),
                       **{**arch.default_options, **old.options.get("build", {})})
    new = export_model(load_weights(model, old.path("weights.safetensors")), arch,
                       tmp_path / "v2", fields)
    assert new.options["runtime"] == {"backend": "onnxruntime"}
    session = ModelSession(new, ["CPUExecutionProvider"], threads=1)
    assert (session.backend_label, session.note) == ("ONNX Runtime fp32", "")


SHIPPED_INT8 = ("lab2-nodule-slice", "lab3-fusion-early", "lab3-fusion-late",
                "lab3-fusion-single", "lab4-chest-unet", "lab4-chest-resunet",
                "lab4-chest-resunetpp")


@pytest.mark.parametrize("name", SHIPPED_INT8)
def test_shipped_models_offer_int8_on_request_and_default_to_fp32(name, monkeypatch) -> None:
    """The demo models' held-out metrics were measured in fp32, so fp32 stays their default;
    AI ▸ CPU Runtime ▸ int8 runs their int8 file (checksummed, its agreement recorded)."""
    from medviewer.inference.session import ModelSession

    folder = Path(shipped_models_dir()) / name
    if not folder.is_dir():
        pytest.skip(f"{name} is not shipped")
    monkeypatch.delenv("MEDVIEWER_BACKEND", raising=False)
    default = open_model(folder, providers=["CPUExecutionProvider"], threads=2)
    assert default.session.backend_label == "ONNX Runtime fp32"
    accuracy = default.manifest.options["runtime"]["int8"]["accuracy"]
    assert accuracy["agreement"] >= 0.98 and accuracy["versus"] == "fp32 model.onnx"
    int8 = ModelSession(default.manifest, ["CPUExecutionProvider"], 2, backend="int8")
    assert int8.backend_label == "ONNX Runtime int8" and not int8.note
    feed = demo_feeds(default.pipeline, demo_volume(default.manifest, 4, seed=7), batch=4)[0]
    name_out = default.manifest.onnx_outputs[0]
    a, b = default.session.run(feed)[name_out], int8.run(feed)[name_out]
    assert a.shape == b.shape
    assert np.mean(a.argmax(1) == b.argmax(1)) >= 0.95  # the same calls, near enough
