"""File ▸ Export Dataset… and `medviewer dataset export`, without the GUI.

    items = annotated_series(scan_result)          # every series with a saved SEG or SR
    report = export_dataset(items, ExportOptions(out, formats=("nnunet", "monai"), key="k"))

What is written under `out` (never inside a source folder):

    Dataset001_MedViewer/imagesTr/<case>_0000.nii.gz   series with a SEG (nnU-Net v2 raw)
                         labelsTr/<case>.nii.gz         their label maps, labels 0..K
                         imagesTs/<case>_0000.nii.gz    series with boxes but no SEG
                         boxes/<case>.json              boxes in pixels and patient mm
                         dataset.json                   nnU-Net (format nnunet)
                         datalist.json                  MONAI (format monai)
    dicom/...                                           de-identified DICOM (format dicom)
    export_report.json                                  what was written, changed, skipped

Case names are `<pseudonym>_<n>` with de-identification on (never a name or ID), `case_<n>`
without it. Every file is written atomically; Cancel stops between files and leaves only
whole ones (and no dataset.json / datalist.json). Nothing depends on the clock, so the same
series with the same key give the same bytes again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medviewer.core.dataset.layout import (
    label_names,
    monai_datalist,
    nnunet_dataset_json,
    nnunet_splits,
    write_case,
    write_json,
)
from medviewer.core.dataset.nifti import NiftiError

FORMATS = ("nnunet", "monai", "dicom")
REPORT = "export_report.json"
CASE_FOLDERS = ("imagesTr", "labelsTr", "imagesTs", "boxes")
Progress = Callable[[int, int], None]


class ExportError(Exception):
    """A dataset export that cannot start or go on, with a sentence saying why."""


class ExportCancelled(ExportError):
    pass


@dataclass(frozen=True)
class ExportItem:
    """A series to export and the PatientID it belongs to (for pseudonyms and the split)."""

    series: Any
    patient_id: str


@dataclass(frozen=True)
class ExportOptions:
    out: Path
    formats: tuple[str, ...] = ("nnunet",)
    deidentify: bool = True
    key: str = ""  # the secret that makes pseudonyms, date shifts and UIDs reproducible
    dates: str = "shift"  # or "remove"
    clean_descriptors: bool = True
    burned_in: str = "refuse"  # or "warn"
    dataset_id: int = 1
    dataset_name: str = "MedViewer"
    split: Mapping[str, Any] | None = None  # a training run's split.json: its patients kept
    pseudonym_table: Path | None = None  # default: <out>-pseudonyms.csv beside `out`


@dataclass
class Case:
    name: str
    item: ExportItem
    seg: Path | None
    sr: Path | None


@dataclass
class ExportReport:
    out: Path
    cases: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    deidentification: dict[str, Any] | None = None
    pseudonym_table: Path | None = None
    deid_text: str = ""
    stale_removed: int = 0  # case files of an earlier export into the same folder
    cancelled: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"cases": self.cases, "labels": self.labels, "skipped": self.skipped,
                "deidentification": self.deidentification, "cancelled": self.cancelled}

    def text(self) -> str:
        lines = [f"{len(self.cases)} case(s) exported to {self.out}"
                 + (" (cancelled: only whole files were kept)" if self.cancelled else "")]
        lines += [f"skipped: {s}" for s in self.skipped]
        if self.stale_removed:
            lines.append(f"removed {self.stale_removed} file(s) of an earlier export that this "
                         "one no longer holds")
        lines += [self.deid_text] if self.deid_text else []
        if self.pseudonym_table is not None:
            lines.append(f"pseudonym table (keep it apart from the export): "
                         f"{self.pseudonym_table}")
        return "\n".join(lines)


def annotated_series(scan_result: Any, only: Sequence[str] | None = None) -> list[ExportItem]:
    """The series of a ScanResult with a saved SEG or SR (`only`: these series UIDs, with or
    without annotations), each with its PatientID."""
    from medviewer.core.annotations.workspace import Workspace

    items = []
    for patient in scan_result.patients:
        for study in patient.studies:
            for series in study.series:
                if only is not None:
                    if series.series_instance_uid in only:
                        items.append(ExportItem(series, patient.patient_id))
                    continue
                ws = Workspace.for_reading(series)
                if ws.newest("seg") or ws.newest("sr"):
                    items.append(ExportItem(series, patient.patient_id))
    return items


def read_split(path: str | Path) -> dict[str, Any]:
    """A training run's split.json (medviewer.training.split), checked enough to use."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"The split file {path} cannot be read ({exc}).") from exc
    if not isinstance(record, dict) or not isinstance(record.get("validation"), list):
        raise ExportError(f"{path} is not a training run's split.json (no 'validation' list).")
    return record


