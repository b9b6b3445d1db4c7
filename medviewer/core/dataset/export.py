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

from medviewer.core.atomic import write_text_atomic
from medviewer.core.dataset.nifti import NiftiError, box_record, contiguous_labels, write_nifti

FORMATS = ("nnunet", "monai", "dicom")
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
    cancelled: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"cases": self.cases, "labels": self.labels, "skipped": self.skipped,
                "deidentification": self.deidentification, "cancelled": self.cancelled}

    def text(self) -> str:
        lines = [f"{len(self.cases)} case(s) exported to {self.out}"
                 + (" (cancelled: only whole files were kept)" if self.cancelled else "")]
        lines += [f"skipped: {s}" for s in self.skipped]
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
                ws = Workspace.for_series(series)
                if ws.newest("seg") or ws.newest("sr"):
                    items.append(ExportItem(series, patient.patient_id))
    return items


def export_dataset(items: Sequence[ExportItem], options: ExportOptions, *,
                   progress: Progress | None = None,
                   cancelled: Callable[[], bool] | None = None) -> ExportReport:
    """Write the chosen formats of `items` under options.out; see the module doc."""
    _check_options(items, options)
    deid = _deidentifier(options)
    cases = _cases(items, deid)
    report = ExportReport(Path(options.out))
    is_cancelled = cancelled or (lambda: False)
    steps = len(cases) * bool({"nnunet", "monai"} & set(options.formats)) + \
        ("dicom" in options.formats)
    ticker = _Ticker(progress, max(steps, 1))
    try:
        if {"nnunet", "monai"} & set(options.formats):
            _export_nifti(cases, options, report, ticker, is_cancelled)
        if "dicom" in options.formats:
            _export_dicom(cases, options, report, ticker, is_cancelled)
    except ExportCancelled:
        report.cancelled = True
    if deid is not None:
        report.deidentification = report.deidentification or deid.report.to_dict()
        report.pseudonym_table = _pseudonym_path(options)
        from medviewer.core.dataset.deid import write_pseudonym_table

        write_pseudonym_table(report.pseudonym_table, deid)
    _write_json(Path(options.out) / "export_report.json", report.to_dict())
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


# --- cases ---------------------------------------------------------------------------------

def _cases(items: Sequence[ExportItem], deid: Any) -> list[Case]:
    """Cases in a stable order (patient, study, series), named without identity."""
    from medviewer.core.annotations.workspace import Workspace

    order = sorted(items, key=lambda i: (i.patient_id, i.series.study_instance_uid,
                                         i.series.series_instance_uid, i.series.stack_index))
    cases, per_patient = [], {}
    for n, item in enumerate(order):
        ws = Workspace.for_series(item.series)
        if deid is None:
            name = f"case_{n:03d}"
        else:
            k = per_patient[item.patient_id] = per_patient.get(item.patient_id, -1) + 1
            name = f"{_safe(deid.pseudonym(item.patient_id))}_{k:02d}"
        cases.append(Case(name, item, ws.newest("seg"), ws.newest("sr")))
    return cases


def _safe(text: str) -> str:
    """A pseudonym as a file-name part nnU-Net accepts (letters, digits, '-')."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", str(text)).strip("-") or "anon"


def label_names(cases: Sequence[Case]) -> dict[str, int]:
    """Every segment name of the cases' SEGs, numbered 1..K in order of first appearance."""
    import pydicom

    from medviewer.core.annotations.seg_read import _labels_of

    names: dict[str, int] = {}
    for case in cases:
        if case.seg is not None:
            header = pydicom.dcmread(case.seg, stop_before_pixels=True)
            for name in _labels_of(header)[1:]:
                names.setdefault(name, len(names) + 1)
    return names


# --- NIfTI (nnU-Net v2 raw / MONAI) --------------------------------------------------------

def dataset_folder(options: ExportOptions) -> Path:
    name = _safe(options.dataset_name).replace("-", "") or "MedViewer"
    return Path(options.out) / f"Dataset{int(options.dataset_id):03d}_{name}"


def _export_nifti(cases: list[Case], options: ExportOptions, report: ExportReport,
                  ticker: _Ticker, cancelled: Callable[[], bool]) -> None:
    from medviewer.core.dicom import DicomError, LoadCancelled, load_series

    root = dataset_folder(options)
    report.labels = label_names(cases)
    entries: list[dict[str, Any]] = []
    for case in cases:
        if cancelled():
            raise ExportCancelled("cancelled")
        try:
            volume = load_series(case.item.series, cancel=cancelled)
            entries.append(_write_case(root, case, volume, report.labels))
        except LoadCancelled as exc:
            raise ExportCancelled("cancelled") from exc
        except (DicomError, NiftiError, ExportError) as exc:
            report.skipped.append(f"{case.name}: {exc}")
        else:
            report.cases.append(entries[-1])
        ticker.step()
    if cancelled():
        raise ExportCancelled("cancelled")
    if "nnunet" in options.formats:
        _write_json(root / "dataset.json", nnunet_dataset_json(entries, report.labels, options))
    if "monai" in options.formats:
        patients = {c.name: c.item.patient_id for c in cases}
        _write_json(root / "datalist.json", monai_datalist(entries, patients, options.split))


