"""Model sessions for a model folder, checked against the manifest.

ONNX Runtime by default; OpenVINO or the model's int8 file when the manifest or the user
chooses them (inference/backends.py), behind the same interface.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from medviewer.inference.backends import OpenVinoSession, choose
from medviewer.inference.errors import ModelError
from medviewer.inference.manifest import Manifest
from medviewer.inference.providers import working_providers

ORT_DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64,
              "tensor(uint8)": np.uint8, "tensor(int32)": np.int32}


class ModelSession:
    """One model session: named numpy inputs in, named numpy outputs out.

    `backend` ('openvino', 'int8', 'onnxruntime,fp32' ...) overrides the manifest's choice;
    `backend_label` says what runs ('ONNX Runtime int8'), `note` why a wish fell back."""

    def __init__(self, manifest: Manifest, providers: Sequence[str] | None = None,
                 threads: int | None = None, backend: str | None = None) -> None:
        self.manifest = manifest
        threads = threads or max(1, os.cpu_count() or 1)
        providers = list(providers or working_providers())
        choice = choose(manifest, backend, on_gpu=providers[0] != "CPUExecutionProvider")
        self.backend_label, self.note = choice.label, choice.note
        self.path = path = manifest.path(choice.file)
        try:
            self._session = (OpenVinoSession(path, threads) if choice.runtime == "openvino"
                             else _ort_session(path, providers, threads))
        except Exception as exc:  # noqa: BLE001 - ORT and OpenVINO raise several unrelated types
            raise ModelError(path, f"{choice.label.rsplit(' ', 1)[0]} cannot open this model "
                             f"({_first_line(exc)}). Re-export it with `medviewer export`."
                             ) from exc
        self.provider = self._session.get_providers()[0]
        self._check_against_manifest()

    def _check_against_manifest(self) -> None:
        path = self.path
        actual = {i.name: i for i in self._session.get_inputs()}
        expected = self.manifest.onnx_inputs
        if set(actual) != set(expected):
            raise ModelError(path, f"The model's inputs {sorted(actual)} do not match its "
                             f"manifest {sorted(expected)}; the folder mixes two models. "
                             "Re-export it with `medviewer export`.")
        for name, shape in expected.items():
            got = actual[name].shape
            if len(got) != len(shape) or any(
                    isinstance(e, int) and isinstance(g, int) and e != g
                    for e, g in zip(shape, got, strict=True)):
                raise ModelError(path, f"Input {name!r} has shape {got} in the model but "
                                 f"{shape} in its manifest; re-export the model.")
        outputs = [o.name for o in self._session.get_outputs()]
        if list(self.manifest.onnx_outputs) != outputs:
            raise ModelError(path, f"The model's outputs {outputs} do not match its manifest "
                             f"{list(self.manifest.onnx_outputs)}; re-export the model.")

    def input_dtype(self, name: str) -> Any:
        for i in self._session.get_inputs():
            if i.name == name:
                return ORT_DTYPES.get(i.type, np.float32)
        raise KeyError(name)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {k: np.ascontiguousarray(v, dtype=self.input_dtype(k)) for k, v in inputs.items()}
        try:
            values = self._session.run(None, feed)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(self.path,
                             f"The model failed while running ({_first_line(exc)}). Check the "
                             "input series suits this model, or try the CPU provider "
                             "(MEDVIEWER_PROVIDERS=CPU).") from exc
        return dict(zip(self.manifest.onnx_outputs, values, strict=True))


def _ort_session(path: Any, providers: list[str], threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # ORT's spinning workers slow the next torch or ORT call when engines share the process
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=providers)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
