"""The manifest of an imported model: what the caller gave, the rest from the weights and from
a similar installed model (issue 13).

Classes (and input channels, slices) come from the checkpoint's shapes; the input spec, label
colours, plugin and plugin options from `like` (an installed model the caller named) or else
from an installed model of the same lab and task (the same architecture first), said in the
Inspection's warnings. An input size the architecture cannot take is refused when given, and
replaced by one it takes when borrowed (Swin at 56).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from medviewer.core.atomic import shareable_mode
from medviewer.inference.errors import ModelError
from medviewer.inference.manifest import Manifest, load_manifest
from medviewer.labs.architectures import Architecture
from medviewer.training.importing import similar_model

PALETTE = ("#000000", "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4",
           "#f032e6", "#bfef45", "#fabed4")
def complete_fields(arch: Architecture | None, fields: dict[str, Any], inspection
                    ) -> dict[str, Any]:
    """The caller's fields completed (see the module's docstring); the Inspection gets the
    warnings, `like` and the number of classes when the weights did not tell it. `arch` None:
    a self-contained file, whose lab and task the Inspection holds and whose graph gives the
    channels and size where they are fixed."""
    from medviewer.inference import find_model

    fields = dict(fields)
    lab, task = (arch.lab, arch.task) if arch else (inspection.lab, inspection.task)
    what = arch.name if arch else f"this lab {lab} model"
    like_id = fields.pop("like", None)
    like = find_model(like_id) if like_id else similar_model(lab, task, arch and arch.name)
    if like is not None and like.task != task:
        raise ModelError(like.folder, f"--like {like.id} is a {like.task} model but {what} "
                         f"does {task}.")
    if like is not None and not like_id and fields.get("plugin") not in (None, like.plugin):
        like = None  # its spec and options belong to another plugin than the one asked for
    if like is not None:
        inspection.like = like.id
        if not like_id:
            inspection.warnings.append(
                f"input spec, label colours and plugin from the installed model {like.id} "
                f"({like.arch}); change them with the input options or --like")
    given = dict(fields.get("input", {}))
    spec = {**(like.to_dict()["input"] if like else {}), **given}
    if arch is not None:
        _follow_weights(arch, spec, given, inspection)
        _check_size(arch, spec, given, inspection)
    else:
        _follow_graph(spec, given, inspection)
    if "size" not in spec:
        raise ModelError(None, "Give the input size with --size H W (or --like MODEL_ID).")
    labels = _labels(fields.get("labels"), like, bool(like_id), inspection)
    options = {**(like.options if like else {}), **fields.get("options", {})}
    options.pop("build", None)
    if arch is not None:
        options["build"] = {**inspection.build, **fields.get("options", {}).get("build", {})}
    path = Path(inspection.path)
    model_id = fields.get("id") or path.stem
    return {**fields, "id": model_id, "title": fields.get("title") or model_id,
            "version": fields.get("version") or "1.0.0", "lab": lab,
            "plugin": fields.get("plugin") or (like.plugin if like else f"lab{lab}"),
            "labels": labels, "input": spec, "options": options,
            "metrics": fields.get("metrics") or {
                "split": "not measured: exported from a checkpoint", "n": 0},
            "provenance": {"checkpoint": str(path.resolve()), "checkpoint_sha256": _sha256(path),
                           "pretrained": "unknown: a user checkpoint",
                           "torch": torch.__version__, **fields.get("provenance", {})},
            "description": fields.get("description") or (
                like.description if like and like_id else "")}


def _follow_graph(spec: dict, given: dict, inspection) -> None:
    """A self-contained graph's fixed channels and size (an image input's axes 1, 2, 3); a
    graph of one input takes no extras, whatever the model the spec was borrowed from did."""
    if len(inspection.inputs) == 1 and "extras" not in given:
        spec.pop("extras", None)
    image = next((s for s in inspection.inputs.values() if len(s) >= 4), None)
    if image is None:
        return
    channels, rows, columns = image[1], image[-2], image[-1]
    if isinstance(channels, int) and "channels" not in given:
        if inspection.lab == 3 and str(spec.get("context", "")).partition(":")[2]:
            spec["context"] = f"{spec['context'].partition(':')[0]}:{channels}"
        spec["channels"] = channels
    if isinstance(rows, int) and isinstance(columns, int) and "size" not in given:
        spec["size"] = [rows, columns]
    _per_channel(spec, spec.get("channels", 1))


def _per_channel(spec: dict, channels: int) -> None:
    """mean/std of one value per channel or a single value: equal values collapse to one."""
    for key in ("mean", "std"):
        values = list(spec.get(key, ()))
        if len(values) not in (0, 1, channels):
            if len(set(values)) != 1:
                raise ModelError(None, f"input {key} has {len(values)} values but the model "
                                 f"takes {channels} channels; give one or {channels} values.")
            spec[key] = values[:1]


def _follow_weights(arch: Architecture, spec: dict, given: dict, inspection) -> None:
    """Channels (and a series' slice count) as the weights take them; grey images are
    broadcast to N channels by the plugins' preprocessing."""
    if "extras" not in arch.input_names and "extras" not in given:
        spec.pop("extras", None)  # e.g. lab2.vgg16 borrowing the age/sex model's spec
    build = inspection.build
    channels = build.get("in_channels") if "in_channels" in build else build.get("slices")
    if not isinstance(channels, int) or _image_input(arch) is None:
        return
    if given.get("channels") not in (None, channels):
        raise ModelError(None, f"The weights take {channels} input channels; --channels "
                         f"{given['channels']} does not fit them.")
    if "slices" in build and "in_channels" not in build:
        kind, _, _ = str(spec.get("context", "volume:0")).partition(":")
        spec["context"] = f"{kind if kind in ('volume', 'stack') else 'volume'}:{channels}"
    spec["channels"] = channels
    _per_channel(spec, channels)


def _image_input(arch: Architecture) -> tuple[str, torch.Size] | None:
    for name, example in zip(arch.input_names, arch.example_inputs(), strict=True):
        if example.dim() >= 4:
            return name, example.shape
    return None


def _check_size(arch: Architecture, spec: dict, given: dict, inspection) -> None:
    """The input size the architecture takes: tried on the meta device (no memory, no time)
    against its own example's size; a size that fails where the example's works is refused
    when given, else replaced by the example's with a warning (Swin at 56)."""
    image = _image_input(arch)
    if image is None or "size" not in spec:
        return
    name, shape = image
    example = [int(shape[-2]), int(shape[-1])]
    size = [int(v) for v in spec["size"]]
    if size == example or not _runs_at(arch, inspection, spec, example):
        return
    if _runs_at(arch, inspection, spec, size):
        return
    if "size" in given:
        raise ModelError(None, f"{arch.name} cannot take {size[0]}x{size[1]} images (it runs "
                         f"at {example[0]}x{example[1]}); pass another --size.")
    inspection.warnings.append(f"{arch.name} cannot take {size[0]}x{size[1]} images: input "
                               f"size {example[0]}x{example[1]}")
    spec["size"] = example


def _runs_at(arch: Architecture, inspection, spec: dict, size: list[int]) -> bool:
    options = {**inspection.build}
    if inspection.num_classes is not None:
        options["num_classes"] = inspection.num_classes
    try:
        with torch.device("meta"):
            model = arch.build(**options).eval()
            inputs = [torch.empty(t.shape, dtype=t.dtype)
                      for t in export_inputs(arch, {**spec, "size": size})]
            with torch.no_grad():
                model(*inputs)
    except Exception:  # noqa: BLE001 - any failure at this size: the caller decides what it means
        return False
    return True


def _labels(given, like: Manifest | None, explicit_like: bool, inspection) -> list[dict]:
    """[{name, colour}]: given (their count must be the weights' classes), else --like's,
    else class 1..K with a warning."""
    classes = inspection.num_classes
    if classes == 1 and inspection.task in ("classification", "fusion"):
        raise ModelError(None, "This classifier has one output (a sigmoid head trained with "
                         "BCE): MedViewer reads class scores as a softmax over two or more "
                         "outputs, and one output would always score 1.0. Save a two-output "
                         "head (logits [0, x] for your x: torch.cat([torch.zeros_like(x), x], "
                         "1)) and import that.")
    names = [g["name"] if isinstance(g, dict) else str(g) for g in given or ()]
    colours = [g.get("colour") if isinstance(g, dict) else None for g in given or ()]
    if names and classes is not None and len(names) != classes:
        raise ModelError(None, f"The weights give {classes} classes but {len(names)} labels "
                         f"were given ({', '.join(names)}); give {classes} labels.")
    if not names and like is not None and explicit_like and (
            classes is None or len(like.labels) == classes):
        names, colours = like.label_names, [lab.colour for lab in like.labels]
    if not names:
        if classes is None:
            raise ModelError(None, "Give the labels with --labels a,b,... (or --like "
                             "MODEL_ID).")
        names = [f"class {i}" for i in range(1, classes + 1)]
        inspection.warnings.append(f"the weights give {classes} classes; they are named class "
                                   f"1..{classes} until you give labels (--labels)")
    if not all(colours) and like is not None and len(like.labels) == len(names):
        colours = [c or lab.colour for c, lab in zip(colours or [None] * len(names),
                                                      like.labels, strict=True)]
    colours = [c or PALETTE[i % len(PALETTE)]
               for i, c in enumerate(colours or [None] * len(names))]
    if inspection.num_classes is None:
        inspection.num_classes = len(names)
    return [{"name": n, "colour": c} for n, c in zip(names, colours, strict=True)]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ModelError(path, f"The checkpoint cannot be read ({exc.strerror}).") from exc
    return digest.hexdigest()


def check_out_folder(out: Path, force: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not (out / "manifest.json").is_file():
            raise ModelError(out, "The folder is not empty and holds no model; pick an empty "
                             "or new folder for --out.")
        if not force:
            raise ModelError(out, "A model is already there; pass --force to replace it.")


def export_inputs(arch: Architecture, spec: dict) -> tuple[torch.Tensor, ...]:
    """The architecture's example inputs at the manifest's size, channels and extras."""
    generator = torch.Generator().manual_seed(0)
    out = []
    for name, example in zip(arch.input_names, arch.example_inputs(), strict=True):
        shape = list(example.shape)
        if name == "extras":
            shape[-1] = len(spec.get("extras", ()))
        elif example.dim() >= 4:
            shape[-2:] = spec["size"]
            if example.dim() == 4 and spec.get("channels"):
                shape[1] = spec["channels"]
        if arch.task == "detection" and example.dim() == 4:
            # the example film (a bright heart on a chest) at the working size, not noise: a
            # detector finds boxes that stand apart, so the parity check compares real ones
            film = torch.nn.functional.interpolate(example, size=tuple(shape[-2:]),
                                                   mode="bilinear", align_corners=False)
            out.append(film.mean(1, keepdim=True).expand(shape).contiguous())
        elif example.is_floating_point():
            out.append(torch.rand(shape, generator=generator, dtype=example.dtype))
        else:
            out.append(example.clone())
    return tuple(out)


def install_folder(folder: Path, *, force: bool = False) -> Manifest:
    """`folder` moved (renamed, or copied across file systems) into the user store as
    <id>/<version>: staged beside the target and renamed into place, so a kill leaves the old
    version, none or the new one, never part of one."""
    from medviewer.inference.registry import user_models_dir
    from medviewer.inference.staging import make_staging, remove_stale
    from medviewer.training.export import _replace_folder

    manifest = load_manifest(folder)  # checksums verified before anything moves
    target = user_models_dir() / manifest.id / manifest.version
    if target.resolve() == folder.resolve():
        return manifest
    if os.path.lexists(target) and not force:
        raise ModelError(target, f"{manifest.id} {manifest.version} is already installed; "
                         "import it as another version, or replace it (force).")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent, target.name)
    staging = make_staging(target.parent, target.name)
    try:
        try:
            os.replace(folder, staging)  # same file system: one rename
        except OSError:
            shutil.copytree(folder, staging, dirs_exist_ok=True)
        os.chmod(staging, shareable_mode(0o777))
        _replace_folder(staging, target)
    except BaseException:
        if staging.exists() and not folder.exists():
            os.replace(staging, folder)  # the rename undone: the caller keeps its folder
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    return load_manifest(target)
