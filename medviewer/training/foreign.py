"""Self-contained model files (ONNX, TorchScript, torch.export .pt2) -> a MedViewer model folder.

No architecture is needed: the graph says what goes in and out. A TorchScript or .pt2 file is
converted to ONNX (the TorchScript-based exporter, dynamo=False) and checked against torch to
1e-4 like every export. The ONNX graph's inputs and outputs are renamed to the lab's own names
("image", "extras", "slices"; "logits" or "boxes", "scores", "labels"), so the lab's plugin
feeds it unchanged; a fixed batch of one is freed when the plugin feeds several slices at a
time (and checked: a batch of two answers as each slice alone). A probe input at the manifest's
size must give outputs that suit the task before anything is written; the folder is staged
and renamed into place whole (training/export.py). Such a model has no torch layers, so it has
no class activation map and cannot be retrained: inference.manifest.external_problem says so.
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from medviewer.inference.errors import ModelError
from medviewer.inference.manifest import (
    ONNX_FILE,
    Manifest,
    load_manifest,
    manifest_from_dict,
    write_manifest,
)
from medviewer.training.foreign_graph import (
    BATCHED_LABS,
    first_line,
    graph_io,
    load_onnx,
    probe,
    probe_feed,
    wire,
)
from medviewer.training.importing import LAB_TASKS, Inspection

ARCH_OF_KIND = {"onnx": "external.onnx", "torchscript": "external.torchscript",
                "exported-program": "external.exported-program"}
Progress = Callable[[str, float], None]


# ----------------------------------------------------------------------------- what a file is
def kind_of(path: str | Path) -> str | None:
    """"onnx", "torchscript", "exported-program" or None, from the file's first bytes and, for a
    zip, its list of names (nothing in it is read or run)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
        if head.startswith(b"PK\x03\x04"):
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
            return _zip_kind(names)
    except (OSError, zipfile.BadZipFile, ValueError):
        return None
    return "onnx" if _looks_like_onnx(head) else None


def _zip_kind(names: list[str]) -> str | None:
    inner = {n.split("/", 1)[1] for n in names if "/" in n} | set(names)  # archive/... or not
    if any(n.startswith("code/") for n in inner) and "constants.pkl" in inner:
        return "torchscript"
    if inner & {"archive_format", "models/model.json", "serialized_exported_program.json"}:
        return "exported-program"  # the last: torch.export.save before torch 2.6
    return None  # a torch.save state dict, or some other zip


def _looks_like_onnx(head: bytes) -> bool:
    """A ModelProto starts with ir_version (field 1, varint 3..15) then another known field."""
    return (len(head) >= 3 and head[0] == 0x08 and 3 <= head[1] <= 15
            and head[2] in (0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0x7A))


# ----------------------------------------------------------------------------- guessing
def guess(inputs: dict[str, list], outputs: dict[str, list]) -> dict[str, Any]:
    """lab, task and num_classes from the shapes alone (the user can change each)."""
    shapes, outs = list(inputs.values()), list(outputs.values())
    image = next((s for s in shapes if len(s) >= 3), shapes[0] if shapes else [])
    if len(outs) == 3 and any(len(s) == 2 and s[-1] == 4 for s in outs):
        return {"lab": 5, "task": "detection", "num_classes": None}
    seg = next((s for s in outs if len(s) == 4), None)
    if len(image) == 4 and seg is not None:
        k = seg[1] if isinstance(seg[1], int) else None
        return {"lab": 4, "task": "segmentation", "num_classes": 2 if k == 1 else k}
    logits = next((s for s in outs if len(s) == 2), None)
    k = logits[1] if logits is not None and isinstance(logits[1], int) else None
    if len(shapes) == 2 and any(len(s) == 2 for s in shapes):
        lab = 2
    elif len(image) == 4 and isinstance(image[1], int) and image[1] > 3:
        lab = 3
    elif (len(image) == 2 and image[1] == 64) or (len(image) == 4 and image[2:] == [8, 8]):
        lab = 1
    else:
        lab = 2
    return {"lab": lab, "task": LAB_TASKS[lab], "num_classes": k}


