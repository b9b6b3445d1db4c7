"""Which ONNX Runtime execution providers really work on this machine.

onnxruntime-gpu lists the CUDA and TensorRT providers even where no GPU or no CUDA 13 /
cuDNN 9 is installed; a session asked for them then falls back to the CPU with loud errors.
`working_providers` opens a one-node probe session per provider, silenced, and keeps only the
ones the session really registered. The answer is cached for the process, and on disk
(`providers.json` in the user cache folder, or MEDVIEWER_CACHE_DIR) under a fingerprint of
what decides it: the onnxruntime version and its listed providers, the machine, the NVIDIA
driver and devices, the visible-device and library-path variables, and the system's and pip's
CUDA libraries (ld.so.cache, the `nvidia` packages). A change to any of them probes again;
probing costs ~0.7 s with onnxruntime-gpu on a machine without a usable GPU.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import sys
from collections.abc import Iterator
from pathlib import Path

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


def cache_path() -> Path:
    """Where the probe's answers are kept (beside the scan cache)."""
    import platformdirs

    folder = os.environ.get("MEDVIEWER_CACHE_DIR") or platformdirs.user_cache_dir("MedViewer")
    return Path(folder) / "providers.json"


def _stamp(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_mtime_ns}:{st.st_size}"


def fingerprint(ort, wanted: list[str]) -> str:
    """A hash of everything that decides which of `wanted` work (see the module's doc)."""
    import importlib.util

    def read(path: str) -> str:
        try:
            return Path(path).read_text(errors="replace")[:512]
        except OSError:
            return ""

    try:
        devices = sorted(n for n in os.listdir("/dev") if n.startswith(("nvidia", "dxg")))
    except OSError:
        devices = []
    nvidia = importlib.util.find_spec("nvidia")  # pip's CUDA / cuDNN wheels, if any
    facts = {
        "onnxruntime": getattr(ort, "__version__", ""), "wanted": wanted,
        "python": sys.executable, "machine": platform.machine(), "node": platform.node(),
        "driver": read("/proc/driver/nvidia/version"), "devices": devices,
        "env": [os.environ.get(k, "") for k in ("CUDA_VISIBLE_DEVICES",
                                                "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH",
                                                "PATH" if os.name == "nt" else "CUDA_HOME")],
        "ld.so.cache": _stamp("/etc/ld.so.cache"),
        "pip nvidia": [_stamp(p) for p in (nvidia.submodule_search_locations or [])]
        if nvidia else [],
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def _cached(key: str) -> tuple[str, ...] | None:
    try:
        answer = json.loads(cache_path().read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(answer, list) and all(p in PREFERENCE for p in answer):
        return tuple(answer)
    return None  # not ours, or damaged: probe again


def _remember(key: str, answer: tuple[str, ...]) -> None:
    """Keep the answer (the last few fingerprints); a cache that cannot be written is skipped."""
    from medviewer.core.atomic import write_text_atomic

    path = cache_path()
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    known.pop(key, None)
    known[key] = list(answer)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(dict(list(known.items())[-8:]), indent=1))
    except OSError:
        pass


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
    if not wanted:
        return ("CPUExecutionProvider",)
    key = fingerprint(ort, wanted)
    answer = _cached(key)
    if answer is None:
        model = _probe_model()
        answer = tuple(p for p in wanted if _works(ort, p, model)) + ("CPUExecutionProvider",)
        _remember(key, answer)
    return answer


def provider_status(in_use: str | None = None) -> str:
    """One line for the status bar, e.g. 'AI: CUDA (GPU)' or 'AI: CPU (no usable GPU)'."""
    best = in_use or working_providers()[0]
    if best == "CPUExecutionProvider":
        return "AI: CPU (no usable GPU found)"
    return f"AI: {SHORT.get(best, best)} (GPU)"
