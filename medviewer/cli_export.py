"""`medviewer export`: torch weights (safetensors) -> a parity-checked ONNX model folder."""

from __future__ import annotations

import argparse
import json
import sys


def add_export_parser(sub) -> None:
    e = sub.add_parser("export", help="torch weights (safetensors) -> checked ONNX model folder",
                       description="Builds ARCH, loads CHECKPOINT, exports ONNX, checks ONNX "
                       "Runtime against torch and writes manifest.json. Input spec and labels "
                       "come from the options or from an installed model (--like).")
    e.add_argument("checkpoint", help="weights.safetensors (a state dict)")
    e.add_argument("--lab", type=int, required=True)
    e.add_argument("--arch", required=True, help="architecture name, e.g. lab4.unet")
    e.add_argument("--out", help="model folder to write (default: user store/ID/VERSION)")
    e.add_argument("--id", help="model id (default: the checkpoint's file name)")
    e.add_argument("--title")
    e.add_argument("--version", default="1.0.0")
    e.add_argument("--like", metavar="MODEL_ID", help="copy input spec, labels, plugin, options")
    e.add_argument("--labels", help="comma-separated, in the network's output order")
    e.add_argument("--colours", help="comma-separated #rrggbb, one per label")
    e.add_argument("--size", type=int, nargs=2, metavar=("H", "W"))
    e.add_argument("--channels", type=int)
    e.add_argument("--context", help="single | prev-current-next | stack:N | volume:N")
    e.add_argument("--window", type=float, nargs=2, metavar=("CENTRE", "WIDTH"))
    e.add_argument("--mean", help="comma-separated, per channel")
    e.add_argument("--std", help="comma-separated, per channel")
    e.add_argument("--extras", help="comma-separated extra inputs: age,sex")
    e.add_argument("--modalities", help="comma-separated, e.g. CT")
    e.add_argument("--plugin", help="plugin entry-point name (default: labN)")
    e.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="manifest option for the plugin (VALUE as JSON when it parses)")
    e.add_argument("--build", action="append", default=[], metavar="KEY=VALUE",
                   help="architecture build option, e.g. base=8 (kept in options.build)")
    e.add_argument("--description", default="")
    e.add_argument("--trust-pickle", action="store_true",
                   help="accept a torch.save .pt/.pth state dict (torch.load weights_only)")
    e.add_argument("--force", action="store_true", help="replace an existing model folder")
    e.set_defaults(func=_cmd_export)



def fail(command: str, message: object, code: int = 2) -> int:
    print(f"medviewer {command}: {message}", file=sys.stderr)
    return code



def _cmd_export(ns: argparse.Namespace) -> int:
    """0 exported; 2 a bad input (checkpoint, options, a refused parity check) with a sentence."""
    from medviewer.inference import ModelError

    try:
        folder, manifest = _export(ns)
    except ModelError as exc:
        return fail("export", exc)
    except OSError as exc:
        return fail("export", f"{exc.filename or ns.checkpoint}: cannot be read or written "
                    f"({exc.strerror or exc}).")
    print(f"exported {manifest.id} {manifest.version} ({manifest.arch}, {manifest.task}) to "
          f"{folder}; ONNX Runtime matches torch within "
          f"{manifest.provenance.get('parity_max_relative_error', 0):.1e} (relative)")
    return 0


def _export(ns: argparse.Namespace):
    from pathlib import Path

    from medviewer.inference import ModelError
    from medviewer.inference.registry import user_models_dir
    from medviewer.training.export import manifest_fields

    arch = _architecture(ns.arch, ns.lab)
    fields = _manifest_fields(ns, arch)
    manifest_fields(arch, fields, arch.example_inputs())  # every field checked before any use
    out = Path(ns.out) if ns.out else user_models_dir() / fields["id"] / fields["version"]
    if out.exists() and any(out.iterdir()):
        if not (out / "manifest.json").is_file():
            raise ModelError(out, "The folder is not empty and holds no model; pick an empty "
                             "or new folder for --out.")
        if not ns.force:
            raise ModelError(out, "A model is already there; pass --force to replace it.")
    import torch

    from medviewer.training.export import export_model

    try:
        model = arch.build(num_classes=len(fields["labels"]), **fields["options"]["build"])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ModelError(None, f"{arch.name} cannot be built with the options "
                         f"{fields['options']['build']} ({str(exc)[:200]}); fix --build or "
                         "--option build=...") from exc
    model.eval()
    _load_checkpoint(model, Path(ns.checkpoint), ns.trust_pickle)
    inputs = _export_inputs(arch, fields["input"], torch)
    return out, export_model(model, arch, out, fields, inputs)


def _architecture(name: str, lab: int):
    from medviewer.inference import ModelError
    from medviewer.labs import architectures

    try:  # already registered (a plugin's or a test's) needs no import of every lab
        arch = architectures.ARCHITECTURES.get(name) or architectures.get(name)
    except KeyError as exc:
        raise ModelError(None, f"{exc.args[0]}; pick one with --arch.") from None
    except ImportError as exc:
        raise ModelError(None, f"The lab architectures cannot be imported ({exc}); reinstall "
                         "MedViewer.") from exc
    if arch.lab != lab:
        raise ModelError(None, f"{name} is a lab {arch.lab} architecture, not lab {lab}; "
                         f"fix --lab or --arch.")
    return arch


