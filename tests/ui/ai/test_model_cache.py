"""The AI's model cache (ui/ai/tasks.py): one open per model and runtime, and a runtime change
from the GUI thread never waits on a worker that is opening a model."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from medviewer.ui.ai import tasks


def test_a_runtime_change_opens_again_and_never_waits(monkeypatch) -> None:
    opened: list[str | None] = []
    gate, started = threading.Event(), threading.Event()

    def fake_open(manifest, backend=None):
        opened.append(backend)
        if backend == "openvino":
            started.set()
            gate.wait(10)  # a slow open on a worker
        return SimpleNamespace(backend=backend)

    monkeypatch.setattr(tasks, "open_model", fake_open)
    m = SimpleNamespace(id="m", version="1", folder="/models/m")
    cache = tasks.ModelCache()
    assert cache.get(m).backend is None and cache.get(m).backend is None
    assert opened == [None]  # opened once
    cache.set_backend("openvino")
    worker = threading.Thread(target=cache.get, args=(m,))
    worker.start()
    assert started.wait(10)
    cache.set_backend("onnxruntime,int8")  # returns while the worker holds the lock
    assert cache.backend == "onnxruntime,int8"
    gate.set()
    worker.join(10)
    assert cache.get(m).backend == "onnxruntime,int8"
    assert opened == [None, "openvino", "onnxruntime,int8"]
    cache.set_backend("")  # back: the others are dropped, the default opens afresh
    assert cache.get(m).backend is None and opened[-1] is None
    assert cache.cached(m) is not None
