"""Self-contained model files (ONNX, TorchScript, torch.export .pt2) -> a MedViewer model folder.

No architecture is needed: the graph says what goes in and out. A TorchScript or .pt2 file is
converted to ONNX (the TorchScript-based exporter, dynamo=False) and checked against torch to
1e-4 like every export. The ONNX graph's inputs and outputs are renamed to the lab's own names
("image", "extras", "slices"; "logits" or "boxes", "scores", "labels"), so the lab's plugin
feeds it unchanged; a fixed batch of one is freed when the plugin feeds several slices at a
time (and checked: a batch of two answers as each slice alone). A probe input at the manifest's
size must give outputs that suit the task before anything is written; the folder is staged
and renamed into place whole (training/export.py). Such a model has no torch layers, so it has
no class activation map and cannot be retrained: `external_problem` says so in a sentence.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from medviewer.core.atomic import shareable_mode
from medviewer.inference.errors import ModelError
from medviewer.inference.manifest import (
    MANIFEST,
    ONNX_FILE,
    Manifest,
    load_manifest,
    manifest_from_dict,
    write_manifest,
)
from medviewer.inference.staging import make_staging, remove_stale
from medviewer.training.importing import LAB_TASKS, Inspection

EXTERNAL = "external."  # the arch of an imported self-contained model: no registered builder
ARCH_OF_KIND = {"onnx": "external.onnx", "torchscript": "external.torchscript",
                "exported-program": "external.exported-program"}
KIND_WORDS = {"onnx": "an ONNX file", "torchscript": "a TorchScript file",
              "exported-program": "a torch.export (.pt2) file"}
MAX_FILE_BYTES = 2 << 30  # protobuf's own limit for one ONNX file
MAX_PROBE_BYTES = 512 << 20  # one probe input; far above any lab's slice batch
BATCHED_LABS = (1, 2, 4)  # plugins that feed several slices at once (3 and 5 feed one sample)
RTOL = 1e-4
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
    inner = {n.split("/", 1)[1] for n in names if "/" in n}
    if any(n.startswith("code/") for n in inner) and "constants.pkl" in inner:
        return "torchscript"
    if "archive_format" in inner or "models/model.json" in inner:
        return "exported-program"
    return None  # a torch.save state dict, or some other zip


def _looks_like_onnx(head: bytes) -> bool:
    """A ModelProto starts with ir_version (field 1, varint 3..15) then another known field."""
    return (len(head) >= 3 and head[0] == 0x08 and 3 <= head[1] <= 15
            and head[2] in (0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0x7A))


def is_external(arch: str) -> bool:
    return arch.startswith(EXTERNAL)


def external_problem(manifest: Manifest, purpose: str) -> str | None:
    """A sentence when `manifest` is an imported self-contained model (no torch layers):
    `purpose` "cam" (a class activation map) or "train"; None for a registered architecture."""
    if not is_external(manifest.arch):
        return None
    kind = next((k for k, a in ARCH_OF_KIND.items() if a == manifest.arch), "onnx")
    what = ("has no torch layers for a class activation map" if purpose == "cam"
            else "cannot be retrained in MedViewer")
    return (f"{manifest.title} was imported from {KIND_WORDS[kind]}: it {what}. Import a "
            "checkpoint of a registered architecture (medviewer export CHECKPOINT --arch ...) "
            "for that.")


# ----------------------------------------------------------------------------- ONNX graphs
def load_onnx(path: Path) -> Any:
    """The checked ModelProto: whole, in one file, every constant finite; else a sentence."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelError(path, f"The model file cannot be read ({exc.strerror}).") from exc
    if size > MAX_FILE_BYTES:
        raise ModelError(path, f"The file is {size / 2**30:.1f} GiB, over the "
                         f"{MAX_FILE_BYTES >> 30} GiB an ONNX file can hold; it is not one "
                         "model file.")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, OSError) as exc:
        raise ModelError(path, "This is not a readable ONNX file (it is cut short, damaged or "
                         "of another format); export it again.") from exc
    if not model.HasField("graph") or not model.graph.node:
        raise ModelError(path, "This ONNX file holds no graph (it is cut short or not a "
                         "model); export it again.")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in _constants(model.graph)):
        raise ModelError(path, "This ONNX file keeps its weights in other files (external "
                         "data); save it as one file (onnx.save(model, path, "
                         "save_as_external_data=False)) and import that.")
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        raise ModelError(path, f"The ONNX graph is not valid ({_first_line(exc)}); export it "
                         "again.") from exc
    _check_finite(model, path)
    return model


