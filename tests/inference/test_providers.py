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
def _fresh_probe(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """The probe is cached per process and on disk: clear the first around each test, give
    each test its own cache folder, and drop any override."""
    monkeypatch.delenv(providers.FORCE_ENV, raising=False)
    monkeypatch.setenv("MEDVIEWER_CACHE_DIR", str(tmp_path / "cache"))
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
    providers.cache_path().unlink()  # another machine
    monkeypatch.setitem(sys.modules, "onnxruntime", fake_onnxruntime([CUDA, CPU], {CUDA}))
    assert providers.provider_status() == "AI: CUDA (GPU)"


def _new_process() -> None:
    """What a new `medviewer infer` starts with: no answer in memory (the disk cache stays)."""
    providers.working_providers.cache_clear()


def test_a_later_process_reuses_the_answer_from_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    ort = fake_onnxruntime([TRT, CUDA, CPU], registers={CUDA})
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    assert providers.working_providers() == (CUDA, CPU)
    assert ort.opened == [TRT, CUDA] and providers.cache_path().is_file()
    _new_process()
    assert providers.working_providers() == (CUDA, CPU)
    assert ort.opened == [TRT, CUDA], "no second probe: the answer came from the cache"


@pytest.mark.parametrize("change", ["onnxruntime version", "visible devices", "library path"])
def test_the_cached_answer_is_probed_again_when_what_decides_it_changes(
        monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    ort = fake_onnxruntime([CUDA, CPU], registers=set())
    ort.__version__ = "1.31.1"
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    assert providers.working_providers() == (CPU,)
    if change == "onnxruntime version":  # e.g. onnxruntime-gpu upgraded to one that finds CUDA
        ort.__version__ = "1.32.0"
    elif change == "visible devices":
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    else:  # CUDA / cuDNN installed somewhere new
        monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/cudnn9/lib")
    registers = fake_onnxruntime([CUDA, CPU], registers={CUDA})
    registers.__version__ = ort.__version__
    monkeypatch.setitem(sys.modules, "onnxruntime", registers)
    _new_process()
    assert providers.working_providers() == (CUDA, CPU)
    assert registers.opened == [CUDA]


def test_a_damaged_or_unwritable_cache_only_costs_a_probe(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path) -> None:
    import json

    ort = fake_onnxruntime([CUDA, CPU], registers={CUDA})
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    path = providers.cache_path()
    path.parent.mkdir(parents=True)
    path.write_text('{"x": ')  # cut short by a crash
    assert providers.working_providers() == (CUDA, CPU)
    assert ort.opened == [CUDA]
    key = providers.fingerprint(ort, [CUDA])
    assert json.loads(path.read_text()) == {key: [CUDA, CPU]}  # rewritten whole
    path.write_text(json.dumps({key: ["EvilProvider", CPU]}))  # not an answer of ours
    _new_process()
    assert providers.working_providers() == (CUDA, CPU)
    assert ort.opened == [CUDA, CUDA]
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("MEDVIEWER_CACHE_DIR", str(blocked / "cache"))
    _new_process()
    assert providers.working_providers() == (CUDA, CPU)  # probed, not kept, no error
    assert ort.opened == [CUDA, CUDA, CUDA]