def inspect_file(path: str | Path, kind: str) -> Inspection:
    """What the file's graph takes and gives, and the guessed lab, task and classes."""
    path = Path(path)
    notes: list[str] = []
    if kind == "onnx":
        inputs, outputs = graph_io(load_onnx(path).graph)
    elif kind == "torchscript":
        inputs, outputs, notes = _probe_torchscript(load_torch(path, kind)[0], path)
    elif kind == "exported-program":
        inputs, outputs = _exported_io(_load_exported(path))
    else:
        raise ModelError(path, f"{kind!r} is not a self-contained model kind; expected one of "
                         f"{', '.join(ARCH_OF_KIND)}.")
    g = guess(inputs, outputs) if outputs else dict.fromkeys(("lab", "task", "num_classes"))
    if g["task"] == "segmentation" and any(len(s) == 4 and s[1] == 1 for s in outputs.values()):
        notes.append("The network gives one output channel: it is read as a foreground "
                     "logit (background and one class).")
    if g["num_classes"] is None and outputs:
        notes.append("The number of classes cannot be read from the graph; give the labels.")
    return Inspection(path=path, kind=kind, lab=g["lab"], task=g["task"],
                      num_classes=g["num_classes"], inputs=inputs, outputs=outputs,
                      warnings=notes)


# ----------------------------------------------------------------------------- torch files
def load_torch(path: Path, kind: str) -> tuple[Any, dict[str, Any]]:
    """(the TorchScript module or the ExportedProgram's, on the CPU in eval mode, answering a
    flat tuple of tensors; its weights by name)."""
    import torch

    if kind == "exported-program":
        ep = _load_exported(path)
        return _flat_outputs(ep.module()), {**ep.state_dict, **ep.constants}
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - the TorchScript loader raises many types
        raise ModelError(path, f"This TorchScript file cannot be loaded ({first_line(exc)});"
                         " save it again with torch.jit.save.") from exc
    return _flat_outputs(module.eval()), module.state_dict()


def _load_exported(path: Path) -> Any:
    import torch

    try:
        return torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(path, f"This torch.export (.pt2) file cannot be loaded "
                         f"({first_line(exc)}); save it again with torch.export.save.") from exc


def _exported_io(ep: Any) -> tuple[dict[str, list], dict[str, list]]:
    from torch.export.graph_signature import InputKind

    user = {s.arg.name for s in ep.graph_signature.input_specs if s.kind == InputKind.USER_INPUT}
    inputs, outputs = {}, {}
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            inputs[node.name] = _fake_dims(node.meta.get("val"))
        elif node.op == "output":
            for i, arg in enumerate(node.args[0]):
                outputs[f"output{i}"] = _fake_dims(getattr(arg, "meta", {}).get("val"))
    return inputs, outputs


def _fake_dims(value: Any) -> list[int | str]:
    shape = getattr(value, "shape", ())
    return [int(d) if str(d).lstrip("-").isdigit() else str(d) for d in shape]


def _flat_outputs(module: Any) -> Any:
    """`module` inside a plain one that answers a flat tuple of tensors (a dict or list of
    them, e.g. torchvision's {"out": ...}, flattened in order). It is held outside the module
    tree: an ExportedProgram's module refuses train(), which the ONNX exporter calls on every
    submodule, so its parameters are traced as constants (a TorchScript module is exported as
    it is: see `torch_to_onnx`)."""
    import torch

    for p in module.parameters():
        p.requires_grad_(False)

    class FlatOutputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.held = (module,)

        def forward(self, *args: Any) -> tuple[Any, ...]:
            return tuple(_flat(self.held[0](*args)))

    return FlatOutputs()


PROBES = (((1, 3, 64, 64),), ((1, 1, 64, 64),), ((1, 64),), ((1, 1, 8, 8),),
          ((1, 3, 224, 224),), ((1, 1, 224, 224),),  # a classifier head fixed to 224 px
          ((1, 3, 64, 64), (1, 2)), ((1, 1, 64, 64), (1, 2)), ((1, 3, 224, 224), (1, 2)))


