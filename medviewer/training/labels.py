"""Which model label each annotation segment trains as: the label mapping of a job (issue 11.17).

A segment of a saved SEG becomes a model label by its name (any case) or by its SNOMED
segmented property type (a segment "left lung" coded Lung trains as "lung"); the job's
`data.segment_labels` maps the others by hand, `{"segment 1": "nodule"}`, or excludes them,
`{"marker": null}`. A segment that holds voxels and is neither matched, mapped nor excluded
stops the job before training: its voxels would otherwise silently teach the model that the
structure is background.

Excluded voxels are ignored, not background: their target value is IGNORE, which the loss and
the scores skip. A slice is a training sample when it holds voxels of a matched or mapped
segment; a slice annotated with excluded segments only is left out (it says nothing about the
model's labels). numpy and pydicom only: the Retrain dialog uses this to show the mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Code = tuple[str, str, str]  # (coding scheme designator, code value, code meaning)
IGNORE = 255  # target value of excluded voxels: no loss, no score
GENERIC_CODES = {("SCT", "85756007")}  # Tissue: every unknown name gets it, so it matches none
EXCLUDE = None  # a mapping's value for "leave these voxels out of training"


@dataclass(frozen=True)
class Segment:
    """One segment name of the chosen series' SEGs, with its voxels summed over them."""

    name: str
    voxels: int
    code: Code | None = None  # SNOMED segmented property type, as saved
    files: tuple[str, ...] = field(default=())


def _key(name: str) -> str:
    return str(name).strip().lower()


def label_codes(labels: Sequence[str]) -> dict[tuple[str, str], str]:
    """(scheme, value) of each model label's SNOMED type, as the SEG writer codes its name;
    the generic Tissue code matches nothing."""
    from medviewer.core.annotations.labelmap import default_codes

    out: dict[tuple[str, str], str] = {}
    for name in labels:
        scheme, value, _ = default_codes(name)[1]
        if (scheme, value) not in GENERIC_CODES:
            out.setdefault((scheme, value), name)
    return out


def auto_label(name: str, code: Code | None, labels: Sequence[str]) -> str | None:
    """The model label a segment matches by name (any case), else by its type code."""
    by_name = {_key(n): n for n in labels}
    if _key(name) in by_name:
        return by_name[_key(name)]
    if code is not None and (code[0], code[1]) not in GENERIC_CODES:
        return label_codes(labels).get((code[0], code[1]))
    return None


def normalise(mapping: Mapping[str, str | None] | None) -> dict[str, str | None]:
    """Segment names compared in any case."""
    return {_key(k): v for k, v in (mapping or {}).items()}


def choice(segment: Segment, labels: Sequence[str],
           mapping: Mapping[str, str | None] | None) -> tuple[bool, str | None]:
    """(decided, model label or EXCLUDE) of a segment: the job's mapping first, else the
    automatic match; (False, None) when neither says."""
    chosen = normalise(mapping)
    if _key(segment.name) in chosen:
        return True, chosen[_key(segment.name)]
    label = auto_label(segment.name, segment.code, labels)
    return label is not None, label


def unmapped(segments: Iterable[Segment], labels: Sequence[str],
             mapping: Mapping[str, str | None] | None) -> list[Segment]:
    """The segments with voxels that no label takes and that are not excluded."""
    return [s for s in segments if s.voxels > 0 and not choice(s, labels, mapping)[0]]


def unmapped_text(segments: Sequence[Segment], labels: Sequence[str], model: str) -> str:
    names = ", ".join(f"{s.name!r} ({s.voxels} voxels)" for s in segments)
    many = len(segments) > 1
    return (f"The segment{'s' if many else ''} {names} match{'' if many else 'es'} "
            f"no label of {model} ({', '.join(labels)}): map each to a label or exclude it "
            "(the Retrain dialog's label mapping, or the job's data.segment_labels, e.g. "
            '{"segment 1": "nodule"} or {"segment 1": null}); left as it is, its voxels '
            "would be trained as background.")


