"""Runtime and precision choice (inference/backends.py) and int8 quantization (quantize.py):
the user's wish beats the manifest's default, what cannot be had falls back with a sentence,
the int8 file is checked and its accuracy against fp32 is measured and recorded."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.inference import ModelError, backends
from medviewer.inference.quantize import quantize_model
from medviewer.inference.session import ModelSession

from .tiny import SIZE, classifier_onnx, segmenter_onnx

CPU = ["CPUExecutionProvider"]
SEGMENTER = {"task": "segmentation", "labels": [{"name": "background"}, {"name": "lung"}]}


def images(seed: int, n: int = 4) -> dict[str, np.ndarray]:
    """Smooth images with positive and negative areas (label 1 where a pixel is above 0)."""
    yy, xx = np.mgrid[:SIZE[0], :SIZE[1]]
    rng = np.random.default_rng(seed)
    stack = [np.sin(xx / 2 + rng.uniform(0, 6)) * np.cos(yy / 3 + rng.uniform(0, 6))
             for _ in range(n)]
    return {"image": np.stack(stack)[:, None].astype(np.float32)}


@pytest.fixture(autouse=True)
def no_user_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(backends.BACKEND_ENV, raising=False)


@pytest.fixture
def int8_segmenter(make_model):
    m = make_model(onnx_bytes=segmenter_onnx(), onnx_outputs=["logits"], **SEGMENTER)
    calibration = [images(seed) for seed in range(4)]
    return quantize_model(m, calibration, [images(10), images(11)], note="test images")


def test_default_is_onnx_runtime_fp32(make_model) -> None:
    session = ModelSession(make_model(), CPU, threads=1)
    assert (session.backend_label, session.note) == ("ONNX Runtime fp32", "")


def test_unknown_backend_is_a_sentence(make_model) -> None:
    with pytest.raises(ModelError, match="Unknown backend 'tensorflow'"):
        ModelSession(make_model(), CPU, backend="tensorflow")


def test_missing_openvino_falls_back_to_onnx_runtime(make_model, monkeypatch) -> None:
    monkeypatch.setattr(backends, "openvino_installed", lambda: False)
    monkeypatch.setenv(backends.BACKEND_ENV, "openvino")
    onnx_bytes, weights = classifier_onnx()
    session = ModelSession(make_model(onnx_bytes=onnx_bytes), CPU, threads=1)
    assert session.backend_label == "ONNX Runtime fp32"
    assert session.note.startswith("OpenVINO is not installed")
    image = images(0)["image"]
    np.testing.assert_allclose(session.run({"image": image})["logits"],
                               image.reshape(4, -1) @ weights, rtol=1e-5, atol=1e-6)


def test_int8_without_a_quantized_file_runs_fp32_and_says_why(make_model) -> None:
    session = ModelSession(make_model(), CPU, backend="int8")
    assert session.backend_label == "ONNX Runtime fp32"
    assert "has no int8 version" in session.note


def test_quantized_model_records_its_accuracy_and_runs_int8_by_default(int8_segmenter) -> None:
    runtime = int8_segmenter.options["runtime"]
    measured = runtime["int8"]["accuracy"]
    assert runtime["precision"] == "int8" and measured["agreement"] >= 0.98
    assert measured["held_out_inputs"] == 8 and measured["calibration"] == "test images"
    int8 = ModelSession(int8_segmenter, CPU, threads=1)
    fp32 = ModelSession(int8_segmenter, CPU, threads=1, backend="fp32")
    assert (int8.backend_label, fp32.backend_label) == ("ONNX Runtime int8", "ONNX Runtime fp32")
    feed = images(10)  # one of the held-out inputs: the recorded figure covers it
    a, b = fp32.run(feed)["logits"], int8.run(feed)["logits"]
    np.testing.assert_allclose(a[:, 1], feed["image"][:, 0], rtol=1e-6)  # fp32 is exact
    assert 0 < np.abs(a - b).max() <= measured["max_abs_diff"]  # int8 is not


def test_user_choice_beats_the_manifest_default(int8_segmenter, monkeypatch) -> None:
    monkeypatch.setenv(backends.BACKEND_ENV, "fp32")
    assert ModelSession(int8_segmenter, CPU).backend_label == "ONNX Runtime fp32"


def test_int8_is_not_the_default_on_a_gpu(int8_segmenter) -> None:
    assert backends.choose(int8_segmenter, on_gpu=True).precision == "fp32"
    assert backends.choose(int8_segmenter, "int8", on_gpu=True).precision == "int8"


def test_a_damaged_int8_file_is_not_run(int8_segmenter) -> None:
    path = int8_segmenter.path(backends.INT8_FILE)
    path.write_bytes(path.read_bytes() + b"\0")
    session = ModelSession(int8_segmenter, CPU)
    assert session.backend_label == "ONNX Runtime fp32"
    assert "does not match the checksum" in session.note


def test_too_inaccurate_int8_stays_optional(make_model) -> None:
    m = make_model(onnx_bytes=segmenter_onnx(), onnx_outputs=["logits"], **SEGMENTER)
    done = quantize_model(m, [images(1)], [images(2)], min_agreement=1.01)
    assert done.options["runtime"]["precision"] == "fp32"
    assert ModelSession(done, CPU).backend_label == "ONNX Runtime fp32"
    assert ModelSession(done, CPU, backend="int8").backend_label == "ONNX Runtime int8"


def test_int8_kept_on_request_only_leaves_fp32_the_default(make_model) -> None:
    m = make_model(onnx_bytes=segmenter_onnx(), onnx_outputs=["logits"], **SEGMENTER)
    done = quantize_model(m, [images(1)], [images(2)], keep_fp32=True)
    runtime = done.options["runtime"]
    assert runtime["int8"]["accuracy"]["agreement"] >= 0.98  # would have been the default
    assert runtime["precision"] == "fp32"
    assert ModelSession(done, CPU).backend_label == "ONNX Runtime fp32"
    assert ModelSession(done, CPU, backend="int8").backend_label == "ONNX Runtime int8"


def test_detection_models_are_not_quantized(make_model) -> None:
    m = make_model(task="detection")
    with pytest.raises(ModelError, match="detection models are not quantized"):
        quantize_model(m, [images(0)], [images(1)])


def test_openvino_matches_onnx_runtime_in_fp32(make_model) -> None:
    pytest.importorskip("openvino")
    m = make_model(onnx_bytes=segmenter_onnx(), onnx_outputs=["logits"], **SEGMENTER)
    ov = ModelSession(m, CPU, threads=1, backend="openvino")
    assert (ov.backend_label, ov.note) == ("OpenVINO fp32", "")
    feed = images(3)
    np.testing.assert_allclose(ov.run(feed)["logits"][:, 1], feed["image"][:, 0], rtol=1e-6)


def test_openvino_runs_every_batch_size_it_is_given(make_model) -> None:
    """A dynamic-size model is compiled per input shape: each size still gives the right
    answer, and only the last few compiled shapes are kept."""
    pytest.importorskip("openvino")
    m = make_model(onnx_bytes=segmenter_onnx(), onnx_outputs=["logits"], **SEGMENTER)
    ov = ModelSession(m, CPU, threads=1, backend="openvino")
    assert ov._session.get_inputs()[0].shape[0] == "d0"  # the batch stays open to the caller
    for n in (4, 2, 4, 1, 3, 5, 2):
        feed = images(n, n)
        logits = ov.run(feed)["logits"]
        assert logits.shape == (n, 2, *SIZE)
        np.testing.assert_allclose(logits[:, 1], feed["image"][:, 0], rtol=1e-6)
        assert len(ov._session._compiled) <= backends.OpenVinoSession.SHAPES


def test_the_model_list_says_what_runs_and_what_int8_costs(int8_segmenter, make_model) -> None:
    dice = int8_segmenter.options["runtime"]["int8"]["accuracy"]["agreement"]
    assert backends.describe(int8_segmenter) == f"ONNX Runtime int8: Dice {dice:.3f} vs fp32"
    rough = make_model("rough", onnx_bytes=segmenter_onnx(), onnx_outputs=["logits"],
                       **SEGMENTER)
    rough = quantize_model(rough, [images(0)], [images(1)], min_agreement=1.01)
    assert backends.describe(rough).startswith("ONNX Runtime fp32; int8 on request: Dice ")
    (rough.folder / backends.INT8_FILE).unlink()  # nothing to offer once the file is gone
    assert backends.describe(rough) == "ONNX Runtime fp32"