def _split(text: str | None, kind=str) -> list | None:
    return None if text is None else [kind(p.strip()) for p in text.split(",") if p.strip()]


def _key_values(pairs: list[str]) -> dict:
    from medviewer.inference import ModelError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ModelError(None, f"{pair!r} is not KEY=VALUE.")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


PALETTE = ("#000000", "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4",
           "#f032e6", "#bfef45", "#fabed4")


def _manifest_fields(ns: argparse.Namespace, arch) -> dict:
    """The manifest export_model completes: from --like, then the explicit options."""
    import shlex
    from pathlib import Path

    from medviewer.inference import ModelError, find_model

    like = find_model(ns.like) if ns.like else None
    if like is not None and like.task != arch.task:
        raise ModelError(like.folder, f"--like {like.id} is a {like.task} model but {arch.name} "
                         f"does {arch.task}.")
    spec = dict(like.to_dict()["input"]) if like else {}
    for key, value in (("size", ns.size), ("channels", ns.channels), ("context", ns.context),
                       ("window", ns.window), ("mean", _split(ns.mean, float)),
                       ("std", _split(ns.std, float)), ("extras", _split(ns.extras)),
                       ("modalities", _split(ns.modalities))):
        if value is not None:
            spec[key] = value
    if "size" not in spec:
        raise ModelError(None, "Give the input size with --size H W (or --like MODEL_ID).")
    names = _split(ns.labels) or (like.label_names if like else None)
    if not names:
        raise ModelError(None, "Give the labels with --labels a,b,... (or --like MODEL_ID).")
    colours = _split(ns.colours) or ([lab.colour for lab in like.labels]
                                     if like and len(like.labels) == len(names) else
                                     [PALETTE[i % len(PALETTE)] for i in range(len(names))])
    options = {**(like.options if like else {}), **_key_values(ns.option)}
    options["build"] = {**arch.default_options, **options.get("build", {}),
                        **_key_values(ns.build)}
    checkpoint = Path(ns.checkpoint)
    model_id = ns.id or checkpoint.stem
    return {"id": model_id, "title": ns.title or model_id, "version": ns.version,
            "plugin": ns.plugin or (like.plugin if like else f"lab{ns.lab}"),
            "labels": [{"name": n, "colour": c} for n, c in zip(names, colours, strict=False)],
            "input": spec, "options": options,
            "metrics": {"split": "not measured: exported from a checkpoint", "n": 0},
            "provenance": {"command": shlex.join(["medviewer", *sys.argv[1:]]),
                           "checkpoint": str(checkpoint.resolve()),
                           "checkpoint_sha256": _sha256(checkpoint),
                           "pretrained": "unknown: a user checkpoint", "torch": _torch_version()},
            "description": ns.description or (like.description if like else "")}


def _sha256(path) -> str:
    from medviewer.inference import ModelError
    from medviewer.inference.manifest import sha256

    try:
        return sha256(path)
    except OSError as exc:
        raise ModelError(path, f"The checkpoint cannot be read ({exc.strerror}).") from exc


def _torch_version() -> str:
    import torch

    return torch.__version__


def _load_checkpoint(model, path, trust_pickle: bool) -> None:
    """safetensors through load_weights; a pickle only with --trust-pickle (weights_only)."""
    from medviewer.inference import ModelError
    from medviewer.training.export import load_weights

    if not _is_pickle(path):
        load_weights(model, path)
        return
    if not trust_pickle:
        raise ModelError(path, "This checkpoint is a torch.save pickle, and opening a pickle can "
                         "run code hidden in it. Convert it once on a machine you trust: python "
                         "-c \"import torch, safetensors.torch as st; st.save_file(torch.load("
                         f"'{path.name}', weights_only=True), '{path.stem}.safetensors')\" - or "
                         "pass --trust-pickle to read it with torch.load(weights_only=True).")
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):  # common wrappers of a training checkpoint
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        state = {k.removeprefix("module."): v for k, v in state.items()}
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # noqa: BLE001 - unpickling and load_state_dict raise many types
        raise ModelError(path, f"These weights do not fit the architecture "
                         f"({str(exc)[:300]}). Pick the architecture the checkpoint was "
                         "trained with.") from exc


def _is_pickle(path) -> bool:
    """torch.save writes a zip (PK..) or, older, a raw pickle (0x80 protocol byte); safetensors
    starts with its header's length (8 bytes, little-endian) and a JSON object."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{":
        return False
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def _export_inputs(arch, spec: dict, torch) -> tuple:
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
        if example.is_floating_point():
            out.append(torch.rand(shape, generator=generator, dtype=example.dtype))
        else:
            out.append(example.clone())
    return tuple(out)