def _constants(graph: Any) -> list[Any]:
    """Initializers and Constant nodes' tensors of `graph` and its subgraphs."""
    out = list(graph.initializer)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                out.append(attr.t)
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                out += _constants(sub)
    return out


def _check_finite(model: Any, path: Path) -> None:
    from onnx import numpy_helper

    bad = []
    for tensor in _constants(model.graph):
        value = numpy_helper.to_array(tensor)
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            bad.append(tensor.name or "(a constant)")
    if bad:
        raise ModelError(path, f"The model's weights hold NaN or infinite values "
                         f"({', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}); a model with "
                         "them answers nonsense, so it is not imported. Export it again from a "
                         "good checkpoint.")


def _dims(value: Any) -> list[int | str]:
    """A graph value's shape: ints for fixed axes, names (or "?") for dynamic ones."""
    shape = value.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def _io(graph: Any) -> tuple[dict[str, list], dict[str, list]]:
    constants = {t.name for t in graph.initializer}
    inputs = {v.name: _dims(v) for v in graph.input if v.name not in constants}
    return inputs, {v.name: _dims(v) for v in graph.output}


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
    warnings: list[str] = []
    if kind == "onnx":
        inputs, outputs = _io(load_onnx(path).graph)
    elif kind == "torchscript":
        inputs, outputs, warnings = _probe_torchscript(load_torch(path, kind)[0], path)
    elif kind == "exported-program":
        inputs, outputs = _exported_io(_load_exported(path))
    else:
        raise ModelError(path, f"{kind!r} is not a self-contained model kind; expected one of "
                         f"{', '.join(ARCH_OF_KIND)}.")
    g = guess(inputs, outputs)
    if g["task"] == "segmentation" and any(len(s) == 4 and s[1] == 1 for s in outputs.values()):
        warnings.append("The network gives one output channel: it is read as a foreground "
                        "logit (background and one class).")
    if g["num_classes"] is None:
        warnings.append("The number of classes cannot be read from the graph; give the labels.")
    return Inspection(path=path, kind=kind, lab=g["lab"], task=g["task"],
                      num_classes=g["num_classes"], inputs=inputs, outputs=outputs,
                      warnings=warnings)


# ----------------------------------------------------------------------------- torch files
def load_torch(path: Path, kind: str) -> tuple[Any, dict[str, Any]]:
    """(the TorchScript module or an ExportedProgram's module on the CPU in eval mode, its
    weights by name)."""
    import torch

    if kind == "exported-program":
        ep = _load_exported(path)
        return _exported_module(ep), {**ep.state_dict, **ep.constants}
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - the TorchScript loader raises many types
        raise ModelError(path, f"This TorchScript file cannot be loaded ({_first_line(exc)});"
                         " save it again with torch.jit.save.") from exc
    return module.eval(), module.state_dict()


def _load_exported(path: Path) -> Any:
    import torch

    try:
        return torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(path, f"This torch.export (.pt2) file cannot be loaded "
                         f"({_first_line(exc)}); save it again with torch.export.save.") from exc


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