def export_dataset(items: Sequence[ExportItem], options: ExportOptions, *,
                   progress: Progress | None = None,
                   cancelled: Callable[[], bool] | None = None) -> ExportReport:
    """Write the chosen formats of `items` under options.out; see the module doc."""
    _check_options(items, options)
    deid = _deidentifier(options)
    report = ExportReport(Path(options.out))
    cases = _cases(items, deid, report)
    is_cancelled = cancelled or (lambda: False)
    steps = len(cases) * bool({"nnunet", "monai"} & set(options.formats)) + \
        len(_dicom_paths(cases)) * ("dicom" in options.formats)
    ticker = _Ticker(progress, max(steps, 1))
    try:
        if {"nnunet", "monai"} & set(options.formats):
            _export_nifti(cases, options, report, ticker, is_cancelled)
        if "dicom" in options.formats:
            _export_dicom(cases, options, deid, ticker, is_cancelled)
    except ExportCancelled:
        report.cancelled = True
    if deid is not None:
        _finish_deid(deid, options, report)
    write_json(Path(options.out) / REPORT, report.to_dict())
    return report


# --- checks --------------------------------------------------------------------------------

def _check_options(items: Sequence[ExportItem], options: ExportOptions) -> None:
    unknown = [f for f in options.formats if f not in FORMATS]
    if unknown or not options.formats:
        raise ExportError(f"Unknown export format {', '.join(unknown) or '(none)'}: choose "
                          f"from {', '.join(FORMATS)}.")
    if not items:
        raise ExportError("There is nothing to export: no series was chosen, or none of them "
                          "has a saved segmentation or boxes.")
    if options.deidentify and not options.key:
        raise ExportError("De-identification needs a key (any secret phrase): the same key "
                          "gives the same pseudonyms and date shifts on the next export.")
    if "dicom" in options.formats and not options.deidentify:
        raise ExportError("The DICOM export is the de-identified copy: turn de-identification "
                          "on, or choose the nnunet or monai format.")
    if not 0 < int(options.dataset_id) < 1000:
        raise ExportError(f"The dataset number is {options.dataset_id}; nnU-Net wants 1 to 999.")
    out = Path(options.out).resolve()
    for folder in _source_folders(items):
        if out == folder or folder in out.parents:
            raise ExportError(f"The export folder {out} is inside the source folder {folder}; "
                              "choose a folder outside the data, so nothing is written into "
                              "it.")
    if out.is_dir() and any(out.iterdir()) and not (out / REPORT).is_file():
        raise ExportError(f"{out} already holds other files; choose an empty folder, or the "
                          "folder of an earlier export to replace it.")
    table = _pseudonym_path(options).resolve()
    if options.deidentify and (out == table or out in table.parents):
        raise ExportError("The pseudonym table would be inside the export; keep it outside, "
                          "so the export carries no link back to the patients.")


def _source_folders(items: Sequence[ExportItem]) -> set[Path]:
    return {Path(i.path).resolve().parent for item in items for i in item.series.instances}


def _pseudonym_path(options: ExportOptions) -> Path:
    out = Path(options.out)
    return Path(options.pseudonym_table) if options.pseudonym_table else \
        out.with_name(f"{out.name}-pseudonyms.csv")


def _deidentifier(options: ExportOptions) -> Any:
    if not options.deidentify:
        return None
    from medviewer.core.dataset.deid import Deidentifier, DeidError, DeidOptions

    try:
        return Deidentifier(_deid_options(options, DeidOptions))
    except DeidError as exc:
        raise ExportError(str(exc)) from exc


def _deid_options(options: ExportOptions, make: Any) -> Any:
    return make(key=options.key, dates=options.dates,
                clean_descriptors=options.clean_descriptors, burned_in=options.burned_in)


def _finish_deid(deid: Any, options: ExportOptions, report: ExportReport) -> None:
    """The de-identification's report (what the DICOM copy removed and changed, what could
    not be cleaned) and the pseudonym table, written outside the export."""
    from medviewer.core.dataset.deid import DeidError, write_pseudonym_table

    if "dicom" in options.formats:
        report.deidentification = deid.report.to_dict()
        report.deid_text = deid.report.text()
    else:  # NIfTI carries no header: only the names (pseudonyms) and the pixel check
        report.deidentification = {"case_names": "pseudonyms", "could_not_clean":
                                   list(deid.report.problems)}
    report.pseudonym_table = _pseudonym_path(options)
    try:
        write_pseudonym_table(report.pseudonym_table, deid)
    except DeidError as exc:
        raise ExportError(str(exc)) from exc


# --- cases ---------------------------------------------------------------------------------

def _cases(items: Sequence[ExportItem], deid: Any, report: ExportReport) -> list[Case]:
    """Cases in a stable order (patient, study, series), named without identity. With
    de-identification each series' first header goes through it: a series whose pixels may
    carry burned-in text is refused (or warned about), and its patient enters the table."""
    from medviewer.core.annotations.workspace import Workspace

    order = sorted(items, key=lambda i: (i.patient_id, i.series.study_instance_uid,
                                         i.series.series_instance_uid, i.series.stack_index))
    cases, per_patient = [], {}
    for n, item in enumerate(order):
        ws = Workspace.for_reading(item.series)
        if deid is None:
            name = f"case_{n:03d}"
        else:
            refused = _deid_refuses(deid, item)
            if refused:
                report.skipped.append(f"series {item.series.series_number}: {refused}")
                continue
            k = per_patient[item.patient_id] = per_patient.get(item.patient_id, -1) + 1
            name = f"{_safe(deid.pseudonym(item.patient_id))}_{k:02d}"
        cases.append(Case(name, item, ws.newest("seg"), ws.newest("sr")))
    return cases


