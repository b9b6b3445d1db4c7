"""torch weights -> model folder: ONNX graph, safetensors weights, manifest, parity-checked.

The manifest's fields are checked (the schema of inference/manifest.py) before anything is
exported; weights holding NaN or infinity are refused. The export is written into a hidden
staging folder beside the target (inference/staging.py: the next export removes one a killed
process left) and renamed into place only after ONNX Runtime reproduced torch's outputs, so a
failed export never leaves a half model.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medviewer.core.atomic import shareable_mode
from medviewer.inference.errors import ModelError
from medviewer.inference.manifest import (
    ONNX_FILE,
    WEIGHTS_FILE,
    Manifest,
    load_manifest,
    manifest_from_dict,
    write_manifest,
)
from medviewer.inference.staging import aside_name, make_staging, remove_stale
from medviewer.labs.architectures import Architecture, get

OPSET = 17
PARITY_RTOL = 1e-4


def save_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path))


def load_weights(model: nn.Module, path: str | Path, *, strict: bool = True) -> nn.Module:
    """Weights from safetensors (never pickles); a shape mismatch becomes a ModelError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
        model.load_state_dict(state, strict=strict)
    except SafetensorError as exc:
        raise ModelError(path, f"This is not a readable safetensors file ({str(exc)[:300]}); "
                         "it is damaged or of another format.") from exc
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelError(path, f"These weights do not fit the architecture ({str(exc)[:300]})."
                         " Pick the architecture the checkpoint was trained with.") from exc
    return model


def export_onnx(model: nn.Module, arch: Architecture, path: Path,
                inputs: Sequence[torch.Tensor]) -> Path:
    """The TorchScript-based exporter (dynamo=False): it handles Faster R-CNN, dynamo does not."""
    model.eval()
    with torch.no_grad():
        torch.onnx.export(model, tuple(inputs), str(path), input_names=list(arch.input_names),
                          output_names=list(arch.output_names), dynamic_axes=arch.dynamic_axes,
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    return path


def torch_outputs(model: nn.Module, inputs: Sequence[torch.Tensor]) -> list[np.ndarray]:
    model.eval()
    with torch.no_grad():
        out = model(*inputs)
    out = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().cpu().numpy() for o in out]


def ort_outputs(path: Path, arch: Architecture, inputs: Sequence[torch.Tensor]
                ) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {n: t.detach().cpu().numpy() for n, t in zip(arch.input_names, inputs, strict=True)}
    return session.run(None, feed)


def relative_error(expected: np.ndarray, actual: np.ndarray) -> float:
    """max |a - e| / max(|e|, 1e-6): one number per output, scale-free; inf when the shapes
    differ or either side holds NaN or infinity (a comparison with NaN is never "too big")."""
    if expected.shape != actual.shape:
        return math.inf
    if expected.size == 0:
        return 0.0
    e, a = expected.astype(np.float64), actual.astype(np.float64)
    if not (np.isfinite(e).all() and np.isfinite(a).all()):
        return math.inf
    return float(np.abs(e - a).max() / max(float(np.abs(e).max()), 1e-6))