def _write_case(root: Path, case: Case, volume: Any, labels: dict[str, int]) -> dict[str, Any]:
    from medviewer.core.annotations.seg_read import read_seg
    from medviewer.core.annotations.sr_read import read_sr

    if volume.is_4d or volume.is_colour:
        raise ExportError("a 4D or colour series is not exported as NIfTI (grey-level 3D only)")
    entry: dict[str, Any] = {"case": case.name, "modality": volume.modality or "image"}
    folder = "imagesTr" if case.seg is not None else "imagesTs"
    image = f"{folder}/{case.name}_0000.nii.gz"
    label_map = None
    if case.seg is not None:  # read before writing anything: a SEG that does not fit skips
        label_map, names = read_seg(case.seg, volume)
        label_map = contiguous_labels(label_map, names, labels)
    write_nifti(root / image, volume.voxels, volume.affine)
    entry["image"] = image
    if label_map is not None:
        entry["label"] = f"labelsTr/{case.name}.nii.gz"
        write_nifti(root / entry["label"], label_map, volume.affine)
    if case.sr is not None:
        found = read_sr(case.sr, volume)
        entry["boxes"] = f"boxes/{case.name}.json"
        _write_json(root / entry["boxes"], {
            "case": case.name, "image": image, "pixel_origin": "top-left corner of the "
            "first pixel (a pixel's centre is at +0.5)",
            "boxes": [box_record(b, volume) for b in found.boxes],
            "class_labels": [{"label": c.label, "scope": c.scope, "slice": c.slice_index,
                              "score": c.score, "source": c.source}
                             for c in found.class_labels]})
    return entry


def nnunet_dataset_json(entries: Sequence[dict[str, Any]], labels: Mapping[str, int],
                        options: ExportOptions) -> dict[str, Any]:
    """nnU-Net v2's dataset.json: channel_names, labels (background 0), numTraining,
    file_ending (the keys nnU-Net's dataset format documentation requires)."""
    modalities = sorted({str(e.get("modality", "")) for e in entries} - {""})
    return {"channel_names": {"0": modalities[0] if len(modalities) == 1 else "image"},
            "labels": {"background": 0, **dict(labels)},
            "numTraining": sum(1 for e in entries if "label" in e),
            "file_ending": ".nii.gz",
            "name": dataset_folder(options).name,
            "description": "Exported by MedViewer (File > Export Dataset)"}


def monai_datalist(entries: Sequence[dict[str, Any]], patients: Mapping[str, str],
                   split: Mapping[str, Any] | None) -> dict[str, Any]:
    """MONAI's datalist: training / validation (a training run's patient split when given:
    a case whose PatientID the run validated on validates here; else everything trains) and
    test (images without a label). `patients`: case name -> PatientID."""
    held_out = set(split.get("validation", ())) if split else set()
    out: dict[str, list[dict[str, str]]] = {"training": [], "validation": [], "test": []}
    for e in entries:
        side = "test" if "label" not in e else \
            "validation" if patients.get(e["case"]) in held_out else "training"
        out[side].append({k: e[k] for k in ("image", "label") if k in e})
    return out


# --- DICOM ---------------------------------------------------------------------------------

def _export_dicom(cases: list[Case], options: ExportOptions, report: ExportReport,
                  ticker: _Ticker, cancelled: Callable[[], bool]) -> None:
    from medviewer.core.dataset.deid import DeidError, DeidOptions, deidentify_files

    paths = [Path(i.path) for c in cases for i in c.item.series.instances]
    paths += [p for c in cases for p in (c.seg, c.sr) if p is not None]
    try:
        result = deidentify_files(paths, Path(options.out) / "dicom",
                                  _deid_options(options, DeidOptions), cancelled=cancelled)
    except DeidError as exc:
        raise ExportError(str(exc)) from exc
    report.deidentification = result.to_dict()
    if cancelled():
        raise ExportCancelled("cancelled")
    ticker.step()


# --- helpers -------------------------------------------------------------------------------

def _write_json(path: Path, record: Any) -> None:
    write_text_atomic(path, json.dumps(record, indent=2, sort_keys=True) + "\n")


class _Ticker:
    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def step(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(min(self.done, self.total), self.total)