def _exported_module(ep: Any) -> Any:
    """An ExportedProgram's module inside a plain one: it refuses train(), which the ONNX
    exporter calls on every submodule, so it is held outside the module tree (its parameters
    are traced as constants)."""
    import torch

    graph_module = ep.module()
    for p in graph_module.parameters():
        p.requires_grad_(False)

    class ExportedProgramModule(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.held = (graph_module,)

        def forward(self, *args: Any) -> Any:
            return self.held[0](*args)

    return ExportedProgramModule()


PROBES = (((1, 3, 64, 64),), ((1, 1, 64, 64),), ((1, 64),), ((1, 1, 8, 8),),
          ((1, 3, 64, 64), (1, 2)), ((1, 1, 64, 64), (1, 2)))


def _probe_torchscript(module: Any, path: Path
                       ) -> tuple[dict[str, list], dict[str, list], list[str]]:
    """TorchScript keeps no input shapes: the first common input shape that runs tells."""
    import torch

    names = [v.debugName().split(".")[0] for v in list(module.graph.inputs())[1:]]
    for shapes in (p for p in PROBES if len(p) == len(names)):
        try:
            with torch.no_grad():
                out = _flat(module(*(torch.rand(s) for s in shapes)))
        except Exception:  # noqa: BLE001, S112 - a shape it does not take: try the next
            continue
        note = (f"TorchScript records no input shapes: {', '.join(map(str, shapes))} is a "
                "probe input that ran; check the input size and channels.")
        return (dict(zip(names, map(list, shapes), strict=True)),
                {f"output{i}": list(o.shape) for i, o in enumerate(out)}, [note])
    raise ModelError(path, "TorchScript records no input shapes and none of the usual ones "
                     "ran through this model; give the input spec (size, channels) and import "
                     "it with the lab set.")


def _flat(out: Any) -> list[Any]:
    from torch.utils._pytree import tree_leaves

    return list(tree_leaves(out))


def non_finite_torch(weights: dict[str, Any]) -> list[str]:
    return [name for name, t in weights.items() if hasattr(t, "is_floating_point")
            and t.is_floating_point() and not bool(t.isfinite().all())]


def torch_to_onnx(module: Any, inputs: list[np.ndarray], path: Path, batched: bool,
                  source: Path) -> list[np.ndarray]:
    """Export through the TorchScript-based exporter; torch's outputs for `inputs` back."""
    import torch

    from medviewer.training.export import OPSET

    tensors = tuple(torch.from_numpy(a) for a in inputs)
    try:
        with torch.no_grad():
            expected = [o.detach().cpu().numpy() for o in _flat(module(*tensors))]
            names = [f"input{i}" for i in range(len(tensors))]
            outs = [f"output{i}" for i in range(len(expected))]
            axes = {n: {0: "batch"} for n in names + outs} if batched else None
            torch.onnx.export(module, tensors, str(path), input_names=names, output_names=outs,
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False,
                              do_constant_folding=True)
    except Exception as exc:  # noqa: BLE001 - tracing and export raise many types
        raise ModelError(source, f"The model cannot be run on the manifest's input and "
                         f"converted to ONNX ({_first_line(exc)}); check the input spec (size, "
                         "channels, extras) or export the model to ONNX yourself.") from exc
    return expected


# ----------------------------------------------------------------------------- lab wiring
def lab_names(manifest: Manifest) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The input and output names the lab's plugin uses, from a registered architecture of
    the same lab and task (with an "extras" input exactly when the spec has extras)."""
    from medviewer.labs.architectures import load_all

    want = 2 if manifest.input.extras else 1
    for arch in sorted(load_all().values(), key=lambda a: (not a.full, a.name)):
        if (arch.lab, arch.task, len(arch.input_names)) == (manifest.lab, manifest.task, want):
            return arch.input_names, arch.output_names
    raise ModelError(None, f"No lab {manifest.lab} {manifest.task} model takes "
                     f"{'extra inputs' if want == 2 else 'an image alone'}; fix the lab or the "
                     "input spec's extras.")


def probe_feed(manifest: Manifest) -> dict[str, np.ndarray]:
    """A random input under the lab's names at the manifest's size: two samples where the
    plugin feeds several slices at once (labs 1, 2, 4), else one."""
    spec, lab = manifest.input, manifest.lab
    batch = 2 if lab in BATCHED_LABS else 1
    channels = spec.context_slices if lab == 3 else spec.channels
    shapes = {}
    for name in lab_names(manifest)[0]:
        if name == "extras":
            shapes[name] = (batch, len(spec.extras))
        elif lab == 1:
            shapes[name] = (batch, spec.size[0] * spec.size[1])
        else:
            shapes[name] = (batch, channels, *spec.size)
    size = 4 * sum(int(np.prod(s)) for s in shapes.values())
    if size > MAX_PROBE_BYTES:
        raise ModelError(None, f"A probe input at the manifest's size ({shapes}) would take "
                         f"{size >> 20} MB; check the input size and channels.")
    rng = np.random.default_rng(0)
    return {n: rng.random(s, dtype=np.float32) for n, s in shapes.items()}


def wire(model: Any, manifest: Manifest, feed: dict[str, np.ndarray], source: Path
         ) -> tuple[Any, dict[str, str]]:
    """The graph with the lab's input and output names (in the plugin's output order), a
    fixed batch freed for labs whose plugin batches, a (batch, 1, h, w) digit input fed lab
    1's (batch, h*w); ModelError naming both shapes when a fixed axis disagrees with the spec."""
    graph = model.graph
    inputs, outputs = _io(graph)
    in_names, out_names = lab_names(manifest)
    pairs = _match_inputs(inputs, in_names, graph, source)
    mapping = {}
    for old, new in pairs.items():  # the graph input (old, or a reshaped one) -> the lab's name
        mapping[_fit_input(graph, old, inputs[old], feed[new].shape, manifest, source)] = new
    chosen = _match_outputs(graph, outputs, manifest.task, out_names, source)
    mapping.update(chosen)
    if manifest.lab in BATCHED_LABS:
        _free_batch(graph, set(chosen))
    _rename(graph, mapping)
    by_name = {v.name: v for v in graph.output}
    kept = [by_name[n] for n in out_names]
    del graph.output[:]
    graph.output.extend(kept)
    renamed = {old: new for old, new in mapping.items() if old != new and new in
               (*in_names, *out_names)}
    return model, renamed


