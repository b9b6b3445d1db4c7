"""`medviewer export`: a trained model file -> a parity-checked ONNX model folder (issue 13).

Torch checkpoints (safetensors, torch.save state dicts, whole pickled modules when trusted) are
fitted to a registered architecture, guessed from the weights unless --arch names it, and the
key report is printed; ONNX, TorchScript and torch.export files need no architecture. The work
is medviewer.training.importing's, shared with Model > Import Model...
"""

from __future__ import annotations

import argparse
import json
import sys


def add_export_parser(sub) -> None:
    e = sub.add_parser("export", help="a trained model file -> checked ONNX model folder",
                       description="Reads CHECKPOINT (safetensors, torch.save .pt/.pth, ONNX, "
                       "TorchScript or torch.export .pt2), fits a torch checkpoint to an "
                       "architecture (guessed from the weights unless --arch), exports ONNX, "
                       "checks ONNX Runtime against torch and writes manifest.json. Input spec "
                       "and labels come from the options, --like, or an installed model of the "
                       "same lab and task.")
    e.add_argument("checkpoint", help="the model file")
    e.add_argument("--lab", type=int, help="lab number (default: guessed from the weights)")
    e.add_argument("--arch", help="architecture name, e.g. lab4.unet (default: guessed)")
    e.add_argument("--map", action="append", default=[], metavar="OLD_PREFIX=NEW_PREFIX",
                   help="rename the checkpoint's tensors under OLD_PREFIX to NEW_PREFIX before "
                   "fitting (repeatable), e.g. --map resnet=backbone")
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
                   help="architecture build option, e.g. base=8 (default: read from the "
                   "weights; kept in options.build)")
    e.add_argument("--description")
    e.add_argument("--trust-pickle", action="store_true",
                   help="open a whole pickled model (torch.save(model)); this runs code from "
                   "the file. State dicts never need it (read with weights_only=True)")
    e.add_argument("--force", action="store_true", help="replace an existing model folder")
    e.set_defaults(func=_cmd_export)


def fail(command: str, message: object, code: int = 2) -> int:
    print(f"medviewer {command}: {message}", file=sys.stderr)
    return code


def _cmd_export(ns: argparse.Namespace) -> int:
    """0 exported; 2 a bad input (checkpoint, options, a refused parity check) with a sentence."""
    import warnings

    from medviewer.inference import ModelError

    try:
        with warnings.catch_warnings():  # the tracer's and exporter's notes are not the user's
            warnings.simplefilter("ignore")  # business: the key report and parity line are
            folder, manifest, inspection = _export(ns)
    except ModelError as exc:
        return fail("export", exc)
    except OSError as exc:
        return fail("export", f"{exc.filename or ns.checkpoint}: cannot be read or written "
                    f"({exc.strerror or exc}).")
    if inspection.report is not None:
        fits = dict(inspection.candidates).get(manifest.arch)
        how = (f" (guessed from the weights; {fits:.0%} of tensors fit)"
               if inspection.guessed and fits is not None else "")
        print(f"architecture: {manifest.arch}{how}")
        print(f"key report: {inspection.report.sentence()}")
    for warning in inspection.warnings:
        print(f"note: {warning}")
    print(f"exported {manifest.id} {manifest.version} ({manifest.arch}, {manifest.task}) to "
          f"{folder}; ONNX Runtime matches torch within "
          f"{manifest.provenance.get('parity_max_relative_error', 0):.1e} (relative)")
    return 0


def _export(ns: argparse.Namespace):
    import shlex
    from pathlib import Path

    from medviewer.inference.registry import user_models_dir
    from medviewer.training.importing import import_model, parse_map

    maps = [parse_map(m) for m in ns.map]
    fields = _fields(ns)
    fields["provenance"] = {"command": shlex.join(["medviewer", *sys.argv[1:]])}
    out = Path(ns.out) if ns.out else user_models_dir() / fields["id"] / fields["version"]
    manifest, inspection = import_model(Path(ns.checkpoint), fields, out, arch=ns.arch,
                                        maps=maps, trust_pickle=ns.trust_pickle, force=ns.force)
    return out, manifest, inspection


def _fields(ns: argparse.Namespace) -> dict:
    """The manifest fields the options give; importing completes the rest."""
    from pathlib import Path

    spec = {key: value for key, value in (
        ("size", ns.size), ("channels", ns.channels), ("context", ns.context),
        ("window", ns.window), ("mean", _split(ns.mean, float)), ("std", _split(ns.std, float)),
        ("extras", _split(ns.extras)), ("modalities", _split(ns.modalities)))
        if value is not None}
    options = _key_values(ns.option)
    options["build"] = {**options.get("build", {}), **_key_values(ns.build)}
    fields = {"id": ns.id or Path(ns.checkpoint).stem, "title": ns.title,
              "version": ns.version, "lab": ns.lab, "plugin": ns.plugin, "input": spec,
              "options": options, "description": ns.description}
    names, colours = _split(ns.labels), _split(ns.colours) or []
    if names:
        fields["labels"] = [{"name": n, "colour": c} for n, c in
                            zip(names, colours + [None] * len(names), strict=False)]
    if ns.like:
        fields["like"] = ns.like
    return {k: v for k, v in fields.items() if v is not None}


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
