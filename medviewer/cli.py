"""`medviewer` entry point: the viewer by default, sub-commands for headless work.

    medviewer [PATH]             open the viewer (the built-in demo study when no PATH)
    medviewer scan DIR [--json]  index a folder / DICOMDIR and list patients, studies, series
    medviewer info FILE          header summary and every element of one DICOM file
    medviewer models [--json]    installed models, plugins and the ONNX Runtime providers
    medviewer models --versions ID | --publish FOLDER | --use ID VERSION   model versions
    medviewer infer --model ID PATH --out DIR   run a model over series (SEG / CSV / JSON)
    medviewer export CHECKPOINT --lab N --arch NAME   torch weights -> checked model folder
    medviewer train JOB.json [--nproc-per-node N]    train a new model version (JSON events)
    medviewer pacs echo|find|get|send SERVER ...     query, retrieve from and send to a PACS
    medviewer dataset export SOURCE... --out DIR     nnU-Net / MONAI / de-identified DICOM
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import asdict

from medviewer import __version__

SUBCOMMANDS = ("scan", "info", "models", "infer", "export", "train", "pacs", "dataset")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:
        parser = _subcommand_parser()
        ns = parser.parse_args(args)
        return ns.func(ns)
    ns = _gui_parser().parse_args(args)
    from medviewer.ui.shell.app import run  # Qt is imported only when the window is wanted

    return run(ns.path)


def program() -> None:
    """The `medviewer` program (console script, `python -m medviewer`, main.py): `main`, then
    exit. A headless command's results are written and closed when `main` returns, so it exits
    at once instead of tearing the interpreter down: freeing ONNX Runtime, NumPy's buffers and
    ~1000 modules took 0.4 s of `medviewer infer`'s 3.2 s on the demo CT. Not after the viewer
    (Qt saves settings as it is destroyed), `train` (minutes long; its job files) or while
    another thread still runs."""
    try:
        rc = main()
    except BrokenPipeError:  # `medviewer models | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    if sys.argv[1:2] and sys.argv[1] in SUBCOMMANDS and sys.argv[1] != "train" \
            and threading.active_count() == 1:
        import logging

        logging.shutdown()  # flushes every handler
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    raise SystemExit(rc)


def _gui_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="medviewer",
        description="DICOM review, annotation and model-assisted analysis. "
        f"Sub-commands: {', '.join(SUBCOMMANDS)} (medviewer scan --help).",
    )
    p.add_argument("path", nargs="?", help="folder, DICOMDIR or file to open (default: demo study)")
    p.add_argument("--version", action="version", version=f"medviewer {__version__}")
    return p


def _subcommand_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medviewer")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("scan", help="index a folder, DICOMDIR or files")
    s.add_argument("path", nargs="+", help="folder(s), DICOMDIR or files")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--files", action="store_true", help="with --json: list every file")
    s.add_argument("--no-cache", action="store_true", help="ignore and do not update the cache")
    s.set_defaults(func=_cmd_scan)
    i = sub.add_parser("info", help="header summary and all elements of one DICOM file")
    i.add_argument("file")
    i.set_defaults(func=_cmd_info)
    from medviewer.cli_infer import add_model_parsers

    add_model_parsers(sub)
    from medviewer.cli_pacs import add_pacs_parser

    add_pacs_parser(sub)
    from medviewer.cli_dataset import add_dataset_parser

    add_dataset_parser(sub)
    from medviewer.training.__main__ import add_arguments  # no torch until a job runs

    t = sub.add_parser("train", help="train a model version from a job file (JSON events)")
    add_arguments(t)
    t.set_defaults(func=_cmd_train)
    return p


def _cmd_train(ns: argparse.Namespace) -> int:
    from medviewer.training.__main__ import run_from_args

    return run_from_args(ns)


def _cmd_scan(ns: argparse.Namespace) -> int:
    from medviewer.core.dicom import scan

    missing = [path for path in ns.path if not os.path.lexists(path)]
    for path in missing:
        print(f"medviewer scan: {_printable(path)}: no such file or folder", file=sys.stderr)
    if missing:
        return 2
    result = scan(ns.path if len(ns.path) > 1 else ns.path[0], cache=not ns.no_cache)
    if ns.json:
        print(json.dumps(_scan_as_dict(result, ns.files), indent=2))
    else:
        _print_scan(result)
    return 0


def _scan_as_dict(result, with_files: bool) -> dict:
    out = asdict(result)
    listed = (s for p in out["patients"] for st in p["studies"] for s in st["series"])
    for series, source in zip(listed, result.all_series(), strict=True):
        instances = series.pop("instances")
        series["image_count"] = source.image_count
        if with_files:
            series["files"] = [i["path"] for i in instances]
    return out


def _printable(text: object) -> str:
    """Control characters (a terminal escape in a file name or header) and undecodable bytes
    as backslash escapes: what is printed is what is there, and the terminal obeys none of it."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace")
                   .decode("ascii") for c in str(text))


def _print_scan(result) -> None:
    out = _printable
    for p in result.patients:
        print(out(f"{p.name or '(no name)'}  [{p.patient_id}]  {p.sex} {p.birth_date}".rstrip()))
        for st in p.studies:
            print(out(f"  study {st.date} {st.description}  ({st.study_instance_uid})"))
            for s in st.series:
                stack = f" stack {s.stack_index + 1}/{s.stack_count}" if s.stack_count > 1 else ""
                print(out(f"    #{s.series_number if s.series_number is not None else '-'} "
                          f"{s.modality:3} {s.image_count:5d} images  {s.description}{stack}"))
    for prob in result.problems:
        print(f"unreadable: {out(prob.path)}: {out(prob.reason)}")
    print(f"{result.files_seen} files, {len(result.all_series())} series, "
          f"{len(result.problems)} unreadable, {result.files_skipped} not DICOM"
          + (" (cancelled)" if result.cancelled else ""))


def _cmd_info(ns: argparse.Namespace) -> int:
    from medviewer.cli_info import run_info

    return run_info(ns)