def _match_inputs(inputs: dict[str, list], names: tuple[str, ...], graph: Any, source: Path
                  ) -> dict[str, str]:
    listed = ", ".join(f"{k} {v}" for k, v in inputs.items())
    if len(inputs) != len(names):
        raise ModelError(source, f"The graph takes {len(inputs)} input(s) ({listed}) but this "
                         f"lab's plugin feeds {len(names)} ({', '.join(names)}); set the lab "
                         "and the input spec's extras to what the model takes.")
    types = {v.name: v.type.tensor_type.elem_type for v in graph.input}
    odd = [k for k in inputs if types.get(k) != 1]  # 1: float32, what every plugin feeds
    if odd:
        raise ModelError(source, f"The graph's input {odd[0]!r} is not float32; MedViewer's "
                         "plugins feed float32 images. Export the model with float32 inputs.")
    if len(names) == 1:
        return {next(iter(inputs)): names[0]}
    image = [k for k, v in inputs.items() if len(v) >= 3]
    extras = [k for k, v in inputs.items() if len(v) == 2]
    if len(image) != 1 or len(extras) != 1:
        raise ModelError(source, f"The graph's inputs ({listed}) are not one image (batch, "
                         "channels, rows, columns) and one (batch, extras) vector.")
    return {image[0]: "image", extras[0]: "extras"}


def _fit_input(graph: Any, name: str, dims: list, fed: tuple[int, ...], manifest: Manifest,
               source: Path) -> str:
    """The graph's input `name` with its fixed axes checked against `fed`; its name after."""
    if manifest.lab == 1 and len(dims) == 4 and len(fed) == 2:
        fixed = [d for d in dims[1:] if isinstance(d, int)]
        if len(fixed) == 3 and int(np.prod(fixed)) == fed[1]:
            return _reshape_input(graph, name, dims)
    if len(dims) != len(fed) or any(isinstance(d, int) and d != f
                                    for d, f in zip(dims[1:], fed[1:], strict=False)):
        spec = manifest.input
        raise ModelError(source, f"The graph's input {name!r} is fixed at {dims}, but the "
                         f"lab {manifest.lab} plugin feeds {list(fed)} from the input spec "
                         f"({spec.channels} channel(s) of {spec.size[0]} x {spec.size[1]}); set "
                         "the input size and channels to the graph's, or export the graph with "
                         "those axes dynamic.")
    if isinstance(dims[0], int) and dims[0] != 1 and manifest.lab not in BATCHED_LABS:
        raise ModelError(source, f"The graph's input {name!r} takes a batch of {dims[0]}; the "
                         f"lab {manifest.lab} plugin feeds one sample at a time.")
    return name


def _reshape_input(graph: Any, name: str, dims: list) -> str:
    """Lab 1 feeds (batch, rows*cols): a new input "image" reshaped into the graph's."""
    from onnx import helper, numpy_helper

    fresh = _unique(graph, "image_flat")
    shape = numpy_helper.from_array(np.array([-1, *dims[1:]], np.int64), _unique(graph, "shape"))
    graph.initializer.append(shape)
    graph.node.insert(0, helper.make_node("Reshape", [fresh, shape.name], [name]))
    old = next(v for v in graph.input if v.name == name)
    flat = helper.make_tensor_value_info(fresh, 1, ["batch", int(np.prod(dims[1:]))])
    graph.input.insert(list(graph.input).index(old), flat)
    graph.input.remove(old)
    return fresh