def _probe_torchscript(module: Any, path: Path
                       ) -> tuple[dict[str, list], dict[str, list], list[str]]:
    """TorchScript keeps no input shapes: the first common input shape that runs tells."""
    import torch

    script = module.held[0]
    names = [v.debugName().split(".")[0] for v in list(script.graph.inputs())[1:]]
    for shapes in (p for p in PROBES if len(p) == len(names)):
        try:
            with torch.no_grad():
                out = _flat(module(*(torch.rand(s) for s in shapes)))
        except Exception:  # noqa: BLE001, S112 - a shape it does not take: try the next
            continue
        note = (f"TorchScript records no input shapes: {', '.join(map(str, shapes))} is a "
                "probe input that ran; check the input size and channels.")
        return ({n: _loose(s, "rows", "columns") for n, s in zip(names, shapes, strict=True)},
                {f"output{i}": _loose(o.shape, "out_rows", "out_columns")
                 for i, o in enumerate(out)}, [note])
    note = ("TorchScript records no input shapes and none of the usual ones ran through this "
            "model; set the lab and the input spec (size, channels) it takes.")
    return {n: ["?"] for n in names}, {}, [note]


def _loose(shape: Any, rows: str, columns: str) -> list[int | str]:
    """A probed shape: batch, rows and columns named (the probe's, not the model's), the
    channels or features as they ran."""
    dims: list[int | str] = [int(d) for d in shape]
    if dims:
        dims[0] = "batch"
    if len(dims) >= 4:
        dims[-2:] = [rows, columns]
    return dims


def _flat(out: Any) -> list[Any]:
    from torch.utils._pytree import tree_leaves

    return list(tree_leaves(out))


def non_finite_torch(weights: dict[str, Any]) -> list[str]:
    return [name for name, t in weights.items() if hasattr(t, "is_floating_point")
            and t.is_floating_point() and not bool(t.isfinite().all())]


def torch_to_onnx(module: Any, inputs: list[np.ndarray], path: Path, batched: bool,
                  source: Path) -> None:
    """Export through the TorchScript-based exporter (inputs "input0".., outputs "output0".."""
    import torch

    from medviewer.training.export import OPSET

    tensors = tuple(torch.from_numpy(a) for a in inputs)
    answer = None
    inner = module.held[0]  # the tracer follows a TorchScript module only as the top module
    target = inner if isinstance(inner, torch.jit.ScriptModule) else module
    try:
        # the exporter's notes (deprecations, tracer hints) are not the user's to act on: the
        # parity and batch checks judge the result
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            answer = inner(*tensors)
            count = len(_flat(answer))
            names = [f"input{i}" for i in range(len(tensors))]
            outs = [f"output{i}" for i in range(count)]
            axes = {n: {0: "batch"} for n in names + outs} if batched else None
            torch.onnx.export(target, tensors, str(path), input_names=names, output_names=outs,
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False,
                              do_constant_folding=True)
    except Exception as exc:  # noqa: BLE001 - tracing and export raise many types
        if target is inner and isinstance(answer, dict):
            raise ModelError(source, "This TorchScript model answers a dict, which the ONNX "
                             "exporter cannot convert from TorchScript; script or trace a "
                             "module that returns a tensor or a tuple of tensors (e.g. "
                             "model(x)['out']), or export the model to ONNX yourself.") from exc
        raise ModelError(source, f"The model cannot be run on the manifest's input and "
                         f"converted to ONNX ({first_line(exc)}); check the input spec (size, "
                         "channels, extras) or export the model to ONNX yourself.") from exc


