"""Which runtime and precision run a model on the CPU: ONNX Runtime or OpenVINO, fp32 or int8.

Both read the same ONNX file. OpenVINO (`pip install medviewer[openvino]`) is optional and
imported only when chosen; where it is missing the model runs on ONNX Runtime and the
session's `note` says so in one sentence. int8 is a second file, `model.int8.onnx`, written
by `python -m medviewer.inference.quantize` with its accuracy against fp32 recorded in the
manifest (`options.runtime`), which also holds the model's default choice:

    "options": {"runtime": {"backend": "onnxruntime", "precision": "int8",
                            "int8": {"file": "model.int8.onnx", "sha256": "...",
                                     "accuracy": {...}}}}

The user's choice wins over the manifest's: the `backend=` argument, else MEDVIEWER_BACKEND
(e.g. "openvino", "int8", "openvino,fp32"). int8 is a CPU lever: with a GPU provider working
the model runs fp32 unless int8 is asked for.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from medviewer.inference.errors import ModelError
from medviewer.inference.manifest import ONNX_FILE, Manifest, sha256

RUNTIMES = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "int8")
BACKEND_ENV = "MEDVIEWER_BACKEND"
INT8_FILE = "model.int8.onnx"
OV_TYPES = {"f32": "tensor(float)", "i64": "tensor(int64)", "i32": "tensor(int32)",
            "u8": "tensor(uint8)"}


@dataclass(frozen=True)
class Choice:
    runtime: str = "onnxruntime"
    precision: str = "fp32"
    note: str = ""  # one sentence when the wish could not be met, else ""

    @property
    def file(self) -> str:
        return INT8_FILE if self.precision == "int8" else ONNX_FILE

    @property
    def label(self) -> str:
        return f"{'OpenVINO' if self.runtime == 'openvino' else 'ONNX Runtime'} {self.precision}"


def parse(text: str | None) -> tuple[str | None, str | None]:
    """'openvino', 'int8', 'onnxruntime,int8' ... -> (runtime, precision); None = not said."""
    runtime = precision = None
    for word in (w.strip().lower() for w in (text or "").replace("+", ",").split(",")):
        if word in ("ort", "onnxruntime"):
            runtime = "onnxruntime"
        elif word in ("ov", "openvino"):
            runtime = "openvino"
        elif word in PRECISIONS:
            precision = word
        elif word:
            raise ModelError(None, f"Unknown backend {word!r}: use onnxruntime or openvino, "
                             "and fp32 or int8 (e.g. 'openvino,int8').")
    return runtime, precision


def runtime_options(manifest: Manifest) -> dict[str, Any]:
    value = manifest.options.get("runtime", {})
    return value if isinstance(value, dict) else {}


def int8_problem(manifest: Manifest) -> str:
    """Why the model's int8 file cannot be used ('' when it can)."""
    record = runtime_options(manifest).get("int8")
    if not isinstance(record, dict) or not record.get("sha256"):
        return "this model has no int8 version (make one with python -m " \
               "medviewer.inference.quantize)"
    path = manifest.path(INT8_FILE)
    if not path.is_file():
        return f"{INT8_FILE} is missing from the model folder"
    if sha256(path) != record["sha256"]:
        return f"{INT8_FILE} does not match the checksum in manifest.json"
    return ""


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def choose(manifest: Manifest, wanted: str | None = None, on_gpu: bool = False) -> Choice:
    """The runtime and precision for this model: the user's wish (argument, else the
    environment), else the manifest's default; what cannot be had falls back with a note."""
    user_runtime, user_precision = parse(wanted if wanted is not None
                                         else os.environ.get(BACKEND_ENV))
    defaults = runtime_options(manifest)
    runtime = user_runtime or defaults.get("backend", "onnxruntime")
    precision = user_precision or ("fp32" if on_gpu else defaults.get("precision", "fp32"))
    runtime = runtime if runtime in RUNTIMES else "onnxruntime"
    precision = precision if precision in PRECISIONS else "fp32"
    notes = []
    if runtime == "openvino" and not openvino_installed():
        runtime = "onnxruntime"
        notes.append("OpenVINO is not installed (pip install openvino), so ONNX Runtime runs "
                     "the model.")
    if precision == "int8" and (problem := int8_problem(manifest)):
        precision = "fp32"
        notes.append(f"The model runs in fp32: {problem}.")
    return Choice(runtime, precision, " ".join(notes))


