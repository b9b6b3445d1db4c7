"""ONNX graphs of self-contained model files, and their wiring to a lab's plugin.

`load_onnx` reads a file whole (no external data), checked by onnx.checker, every constant
finite. `wire` renames the graph's inputs and outputs to the names the lab's plugin uses
(taken from a registered architecture of that lab and task), puts the outputs in the plugin's
order, frees a fixed batch of one where the plugin feeds several slices, and feeds lab 1's
(batch, rows*cols) rows to a (batch, 1, rows, cols) digit graph. `probe` runs the result on a
random input at the manifest's size: outputs of the task's shapes, finite, and a batch that
answers as each of its samples alone. Errors are ModelError sentences naming both shapes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medviewer.inference.errors import ModelError
from medviewer.inference.manifest import Manifest

MAX_FILE_BYTES = 2 << 30  # protobuf's own limit for one ONNX file
MAX_PROBE_BYTES = 512 << 20  # one probe input; far above any lab's slice batch
BATCHED_LABS = (1, 2, 4)  # plugins that feed several slices at once (3 and 5 feed one sample)
RTOL = 1e-4


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
        raise ModelError(path, f"The ONNX graph is not valid ({first_line(exc)}); export it "
                         "again.") from exc
    _check_finite(model, path)
    return model


def _constants(graph: Any) -> list[Any]:
    """Initializers (sparse ones' values too) and Constant nodes' tensors of `graph` and its
    subgraphs."""
    out = [*graph.initializer, *(s.values for s in graph.sparse_initializer)]
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


def graph_io(graph: Any) -> tuple[dict[str, list], dict[str, list]]:
    constants = {t.name for t in graph.initializer}
    inputs = {v.name: _dims(v) for v in graph.input if v.name not in constants}
    return inputs, {v.name: _dims(v) for v in graph.output}


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
    inputs, outputs = graph_io(graph)
    in_names, out_names = lab_names(manifest)
    pairs = _match_inputs(inputs, in_names, graph, source)
    mapping, origin = {}, {}
    for old, new in pairs.items():  # the graph input (old, or a reshaped one) -> the lab's name
        current = _fit_input(model, old, inputs[old], feed[new].shape, manifest, source)
        mapping[current], origin[current] = new, old
    chosen = _match_outputs(graph, outputs, manifest.task, out_names, source)
    mapping.update(chosen)
    if manifest.lab in BATCHED_LABS:
        _free_batch(graph, set(chosen))
    _rename(graph, mapping)
    by_name = {v.name: v for v in graph.output}
    kept = [by_name[n] for n in out_names]
    del graph.output[:]
    graph.output.extend(kept)
    renamed = {origin.get(old, old): new for old, new in mapping.items()
               if new in (*in_names, *out_names) and origin.get(old, old) != new}
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


def _fit_input(model: Any, name: str, dims: list, fed: tuple[int, ...], manifest: Manifest,
               source: Path) -> str:
    """The graph's input `name` with its fixed axes checked against `fed`; its name after
    (a new input when lab 1's rows are reshaped, or lab 3's or 5's one sample unbatched)."""
    if manifest.lab == 1 and len(dims) == 4 and len(fed) == 2 and all(
            isinstance(d, int) for d in dims[1:]) and int(np.prod(dims[1:])) == fed[1]:
        return _reshape_input(model.graph, name, dims)
    if len(dims) + 1 == len(fed) == 4 and fed[0] == 1 and _fits(dims, fed[1:]):
        return _unbatch_input(model, name, dims)  # e.g. torchvision detection's (3, H, W)
    if len(dims) != len(fed) or not _fits(dims[1:], fed[1:]):
        what = "the context's slabs" if manifest.lab == 3 else "channels"
        raise ModelError(source, f"The graph's input {name!r} is fixed at {dims}, but the "
                         f"lab {manifest.lab} plugin feeds {list(fed)} from the input spec; set "
                         f"the input size and {what} to the graph's, or export the graph with "
                         "those axes dynamic.")
    if isinstance(dims[0], int) and dims[0] != 1 and manifest.lab not in BATCHED_LABS:
        raise ModelError(source, f"The graph's input {name!r} takes a batch of {dims[0]}; the "
                         f"lab {manifest.lab} plugin feeds one sample at a time.")
    return name


def _fits(dims: list, fed: tuple[int, ...]) -> bool:
    return all(not isinstance(d, int) or d == f for d, f in zip(dims, fed, strict=True))


def _reshape_input(graph: Any, name: str, dims: list) -> str:
    """Lab 1 feeds (batch, rows*cols): a new input reshaped into the graph's."""
    from onnx import helper, numpy_helper

    fresh = _unique(graph, "image_flat")
    shape = numpy_helper.from_array(np.array([-1, *dims[1:]], np.int64), _unique(graph, "shape"))
    graph.initializer.append(shape)
    graph.node.insert(0, helper.make_node("Reshape", [fresh, shape.name], [name]))
    return _replace_input(graph, name, fresh, ["batch", int(np.prod(dims[1:]))])


def _unbatch_input(model: Any, name: str, dims: list) -> str:
    """Labs 3 and 5 feed (1, ...): a new input whose first axis is squeezed into the graph's."""
    from onnx import helper, numpy_helper

    graph = model.graph
    fresh = _unique(graph, "image_batch")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    if opset >= 13:  # axes became an input in opset 13
        axes = numpy_helper.from_array(np.array([0], np.int64), _unique(graph, "axes"))
        graph.initializer.append(axes)
        node = helper.make_node("Squeeze", [fresh, axes.name], [name])
    else:
        node = helper.make_node("Squeeze", [fresh], [name], axes=[0])
    graph.node.insert(0, node)
    return _replace_input(graph, name, fresh, [1, *dims])


def _replace_input(graph: Any, name: str, fresh: str, dims: list) -> str:
    """The graph input `name` becomes an inner value; `fresh` (float32, `dims`) takes its
    place among the inputs."""
    from onnx import helper

    old = next(v for v in graph.input if v.name == name)
    graph.input.insert(list(graph.input).index(old),
                       helper.make_tensor_value_info(fresh, 1, dims))
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
    constants = {t.name for t in graph.initializer}
    for value in [*(v for v in graph.input if v.name not in constants),
                  *(v for v in graph.output if v.name in outputs)]:
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


def open_session(path: Path, source: Path) -> Any:
    """An ONNX Runtime session on the CPU (a probe is small; the same answers everywhere)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises several unrelated types
        raise ModelError(source, f"ONNX Runtime cannot open the model ({first_line(exc)}); "
                         "export it again.") from exc


def run_onnx(session: Any, feed: dict[str, np.ndarray], source: Path) -> list[np.ndarray]:
    try:
        return session.run(None, feed)
    except Exception as exc:  # noqa: BLE001 - ORT raises several unrelated types
        raise ModelError(source, f"ONNX Runtime cannot run this model on an input of the "
                         f"manifest's size ({first_line(exc)}); check the input spec.") from exc


def probe(path: Path, manifest: Manifest, feed: dict[str, np.ndarray], source: Path) -> None:
    """The wired graph on the probe input: outputs of the task's shapes, finite, and a batch
    that answers as each of its samples alone."""
    session = open_session(path, source)
    outs = run_onnx(session, feed, source)
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
        _check_batch(session, feed, outs, source)


def _check_batch(session: Any, feed: dict[str, np.ndarray], outs: list[np.ndarray],
                 source: Path) -> None:
    from medviewer.training.export import relative_error

    for i in range(next(iter(feed.values())).shape[0]):
        alone = run_onnx(session, {n: a[i:i + 1] for n, a in feed.items()}, source)
        worst = max(relative_error(o[i:i + 1], a) for o, a in zip(outs, alone, strict=True))
        if not worst <= RTOL:
            raise ModelError(source, "The model answers a batch of two slices differently "
                             f"from each slice alone (by {worst:.1e}): a batch of one is fixed "
                             "inside its graph, or a layer was left in training mode. Export "
                             "it in eval mode with a dynamic batch axis "
                             "(dynamic_axes={'input': {0: 'batch'}, 'output': {0: 'batch'}}).")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