def check_mapping(mapping: Mapping[str, Any] | None, labels: Sequence[str]) -> str:
    """Why a mapping names a model label that does not exist ('' when it is fine)."""
    known = {_key(n) for n in labels}
    wrong = [f"{k!r} -> {v!r}" for k, v in (mapping or {}).items()
             if v is not EXCLUDE and _key(str(v)) not in known]
    return (f"data.segment_labels maps {', '.join(wrong)}, which is no label of the model "
            f"({', '.join(labels)}); use one of them or null to exclude.") if wrong else ""


def target_value(name: str, code: Code | None, labels: Sequence[str],
                 mapping: Mapping[str, str | None] | None) -> int | None:
    """The model label index of a segment, IGNORE when excluded, None when undecided."""
    decided, label = choice(Segment(name, 0, code), labels, mapping)
    if not decided:
        return None
    if label is EXCLUDE:
        return IGNORE
    return [_key(n) for n in labels].index(_key(label))


# --- what the chosen series hold ------------------------------------------------------------

def read_segments(path: str | Path) -> list[Segment]:
    """The segments of one SEG file with their voxel counts (pydicom only: the source images
    are not read). OSError / ValueError when the file is no readable SEG."""
    import pydicom

    ds = pydicom.dcmread(str(path))
    if "SegmentSequence" not in ds:
        raise ValueError(f"{path}: not a segmentation (no SegmentSequence)")
    frames = ds.pixel_array if "PixelData" in ds else np.zeros((0, 1, 1), np.uint8)
    frames = frames.reshape(-1, *frames.shape[-2:])
    shared = ds.get("SharedFunctionalGroupsSequence", [{}])[0]
    counts: dict[int, int] = {}
    for i, group in enumerate(ds.get("PerFrameFunctionalGroupsSequence", [])[:len(frames)]):
        ident = group.get("SegmentIdentificationSequence") or \
            shared.get("SegmentIdentificationSequence")
        if ident:
            number = int(ident[0].ReferencedSegmentNumber)
            counts[number] = counts.get(number, 0) + int(np.count_nonzero(frames[i]))
    out = []
    for item in ds.SegmentSequence:
        number = int(item.SegmentNumber)
        codes = item.get("SegmentedPropertyTypeCodeSequence")
        code = (str(codes[0].CodingSchemeDesignator), str(codes[0].CodeValue),
                str(codes[0].CodeMeaning)) if codes else None
        out.append(Segment(str(item.get("SegmentLabel") or f"segment {number}"),
                           counts.get(number, 0), code, (str(path),)))
    return out


def merge(segments: Iterable[Segment]) -> list[Segment]:
    """One entry per name (any case): voxels summed, files listed, first code kept."""
    out: dict[str, Segment] = {}
    for s in segments:
        seen = out.get(_key(s.name))
        out[_key(s.name)] = s if seen is None else Segment(
            seen.name, seen.voxels + s.voxels, seen.code or s.code, seen.files + s.files)
    return list(out.values())


def seg_files(entries: Iterable[Any]) -> list[Path]:
    """The newest SEG of every annotated series a job's data.series names (folders as text,
    or {"folder", "uid"} for one series of a folder)."""
    from medviewer.core.annotations import AnnotationError, Workspace
    from medviewer.core.dicom import DicomError, scan

    files: list[Path] = []
    for entry in entries:
        folder = entry if isinstance(entry, str | Path) else entry["folder"]
        uid = None if isinstance(entry, str | Path) else entry["uid"]
        try:
            found = scan(str(folder), workers=1).all_series()
        except DicomError:
            continue  # the job itself reports a folder it cannot read
        for series in found:
            if uid is not None and series.series_instance_uid != uid:
                continue
            try:
                path = Workspace.for_series(series).newest("seg")
            except (AnnotationError, OSError):
                continue
            if path is not None and path not in files:
                files.append(path)
    return files


def series_segments(entries: Iterable[Any]) -> tuple[list[Segment], list[str]]:
    """(segments of the SEGs of the job's series, merged by name; problems in words)."""
    from pydicom.errors import InvalidDicomError

    segments: list[Segment] = []
    problems: list[str] = []
    for path in seg_files(entries):
        try:
            segments += read_segments(path)
        except (OSError, ValueError, AttributeError, KeyError, InvalidDicomError) as exc:
            problems.append(f"{path}: cannot be read ({exc})")
    return merge(segments), problems