def _match_outputs(graph: Any, outputs: dict[str, list], task: str, names: tuple[str, ...],
                   source: Path) -> dict[str, str]:
    listed = ", ".join(f"{k} {v}" for k, v in outputs.items()) or "none"
    types = {v.name: v.type.tensor_type.elem_type for v in graph.output}
    if task == "detection":
        boxes = [k for k, v in outputs.items() if len(v) == 2 and v[-1] in (4, "?")]
        rest = [k for k in outputs if k not in boxes[:1]]
        scores = [k for k in rest if types[k] in (1, 10, 11) and len(outputs[k]) == 1]
        labels = [k for k in rest if types[k] in (6, 7) and len(outputs[k]) == 1]
        if not (boxes and scores and labels):
            raise ModelError(source, f"A detection graph gives boxes (found, 4), scores "
                             f"(found,) and integer labels (found,); this one gives {listed}. "
                             "Pick the lab the model was made for.")
        return {boxes[0]: "boxes", scores[0]: "scores", labels[0]: "labels"}
    rank = 4 if task == "segmentation" else 2
    found = [k for k, v in outputs.items() if len(v) == rank]
    if not found:
        want = "(batch, labels, rows, columns)" if rank == 4 else "(batch, classes)"
        raise ModelError(source, f"A {task} graph gives {want} scores; this one gives "
                         f"{listed}. Pick the lab the model was made for.")
    return {found[0]: names[0]}


def _free_batch(graph: Any, outputs: set[str]) -> None:
    """A fixed first axis becomes "batch" on the inputs and the chosen outputs; recorded
    intermediate shapes are dropped (ONNX Runtime infers them again)."""
    for value in [*graph.input, *(v for v in graph.output if v.name in outputs)]:
        dims = value.type.tensor_type.shape.dim
        if len(dims) and dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
    del graph.value_info[:]


def _unique(graph: Any, base: str) -> str:
    taken = _all_names(graph)
    return next(f"{base}_{i}" if i else base for i in range(len(taken) + 1)
                if (f"{base}_{i}" if i else base) not in taken)


def _all_names(graph: Any) -> set[str]:
    names = {v.name for v in (*graph.input, *graph.output, *graph.initializer)}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                names |= _all_names(sub)
    return names


def _rename(graph: Any, mapping: dict[str, str]) -> None:
    """Rename values everywhere (subgraphs too); a value already holding a new name moves
    aside first, so "image" may be an inner tensor's name in the source."""
    taken = _all_names(graph)
    for new in set(mapping.values()):
        if new in taken and new not in mapping:
            mapping[new] = _unique(graph, f"{new}_inner")
    _apply(graph, {k: v for k, v in mapping.items() if k != v})


def _apply(graph: Any, mapping: dict[str, str]) -> None:
    for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        value.name = mapping.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _apply(sub, mapping)


def run_onnx(path: Path, feed: dict[str, np.ndarray], source: Path) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return session.run(None, feed)
    except Exception as exc:  # noqa: BLE001 - ORT raises several unrelated types
        raise ModelError(source, f"ONNX Runtime cannot run this model on an input of the "
                         f"manifest's size ({_first_line(exc)}); check the input spec.") from exc


def probe(path: Path, manifest: Manifest, feed: dict[str, np.ndarray], source: Path) -> None:
    """The wired graph on the probe input: outputs of the task's shapes, finite, and a batch
    that answers as each of its samples alone."""
    outs = run_onnx(path, feed, source)
    batch = next(iter(feed.values())).shape[0]
    shapes = [tuple(o.shape) for o in outs]
    k, size = len(manifest.labels), tuple(manifest.input.size)
    if manifest.task == "segmentation":
        ok = len(shapes[0]) == 4 and shapes[0][0] == batch and shapes[0][2:] == size \
            and shapes[0][1] in (k, 1)
        want = f"({batch}, {k} or 1, {size[0]}, {size[1]})"
    elif manifest.task == "detection":
        n = shapes[0][0] if shapes[0] else -1
        ok = shapes == [(n, 4), (n,), (n,)]
        want = "boxes (N, 4), scores (N,), labels (N,)"
    else:
        ok = shapes[0] == (batch, k)
        want = f"({batch}, {k}): one score per label"
    if not ok:
        raise ModelError(source, f"On a probe input the model gives {shapes}, but a lab "
                         f"{manifest.lab} {manifest.task} model with {k} labels gives {want}; "
                         "fix the labels or the input size, or pick the lab it was made for.")
    if not all(np.isfinite(o).all() for o in outs if o.dtype.kind == "f"):
        raise ModelError(source, "The model answers NaN or infinity on a probe input; it is "
                         "not imported.")
    if batch > 1:
        _check_batch(path, feed, outs, source)


