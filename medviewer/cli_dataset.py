"""`medviewer dataset export SOURCE... --out DIR`: annotated series as a training dataset.

    medviewer dataset export ~/studies --out ~/export --format nnunet,monai --key "phrase"
    medviewer dataset export ~/studies --out ~/export --format dicom --dates remove

SOURCE: folders, DICOMDIRs or files; every series with a saved SEG or SR is exported (or
only those named with --series). The key may come from MEDVIEWER_DEID_KEY instead of the
command line (shell history). Any failure prints one sentence on stderr and exits with 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

FAILED = 2
KEY_ENV = "MEDVIEWER_DEID_KEY"


def add_dataset_parser(sub) -> None:
    p = sub.add_parser("dataset", help="export annotated series as nnU-Net / MONAI / "
                       "de-identified DICOM datasets")
    actions = p.add_subparsers(dest="action", required=True)
    e = actions.add_parser("export", help="write a dataset from annotated series",
                           description="Write the annotated series of SOURCE as an nnU-Net v2 "
                           "raw dataset, a MONAI datalist and/or a de-identified DICOM copy.")
    e.add_argument("sources", nargs="+", metavar="SOURCE", help="folder, DICOMDIR or file")
    e.add_argument("--out", required=True, metavar="DIR", help="export folder (outside the data)")
    e.add_argument("--format", default="nnunet", metavar="LIST",
                   help="comma-separated: nnunet, monai, dicom (default nnunet)")
    e.add_argument("--series", action="append", metavar="UID",
                   help="only this series (repeatable); default: every annotated series")
    e.add_argument("--key", default=None, help=f"de-identification key (or {KEY_ENV})")
    e.add_argument("--dates", choices=("shift", "remove"), default="shift",
                   help="dates shifted per patient (default) or removed")
    e.add_argument("--empty-descriptors", action="store_true",
                   help="empty descriptions and comments (default: kept, cleaned of names, "
                   "IDs, dates and UIDs: the Clean Descriptors option)")
    e.add_argument("--burned-in", choices=("refuse", "warn"), default="refuse",
                   help="images that may carry burned-in text: refuse (default) or warn")
    e.add_argument("--no-deidentify", action="store_true",
                   help="keep names, IDs and dates (NIfTI formats only)")
    e.add_argument("--dataset-id", type=int, default=1, help="nnU-Net dataset number (1)")
    e.add_argument("--name", default="MedViewer", help="nnU-Net dataset name")
    e.add_argument("--split", metavar="SPLIT_JSON",
                   help="a training run's split.json: its validation patients validate")
    e.add_argument("--pseudonyms", metavar="FILE",
                   help="pseudonym table (default: <DIR>-pseudonyms.csv beside DIR)")
    e.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_dataset)


def run_dataset(ns: argparse.Namespace) -> int:
    from medviewer.core.dataset.export import ExportError

    try:
        return _export(ns)
    except ExportError as exc:
        print(f"medviewer dataset export: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("medviewer dataset export: interrupted; the files written are whole, run it "
              "again to write the rest.", file=sys.stderr)
    return FAILED


def _export(ns: argparse.Namespace) -> int:
    from medviewer.core.dataset.export import (
        ExportError,
        ExportOptions,
        annotated_series,
        export_dataset,
        read_split,
    )
    from medviewer.core.dicom import scan

    missing = [s for s in ns.sources if not os.path.lexists(s)]
    if missing:
        raise ExportError(f"{missing[0]}: no such file or folder.")
    options = ExportOptions(
        Path(ns.out), formats=tuple(f.strip() for f in ns.format.split(",") if f.strip()),
        deidentify=not ns.no_deidentify, key=ns.key or os.environ.get(KEY_ENV, ""),
        dates=ns.dates, clean_descriptors=not ns.empty_descriptors, burned_in=ns.burned_in,
        dataset_id=ns.dataset_id, dataset_name=ns.name,
        split=read_split(ns.split) if ns.split else None,
        pseudonym_table=Path(ns.pseudonyms) if ns.pseudonyms else None)
    result = scan(ns.sources if len(ns.sources) > 1 else ns.sources[0])
    items = annotated_series(result, only=ns.series)
    if ns.series and len(items) < len(set(ns.series)):
        found = {i.series.series_instance_uid for i in items}
        raise ExportError(f"Series {sorted(set(ns.series) - found)[0]} is not in "
                          f"{', '.join(ns.sources)}.")
    report = export_dataset(items, options, progress=_progress if sys.stderr.isatty() else None)
    print(json.dumps(report.to_dict(), indent=2) if ns.json else report.text())
    if not report.cases and "dicom" not in options.formats and not report.cancelled:
        raise ExportError("No series could be exported; the report above says why.")
    return FAILED if report.cancelled else 0


def _progress(done: int, total: int) -> None:
    print(f"\r{done}/{total}", end="\n" if done >= total else "", file=sys.stderr, flush=True)
