"""Which ONNX Runtime execution providers really work on this machine.

onnxruntime-gpu lists the CUDA and TensorRT providers even where no GPU or no CUDA 13 /
cuDNN 9 is installed; a session asked for them then falls back to the CPU with loud errors.
`working_providers` opens a one-node probe session per provider, silenced, and keeps only the
ones the session really registered. The answer is cached for the process.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator

PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
SHORT = {"TensorrtExecutionProvider": "TensorRT", "CUDAExecutionProvider": "CUDA",
         "CPUExecutionProvider": "CPU"}
FORCE_ENV = "MEDVIEWER_PROVIDERS"  # e.g. "CPU" to keep models off the GPU


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence stdout/stderr at the file-descriptor level (C++ logs) and Python's own streams.

    Both: onnxruntime prints its "EP Error ... Falling back" banner with Python's print, and
    sys.stdout is not file descriptor 1 under pytest, IPython or a GUI that redirects it.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), \
                contextlib.redirect_stderr(sink):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _probe_model() -> bytes:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _works(ort, provider: str, model: bytes) -> bool:
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        with _quiet():
            session = ort.InferenceSession(model, options,
                                           providers=[provider, "CPUExecutionProvider"])
            import numpy as np

            session.run(None, {"x": np.ones(1, np.float32)})
    except Exception:  # noqa: BLE001 - any failure means the provider does not work here
        return False
    return provider in session.get_providers()


@functools.cache
def working_providers() -> tuple[str, ...]:
    """The providers that really run here, best first; the CPU provider is always last."""
    import onnxruntime as ort

    forced = os.environ.get(FORCE_ENV)
    listed = set(ort.get_available_providers())
    wanted = [p for p in PREFERENCE if p in listed and p != "CPUExecutionProvider"]
    if forced:
        allowed = {s.strip().lower() for s in forced.split(",")}
        wanted = [p for p in wanted if SHORT[p].lower() in allowed]
    model = _probe_model() if wanted else b""
    return tuple(p for p in wanted if _works(ort, p, model)) + ("CPUExecutionProvider",)


def provider_status(in_use: str | None = None) -> str:
    """One line for the status bar, e.g. 'AI: CUDA (GPU)' or 'AI: CPU (no usable GPU)'."""
    best = in_use or working_providers()[0]
    if best == "CPUExecutionProvider":
        return "AI: CPU (no usable GPU found)"
    return f"AI: {SHORT.get(best, best)} (GPU)"
