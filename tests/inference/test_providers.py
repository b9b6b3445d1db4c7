"""Which ONNX Runtime providers really work: the probe, the override, the status line."""

from __future__ import annotations

import os
import sys
import types

import numpy as np
import pytest

from medviewer.inference import providers

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


@pytest.fixture(autouse=True)
def _fresh_probe(monkeypatch: pytest.MonkeyPatch):
    """The probe is cached per process: clear it around each test, and drop any override."""
    monkeypatch.delenv(providers.FORCE_ENV, raising=False)
    providers.working_providers.cache_clear()
    yield
    providers.working_providers.cache_clear()


def fake_onnxruntime(listed: list[str], registers: set[str], raises: set[str] = frozenset()
                     ) -> types.ModuleType:
    """An onnxruntime that lists `listed` but whose sessions only register `registers`.

    Like onnxruntime-gpu without CUDA 13: the session opens, logs loudly on both file
    descriptors and silently runs on the CPU.
    """
    ort = types.ModuleType("onnxruntime")
    ort.opened = []

    class SessionOptions:
        log_severity_level = 2

    class InferenceSession:
        def __init__(self, model: bytes, options: SessionOptions, providers: list[str]) -> None:
            ort.opened.append(providers[0])
            os.write(2, b"[E:onnxruntime] libcudnn.so.9: cannot open shared object file\n")
            os.write(1, b"fallback to CPU\n")
            print("python-level noise")
            if providers[0] in raises:
                raise RuntimeError("provider failed to initialise")
            self._providers = [p for p in providers if p in registers or p == CPU]

        def run(self, names: object, feed: dict) -> list[np.ndarray]:
            return [np.maximum(feed["x"], 0)]

        def get_providers(self) -> list[str]:
            return self._providers

    ort.SessionOptions = SessionOptions
    ort.InferenceSession = InferenceSession
    ort.get_available_providers = lambda: list(listed)
    return ort


def test_cpu_is_always_last_and_every_provider_is_listed() -> None:
    import onnxruntime as ort

    found = providers.working_providers()
    assert found[-1] == CPU
    assert set(found) <= set(ort.get_available_providers())
    assert found.count(CPU) == 1


def test_real_probe_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    """onnxruntime-gpu without a usable GPU logs CUDA errors: the probe swallows them."""
    providers.working_providers()
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_listed_but_falling_back_is_dropped(monkeypatch: pytest.MonkeyPatch,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    ort = fake_onnxruntime([TRT, CUDA, CPU], registers=set())
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    assert providers.working_providers() == (CPU,)
    assert ort.opened == [TRT, CUDA], "each listed GPU provider gets one probe session"
    out, err = capfd.readouterr()
    assert out == "" and err == "", "the probe must not leak ONNX Runtime's logs"


def test_registered_provider_is_kept_and_failing_one_dropped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ort = fake_onnxruntime([TRT, CUDA, CPU], registers={TRT, CUDA}, raises={TRT})
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    assert providers.working_providers() == (CUDA, CPU)


def test_order_follows_preference_not_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    ort = fake_onnxruntime([CPU, CUDA, TRT], registers={TRT, CUDA})
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    assert providers.working_providers() == (TRT, CUDA, CPU)


def test_environment_forces_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    ort = fake_onnxruntime([TRT, CUDA, CPU], registers={TRT, CUDA})
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    monkeypatch.setenv(providers.FORCE_ENV, "CPU")
    assert providers.working_providers() == (CPU,)
    assert ort.opened == [], "forcing the CPU needs no probe"


def test_environment_picks_among_gpu_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    ort = fake_onnxruntime([TRT, CUDA, CPU], registers={TRT, CUDA})
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    monkeypatch.setenv(providers.FORCE_ENV, " cuda , cpu")
    assert providers.working_providers() == (CUDA, CPU)


def test_probe_runs_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    ort = fake_onnxruntime([CUDA, CPU], registers={CUDA})
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    providers.working_providers()
    providers.working_providers()
    assert ort.opened == [CUDA]


def test_status_line(monkeypatch: pytest.MonkeyPatch) -> None:
    assert providers.provider_status(CUDA) == "AI: CUDA (GPU)"
    assert providers.provider_status(TRT) == "AI: TensorRT (GPU)"
    assert providers.provider_status(CPU).startswith("AI: CPU")
    ort = fake_onnxruntime([CUDA, CPU], registers=set())
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    assert providers.provider_status() == "AI: CPU (no usable GPU found)"
    providers.working_providers.cache_clear()
    monkeypatch.setitem(sys.modules, "onnxruntime", fake_onnxruntime([CUDA, CPU], {CUDA}))
    assert providers.provider_status() == "AI: CUDA (GPU)"