def _check_batch(path: Path, feed: dict[str, np.ndarray], outs: list[np.ndarray],
                 source: Path) -> None:
    from medviewer.training.export import relative_error

    for i in range(next(iter(feed.values())).shape[0]):
        alone = run_onnx(path, {n: a[i:i + 1] for n, a in feed.items()}, source)
        worst = max(relative_error(o[i:i + 1], a) for o, a in zip(outs, alone, strict=True))
        if not worst <= RTOL:
            raise ModelError(source, "The model answers a batch of two slices differently "
                             f"from each slice alone (by {worst:.1e}): a batch of one is fixed "
                             "inside its graph, or a layer was left in training mode. Export "
                             "it in eval mode with a dynamic batch axis "
                             "(dynamic_axes={'input': {0: 'batch'}, 'output': {0: 'batch'}}).")


# ----------------------------------------------------------------------------- the export
def export_self_contained(path: str | Path, kind: str, fields: dict[str, Any], out: str | Path,
                          *, force: bool = False, progress: Progress | None = None) -> Manifest:
    """Write the model folder `out` (model.onnx + manifest.json) for a self-contained file.

    `fields`: the manifest fields the caller knows (lab required; task and arch are filled in).
    ModelError with a sentence when the file cannot be read, does not fit the input spec or
    the lab's task, or (TorchScript, .pt2) ONNX Runtime differs from torch; nothing is written.
    """
    path, out = Path(path), Path(out)
    report = progress or (lambda _what, _done: None)
    d = _fields(kind, fields)
    manifest = manifest_from_dict({**d, "onnx_inputs": {"image": [1]}, "onnx_outputs": ["x"]})
    _check_target(out, force)
    report("Reading the model file", 0.0)
    feed = probe_feed(manifest)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out.parent, out.name)
    staging = make_staging(out.parent, out.name)
    try:
        worst = None
        if kind == "onnx":
            model = load_onnx(path)
        else:
            model, worst = _converted(path, kind, manifest, feed, staging, report)
        report("Renaming the graph's inputs and outputs to the lab's", 0.5)
        model, renamed = wire(model, manifest, feed, path)
        _save(model, staging / ONNX_FILE)
        report("Checking the model on a probe input", 0.7)
        probe(staging / ONNX_FILE, manifest, feed, path)
        inputs, outputs = _io(model.graph)
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
        os.chmod(staging, shareable_mode(0o777))
        from medviewer.training.export import _replace_folder

        _replace_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
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


def _check_target(out: Path, force: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not (out / MANIFEST).is_file():
            raise ModelError(out, "The folder is not empty and holds no model; pick an empty "
                             "or new folder.")
        if not force:
            raise ModelError(out, "A model is already there; pass --force to replace it.")


def _converted(path: Path, kind: str, manifest: Manifest, feed: dict[str, np.ndarray],
               staging: Path, report: Progress) -> tuple[Any, float]:
    """TorchScript / .pt2 -> ONNX in `staging`, checked against torch on one sample."""
    from medviewer.training.export import relative_error

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
            expected = torch_to_onnx(module, order, converted, manifest.lab in BATCHED_LABS,
                                     path)
            break
        except ModelError as exc:
            errors.append(exc)
    else:
        raise errors[0]
    one = order
    report("Comparing ONNX Runtime with torch", 0.4)
    actual = run_onnx(converted, {f"input{i}": a for i, a in enumerate(one)}, path)
    if len(actual) != len(expected):
        raise ModelError(path, f"ONNX Runtime gives {len(actual)} outputs, torch "
                         f"{len(expected)}; the conversion is not trustworthy.")
    worst = max((relative_error(e, a) for e, a in zip(expected, actual, strict=True)),
                default=0.0)
    if not worst <= RTOL:
        raise ModelError(path, f"ONNX Runtime differs from torch by {worst:.2e} (relative; "
                         f"limit {RTOL:.0e}); the conversion is not trustworthy. Export the "
                         "model to ONNX yourself and import that.")
    model = load_onnx(converted)
    converted.unlink()
    return model, worst


def _save(model: Any, path: Path) -> None:
    import onnx

    onnx.save(model, str(path))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