def describe(manifest: Manifest) -> str:
    """What runs the model by default and, where it has one, its int8 file's accuracy:
    'ONNX Runtime fp32; int8 on request: Dice 0.986 vs fp32 (worst label)'."""
    options = runtime_options(manifest)
    default = choose(manifest, "")
    text = default.label
    record = options.get("int8")
    if isinstance(record, dict) and isinstance(record.get("accuracy"), dict) and (
            default.precision == "int8" or not int8_problem(manifest)):  # choose checked it
        measure = "Dice" if manifest.task == "segmentation" else "top-1 agreement"
        agreement = record["accuracy"].get("agreement")
        if isinstance(agreement, int | float):
            where = "" if default.precision == "int8" else "; int8 on request"
            text += f"{where}: {measure} {agreement:.3f} vs fp32"
    return text + (f" ({default.note})" if default.note else "")


# --- OpenVINO behind ONNX Runtime's session interface --------------------------------------

@dataclass(frozen=True)
class _Arg:
    name: str
    shape: list
    type: str


class OpenVinoSession:
    """An OpenVINO CPU model with the few ONNX Runtime session methods ModelSession uses.

    fp32 is asked for explicitly: on CPUs with bf16 units OpenVINO's default computes in bf16
    (about 4e-3 relative off torch), which would break the fp32 parity contract. Denormal
    activations are flushed to zero, as the torch baseline does (a rounding below 1e-38).
    A model with dynamic input sizes is compiled for each input shape it is given (the last
    SHAPES kept): with every size known OpenVINO plans the whole graph, and Faster R-CNN at
    512 px ran 5-10 % faster than compiled once for any size."""

    SHAPES = 4

    def __init__(self, path: Any, threads: int) -> None:
        import openvino as ov

        self._core = ov.Core()
        self._source = self._core.read_model(str(path))
        self._config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                        "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32",
                        "CPU_DENORMALS_OPTIMIZATION": True}
        self._compiled: dict[tuple, tuple[Any, Any]] = {}  # input shapes -> model, request
        if all(p.get_partial_shape().is_static for p in self._source.inputs):
            self._compile(tuple(tuple(p.get_shape()) for p in self._source.inputs))

    def _compile(self, key: tuple) -> tuple[Any, Any]:
        if key not in self._compiled:
            while len(self._compiled) >= self.SHAPES:
                self._compiled.pop(next(iter(self._compiled)))
            model = self._source.clone()
            if not all(p.get_partial_shape().is_static for p in model.inputs):
                model.reshape({p.get_any_name(): list(s) for p, s in zip(model.inputs, key,
                                                                          strict=True)})
            compiled = self._core.compile_model(model, "CPU", self._config)
            self._compiled[key] = (compiled, compiled.create_infer_request())
        return self._compiled[key]

    @staticmethod
    def _arg(port: Any) -> _Arg:
        shape = [d.get_length() if d.is_static else f"d{i}"
                 for i, d in enumerate(port.get_partial_shape())]
        return _Arg(port.get_any_name(), shape,
                    OV_TYPES.get(port.get_element_type().get_type_name(), "tensor(float)"))

    def get_inputs(self) -> list[_Arg]:
        return [self._arg(p) for p in self._source.inputs]

    def get_outputs(self) -> list[_Arg]:
        return [self._arg(p) for p in self._source.outputs]

    def get_providers(self) -> list[str]:
        return ["CPUExecutionProvider"]  # the device; ModelSession.backend names the runtime

    def run(self, names: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        key = tuple(tuple(np.shape(feed[p.get_any_name()])) for p in self._source.inputs)
        compiled, request = self._compile(key)
        result = request.infer(feed)
        return [np.array(result[p]) for p in compiled.outputs]