def non_finite_weights(model: nn.Module) -> list[str]:
    """Names of the weights (parameters and buffers) holding NaN or infinity."""
    return [name for name, t in model.state_dict().items()
            if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def parity_check(model: nn.Module, path: Path, arch: Architecture,
                 inputs: Sequence[torch.Tensor], rtol: float = PARITY_RTOL) -> float:
    """Largest relative error between torch and ONNX Runtime; ModelError above `rtol`, when
    the outputs differ in number or shape, or when either holds NaN or infinity."""
    expected = torch_outputs(model, inputs)
    actual = ort_outputs(path, arch, inputs)
    if len(expected) != len(actual):
        raise ModelError(path, f"ONNX Runtime gives {len(actual)} outputs, torch "
                         f"{len(expected)}. The export is not trustworthy.")
    if getattr(arch, "task", None) == "detection" and len(actual) == 3:
        actual = same_order(expected, actual)
    errors = [relative_error(e, a) for e, a in zip(expected, actual, strict=True)]
    worst = max(errors) if errors else 0.0
    if not worst <= rtol:
        shapes = [(e.shape, a.shape) for e, a in zip(expected, actual, strict=True)]
        finite = all(np.isfinite(x).all() for x in (*expected, *actual))
        why = "" if finite else " (an output holds NaN or infinity)"
        raise ModelError(path, f"ONNX Runtime differs from torch by {worst:.2e}{why} (relative; "
                         f"limit {rtol:.0e}; shapes {shapes}). The export is not trustworthy.")
    return worst


def same_order(expected: Sequence[np.ndarray], actual: Sequence[np.ndarray]
               ) -> list[np.ndarray]:
    """ONNX Runtime's (boxes, scores, labels) put in torch's order of detections: each torch
    box takes the unclaimed ORT box of its label nearest to it. Two boxes whose scores tie
    within float noise may leave NMS in either order; comparing row by row would call that
    a difference of a whole box. Different counts are left as they are (and refused)."""
    boxes, scores, labels = (np.asarray(a) for a in actual)
    if len(boxes) != len(expected[0]) or boxes.ndim != 2:
        return list(actual)
    free = np.ones(len(boxes), bool)
    order = []
    for box, label in zip(np.asarray(expected[0]), np.asarray(expected[2]), strict=True):
        distance = np.abs(boxes - box).max(axis=1) + np.where(free & (labels == label), 0,
                                                              np.inf)
        j = int(np.argmin(distance)) if len(distance) else 0
        if not np.isfinite(distance[j]):
            return list(actual)  # nothing left of that label: refused row by row
        free[j] = False
        order.append(j)
    return [boxes[order], scores[order], labels[order]]


def check_weights(model: nn.Module, where: Path) -> None:
    bad = non_finite_weights(model)
    if bad:
        raise ModelError(where, f"The weights hold NaN or infinite values ({', '.join(bad[:5])}"
                         f"{' ...' if len(bad) > 5 else ''}); a model with them answers "
                         "nonsense, so it is not exported. Train again or pick another "
                         "checkpoint.")


def manifest_fields(arch: Architecture, manifest: dict[str, Any],
                    inputs: Sequence[torch.Tensor]) -> dict[str, Any]:
    """The caller's fields completed with what export knows: lab, task, arch, ONNX signature;
    checked against the manifest schema (ModelError naming the field)."""
    d = {"lab": arch.lab, "task": arch.task, "arch": arch.name, **manifest}
    d["options"] = without_int8(d.get("options", {}))
    d["onnx_inputs"] = _signature(arch, inputs)
    d["onnx_outputs"] = list(arch.output_names)
    manifest_from_dict(d)
    return d


def without_int8(options: dict[str, Any]) -> dict[str, Any]:
    """The options less an int8 record and choice copied from an earlier model (a retrained
    version's or a similar model's fields): an int8 file belongs to the weights it was
    quantized from; the runtime choice (ONNX Runtime / OpenVINO) is kept."""
    runtime = options.get("runtime") if isinstance(options, dict) else None
    if not isinstance(runtime, dict):
        return options  # the schema check names what is wrong with them
    kept = {k: v for k, v in runtime.items() if k not in ("int8", "precision")}
    return {**{k: v for k, v in options.items() if k != "runtime"},
            **({"runtime": kept} if kept else {})}


def export_model(model: nn.Module, arch: str | Architecture, folder: str | Path,
                 manifest: dict[str, Any], inputs: Sequence[torch.Tensor] | None = None
                 ) -> Manifest:
    """Write `folder` (model.onnx, weights.safetensors, manifest.json) after a parity check.

    `manifest` holds the fields export cannot know (id, title, labels, input spec, metrics,
    provenance...); arch, lab, task and the ONNX signature are filled in here.
    """
    arch = get(arch) if isinstance(arch, str) else arch
    folder = Path(folder)
    inputs = tuple(inputs) if inputs is not None else arch.example_inputs()
    d = manifest_fields(arch, manifest, inputs)  # before anything is written
    check_weights(model, folder)
    with staged_folder(folder) as staging:
        export_onnx(model, arch, staging / ONNX_FILE, inputs)
        worst = parity_check(model, staging / ONNX_FILE, arch, inputs)
        save_weights(model, staging / WEIGHTS_FILE)
        # a new dict: the caller's provenance (often reused for the next export) stays as given;
        # "created" is when these weights were exported (Model > Versions shows it), UTC
        d["provenance"] = {**d.get("provenance", {}),
                           "created": datetime.now(UTC).isoformat(timespec="seconds"),
                           "parity_max_relative_error": worst}
        write_manifest(manifest_from_dict(d, staging), staging)
    return load_manifest(folder)


@contextlib.contextmanager
def staged_folder(folder: Path) -> Iterator[Path]:
    """A hidden staging folder beside `folder` (one a killed process left is removed first):
    the block writes the model there; when it ends well the folder is made shareable and
    renamed into place (_replace_folder), when it raises it is removed and nothing changed."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(folder.parent, folder.name)
    staging = make_staging(folder.parent, folder.name)
    try:
        yield staging
        os.chmod(staging, shareable_mode(0o777))  # mkdtemp's 0700 would hide it from others
        _replace_folder(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace_folder(staging: Path, folder: Path) -> None:
    """Rename `staging` to `folder`, an old `folder` moved aside whole first and deleted after:
    a kill at any moment leaves the old model, none or the new one, never part of one."""
    old = aside_name(folder.parent, folder.name) if os.path.lexists(folder) else None
    if old is None:
        staging.rename(folder)
        return
    os.rename(folder, old)
    try:
        staging.rename(folder)
    except OSError:
        os.rename(old, folder)  # the old one back, not lost with the failed export
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


def _signature(arch: Architecture, inputs: Sequence[torch.Tensor]) -> dict[str, list]:
    out = {}
    for name, t in zip(arch.input_names, inputs, strict=True):
        dynamic = arch.dynamic_axes.get(name, {})
        out[name] = [dynamic.get(i, int(s)) for i, s in enumerate(t.shape)]
    return out
