"""ModelSession: the ONNX graph is checked against its manifest, and errors read as sentences."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.inference import ModelError
from medviewer.inference import manifest as mf
from medviewer.inference.session import ModelSession

from .tiny import SIZE, classifier_onnx

CPU = ["CPUExecutionProvider"]


def test_runs_and_names_outputs_as_the_manifest(make_model) -> None:
    onnx_bytes, weights = classifier_onnx()
    session = ModelSession(make_model(onnx_bytes=onnx_bytes), CPU, threads=1)
    assert session.provider == "CPUExecutionProvider"
    image = np.random.default_rng(0).normal(size=(3, 1, *SIZE))
    out = session.run({"image": image})  # float64 in: the session casts to the graph's float32
    assert list(out) == ["logits"]
    expected = image.reshape(3, -1).astype(np.float32) @ weights
    np.testing.assert_allclose(out["logits"], expected, rtol=1e-5, atol=1e-6)


def test_spinning_is_off_and_threads_are_set(make_model) -> None:
    session = ModelSession(make_model(), CPU, threads=1)
    options = session._session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 1


@pytest.mark.parametrize(("onnx_inputs", "onnx_outputs", "message"), [
    ({"pixels": ["batch", 1, *SIZE]}, ["logits"], "do not match its manifest"),
    ({"image": ["batch", 1, *SIZE], "extras": ["batch", 2]}, ["logits"], "mixes two models"),
    ({"image": ["batch", *SIZE]}, ["logits"], "has shape"),
    ({"image": ["batch", 1, 16, 16]}, ["logits"], "has shape"),
    ({"image": ["batch", 3, *SIZE]}, ["logits"], "has shape"),
    ({"image": ["batch", 1, *SIZE]}, ["scores"], "outputs"),
])
def test_graph_not_matching_manifest(make_model, onnx_inputs: dict, onnx_outputs: list,
                                     message: str) -> None:
    m = make_model(onnx_inputs=onnx_inputs, onnx_outputs=onnx_outputs)
    with pytest.raises(ModelError, match=message) as info:
        ModelSession(m, CPU)
    assert info.value.path == str(m.path(mf.ONNX_FILE))
    assert "re-export" in info.value.reason.lower()


def test_fixed_batch_in_manifest_matches_dynamic_graph(make_model) -> None:
    """A fixed size in the manifest against a dynamic axis of the graph is not a mismatch."""
    session = ModelSession(make_model(onnx_inputs={"image": [2, 1, *SIZE]}), CPU)
    assert session.run({"image": np.zeros((2, 1, *SIZE))})["logits"].shape == (2, 2)


def test_corrupt_onnx_is_a_model_error(make_model) -> None:
    m = make_model(onnx_bytes=b"\x08\x07 this is not a protobuf graph" * 10)
    with pytest.raises(ModelError, match="ONNX Runtime cannot open this model") as info:
        ModelSession(m, CPU)
    assert info.value.path == str(m.path(mf.ONNX_FILE))


def test_truncated_onnx_is_a_model_error(make_model) -> None:
    onnx_bytes = classifier_onnx()[0]
    m = make_model(onnx_bytes=onnx_bytes[: len(onnx_bytes) // 2])
    with pytest.raises(ModelError, match="cannot open"):
        ModelSession(m, CPU)


def test_run_failure_says_what_to_try(make_model) -> None:
    session = ModelSession(make_model(), CPU)
    with pytest.raises(ModelError, match="failed while running") as info:
        session.run({"image": np.zeros((1, 1, 5, 5), np.float32)})
    assert "MEDVIEWER_PROVIDERS=CPU" in info.value.reason


def test_input_dtype_from_the_graph(make_model) -> None:
    session = ModelSession(make_model(), CPU)
    assert session.input_dtype("image") is np.float32
    with pytest.raises(KeyError):
        session.input_dtype("nothing")