# ----------------------------------------------------------------------------- the export
def export_self_contained(path: str | Path, kind: str, fields: dict[str, Any], out: str | Path,
                          *, force: bool = False, progress: Progress | None = None) -> Manifest:
    """Write the model folder `out` (model.onnx + manifest.json) for a self-contained file.

    `fields`: the manifest fields the caller knows (lab required; task and arch are filled in).
    ModelError with a sentence when the file cannot be read, does not fit the input spec or
    the lab's task, or (TorchScript, .pt2) ONNX Runtime differs from torch; nothing is written.
    """
    import onnx

    from medviewer.training.export import staged_folder
    from medviewer.training.import_fields import check_out_folder

    path, out = Path(path), Path(out)
    report = progress or (lambda _what, _done: None)
    d = _fields(kind, fields)
    # every field the caller gave is checked before the file is read (the graph's signature,
    # a placeholder here, is known only after wiring)
    manifest = manifest_from_dict({**d, "onnx_inputs": {"image": [1]}, "onnx_outputs": ["x"]})
    check_out_folder(out, force)
    report("Reading the model file", 0.0)
    feed = probe_feed(manifest)
    with staged_folder(out) as staging:
        worst = None
        if kind == "onnx":
            model = load_onnx(path)
        else:
            model, worst = _converted(path, kind, manifest, feed, staging, report)
        report("Renaming the graph's inputs and outputs to the lab's", 0.5)
        model, renamed = wire(model, manifest, feed, path)
        onnx.save(model, str(staging / ONNX_FILE))
        report("Checking the model on a probe input", 0.7)
        probe(staging / ONNX_FILE, manifest, feed, path)
        inputs, outputs = graph_io(model.graph)
        d["onnx_inputs"] = {k: [v if v != "?" else f"axis{i}" for i, v in enumerate(s)]
                            for k, s in inputs.items()}
        d["onnx_outputs"] = list(outputs)
        d["provenance"] = {**d.get("provenance", {}), "imported_from": kind,
                           "renamed": renamed,
                           "created": datetime.now(UTC).isoformat(timespec="seconds")}
        if worst is not None:
            d["provenance"]["parity_max_relative_error"] = worst
        report("Writing the model folder", 0.9)
        write_manifest(manifest_from_dict(d, staging), staging)
    report("Done", 1.0)
    return load_manifest(out)


def _fields(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    if kind not in ARCH_OF_KIND:
        raise ModelError(None, f"{kind!r} is not a self-contained model kind; expected one of "
                         f"{', '.join(ARCH_OF_KIND)}.")
    lab = fields.get("lab")
    if lab not in LAB_TASKS:
        raise ModelError(None, f"Say which lab the model is for (1 to 5; got {lab!r}): its "
                         "plugin prepares the images and reads the answers.")
    return {"task": LAB_TASKS[lab], **fields, "arch": ARCH_OF_KIND[kind]}


def _converted(path: Path, kind: str, manifest: Manifest, feed: dict[str, np.ndarray],
               staging: Path, report: Progress) -> tuple[Any, float]:
    """TorchScript / .pt2 -> ONNX in `staging`, checked against torch on one sample."""
    import torch

    from medviewer.training.export import parity_check

    module, weights = load_torch(path, kind)
    bad = non_finite_torch(weights)
    if bad:
        raise ModelError(path, f"The weights hold NaN or infinite values ({', '.join(bad[:5])}"
                         f"{' ...' if len(bad) > 5 else ''}); a model with them answers "
                         "nonsense, so it is not imported.")
    report("Converting to ONNX", 0.2)
    one = [a[:1] for a in feed.values()]  # a .pt2 may be fixed to a batch of one
    converted = staging / "converted.onnx"
    # (image, extras) is the lab's order; a model taking (extras, image) is fed that way
    errors: list[ModelError] = []
    for order in [one, one[::-1]] if len(one) == 2 else [one]:
        try:
            torch_to_onnx(module, order, converted, manifest.lab in BATCHED_LABS, path)
            break
        except ModelError as exc:
            errors.append(exc)
    else:
        raise errors[0]
    report("Comparing ONNX Runtime with torch", 0.4)
    names = SimpleNamespace(input_names=[f"input{i}" for i in range(len(order))])
    try:
        worst = parity_check(module, converted, names, [torch.from_numpy(a) for a in order])
    except ModelError as exc:  # named after the user's file, not the staging copy
        raise ModelError(path, exc.reason) from exc
    model = load_onnx(converted)
    converted.unlink()
    return model, worst