def _deid_refuses(deid: Any, item: ExportItem) -> str | None:
    import pydicom

    from medviewer.core.dataset.deid import DeidError

    try:  # a check only: no copy, not counted among the de-identified files
        deid.check(pydicom.dcmread(item.series.instances[0].path, stop_before_pixels=True))
    except DeidError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for a broken file
        return f"its header cannot be read ({exc})"
    return None


def _safe(text: str) -> str:
    """A pseudonym as a file-name part nnU-Net accepts (letters, digits, '-')."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", str(text)).strip("-") or "anon"


# --- NIfTI (nnU-Net v2 raw / MONAI) --------------------------------------------------------

def dataset_folder(options: ExportOptions) -> Path:
    name = _safe(options.dataset_name).replace("-", "") or "MedViewer"
    return Path(options.out) / f"Dataset{int(options.dataset_id):03d}_{name}"


def _export_nifti(cases: list[Case], options: ExportOptions, report: ExportReport,
                  ticker: _Ticker, cancelled: Callable[[], bool]) -> None:
    from medviewer.core.annotations.seg import AnnotationError
    from medviewer.core.dicom import DicomError, LoadCancelled, load_series

    root = dataset_folder(options)
    for name in ("dataset.json", "datalist.json", "splits_final.json"):  # written again last
        (root / name).unlink(missing_ok=True)
    report.labels = label_names([c.seg for c in cases if c.seg is not None])
    entries: list[dict[str, Any]] = []
    for case in cases:
        if cancelled():
            raise ExportCancelled("cancelled")
        try:
            volume = load_series(case.item.series, cancel=cancelled)
            entries.append(write_case(root, case.name, case.seg, case.sr, volume,
                                      report.labels))
        except LoadCancelled as exc:
            raise ExportCancelled("cancelled") from exc
        except (DicomError, NiftiError, AnnotationError) as exc:  # no path: it may name them
            report.skipped.append(f"{case.name}: {getattr(exc, 'reason', exc)}")
        else:
            report.cases.append(entries[-1])
        ticker.step()
    if cancelled():
        raise ExportCancelled("cancelled")
    report.stale_removed = _remove_stale(root, entries)
    patients = {c.name: c.item.patient_id for c in cases}
    if "nnunet" in options.formats:
        write_json(root / "dataset.json", nnunet_dataset_json(entries, report.labels,
                                                              root.name))
        if options.split:  # nnU-Net reads it from nnUNet_preprocessed/<dataset>/: see docs
            write_json(root / "splits_final.json", nnunet_splits(entries, patients,
                                                                 options.split))
    if "monai" in options.formats:
        write_json(root / "datalist.json", monai_datalist(entries, patients, options.split))


def _remove_stale(root: Path, entries: Sequence[dict[str, Any]]) -> int:
    """Remove the case files of an earlier export into this folder that this one did not
    write (another key, a series no longer chosen): nnU-Net would train on them."""
    written = {root / e[k] for e in entries for k in ("image", "label", "boxes") if k in e}
    stale = [p for sub in CASE_FOLDERS if (root / sub).is_dir() for p in (root / sub).iterdir()
             if p.is_file() and p.name.endswith((".nii.gz", ".json")) and p not in written]
    for path in stale:
        path.unlink()
    return len(stale)


# --- DICOM ---------------------------------------------------------------------------------

def _export_dicom(cases: list[Case], options: ExportOptions, deid: Any,
                  ticker: _Ticker, cancelled: Callable[[], bool]) -> None:
    from medviewer.core.dataset.deid import DeidError, deidentify_files

    start = ticker.done
    try:
        deidentify_files(_dicom_paths(cases), Path(options.out) / "dicom", deid,
                         cancelled=cancelled, progress=lambda done, _: ticker.set(start + done))
    except DeidError as exc:
        raise ExportError(str(exc)) from exc
    if cancelled():
        raise ExportCancelled("cancelled")


def _dicom_paths(cases: Sequence[Case]) -> list[Path]:
    """Every image of the cases, then their SEG and SR files."""
    paths = [Path(i.path) for c in cases for i in c.item.series.instances]
    return paths + [p for c in cases for p in (c.seg, c.sr) if p is not None]


# --- helpers -------------------------------------------------------------------------------

class _Ticker:
    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def step(self) -> None:
        self.set(self.done + 1)

    def set(self, done: int) -> None:
        self.done = done
        if self.progress is not None:
            self.progress(min(self.done, self.total), self.total)
