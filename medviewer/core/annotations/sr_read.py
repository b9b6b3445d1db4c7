"""Reading the SR and sidecar that `sr.write_sr` saves, or any TID 1500 SR.

    read_sr(path, volume) -> Annotations(boxes, class_labels, lines, areas)
    read_provenance(path) -> Provenance (annotator, model, saved_at)

With a sidecar that names the SR, the sidecar is the complete record. Without one, the SR
alone is placed on the volume: each reference's SOP Instance UID and frame number name a
slice (a reference to a whole multi-frame file, its frame 1), labels are the code meanings (as
typed when this viewer's tracking identifier keeps them), lengths in UCUM mm / cm / m / um are
mm and in any other unit ({pixels}) px.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from medviewer.core.annotations import sr_areas, sr_codes
from medviewer.core.annotations.boxes import (
    ACCEPTED,
    ANNOTATOR,
    MM,
    PX,
    SERIES,
    SLICE,
    AnnotatedBox,
    AreaMeasurement,
    ClassLabel,
    DistanceLine,
    area_from_dict,
)
from medviewer.core.annotations.seg import AnnotationError

SIDECAR_FORMAT = "medviewer-annotations"
SIDECAR_VERSION = 1
_LENGTH = "410668003"  # SCT Length
_LENGTH_UNITS = {"mm": 1.0, "cm": 10.0, "m": 1000.0, "um": 0.001}  # UCUM -> mm; others: px


class Annotations(NamedTuple):
    """What an SR holds; unpacks as (boxes, class_labels, lines, areas)."""

    boxes: list[AnnotatedBox]
    class_labels: list[ClassLabel]
    lines: list[DistanceLine]
    areas: list[AreaMeasurement]


@dataclass(frozen=True)
class Provenance:
    """Who saved the annotations, when, and which model's results they started from."""

    annotator: str
    model: str | None  # 'model:<id>@<version>' or None for work from scratch
    saved_at: str  # ISO 8601, local time with offset


# --- the JSON sidecar --------------------------------------------------------------------------

def sidecar_path_for(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The sidecar's record; AnnotationError when it is not one of ours."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:  # deep: refused
        raise AnnotationError(path, f"The annotation sidecar cannot be read ({exc}).") from exc
    if not isinstance(record, dict) or record.get("format") != SIDECAR_FORMAT:
        raise AnnotationError(path, "This JSON file is not a MedViewer annotation sidecar.")
    if record.get("version") != SIDECAR_VERSION:
        raise AnnotationError(path, f"Sidecar version {record.get('version')} is not known "
                              "to this MedViewer; update it to open these annotations.")
    return record


def annotations_from_sidecar(record: dict[str, Any], path: Path) -> Annotations:
    try:
        boxes = [AnnotatedBox(**b) for b in record["boxes"]]
        labels = [ClassLabel(**c) for c in record["class_labels"]]
        lines = [DistanceLine(**{**m, "start": tuple(m["start"]), "end": tuple(m["end"])})
                 for m in record["measurements"]]
        areas = [area_from_dict(a) for a in record.get("areas") or []]
    except (KeyError, TypeError, ValueError, AnnotationError) as exc:
        raise AnnotationError(path, f"The annotation sidecar is damaged ({exc}).") from exc
    return Annotations(boxes, labels, lines, areas)


# --- reading -----------------------------------------------------------------------------------

def read_sr(path: str | Path, volume: Any = None) -> Annotations:
    """(boxes, class labels, distance lines, area ROIs) saved by write_sr, or from any TID 1500
    SR (its area ROIs: rectangles and image-aligned ellipses with an Area measurement).

    With a matching sidecar the result is exactly what was saved. Without one, `volume` is
    needed to place the referenced images on slices, and the SR must reference that series.
    """
    path = Path(path)
    report = _report(path)
    sidecar = sidecar_path_for(path)
    if sidecar.exists():
        record = read_sidecar(sidecar)
        if record.get("sr_sop_instance_uid") == report.sop_uid:
            return annotations_from_sidecar(record, sidecar)
    if volume is None:
        raise AnnotationError(path, "This SR has no matching MedViewer sidecar; open it with "
                              "its series so its images can be placed on slices.")
    return _annotations_from_report(report, volume, path)


@dataclass
class _Report:
    sop_uid: str
    content: Any  # highdicom MeasurementReport
    dataset: Any


def _report(path: Path) -> _Report:
    import highdicom as hd

    try:
        sr = hd.sr.srread(path)
        report = hd.sr.MeasurementReport.from_sequence([sr])
    except Exception as exc:  # noqa: BLE001 - pydicom and highdicom raise many types here
        raise AnnotationError(path, f"This file is not a readable DICOM SR measurement report "
                              f"({type(exc).__name__}: {exc}).") from exc
    return _Report(str(sr.SOPInstanceUID), report, sr)


def _annotations_from_report(report: _Report, volume: Any, path: Path) -> Annotations:
    slice_of = _slices_of(volume)
    boxes, lines, labels, areas = [], [], [], []
    for group in report.content.get_planar_roi_measurement_groups():
        roi = group.roi
        if roi is None or not hasattr(roi, "value"):
            continue  # a segmentation or 3D region: not a box or line of this viewer
        k, uid = _placed(roi.ContentSequence[0], slice_of, path)
        k, points = _from_mosaic(volume, k, np.asarray(roi.value, float))
        area = sr_areas.area_from_group(group, str(roi.graphic_type.value), points, k, uid)
        if area is not None:
            areas.append(replace(area, label=_label(group, area.kind, AreaMeasurement.label)))
            continue
        length = _length(group)
        if length is not None and len(points) == 2:
            start, end = (tuple(float(v) for v in p) for p in points)
            lines.append(DistanceLine(k, start, end, length[0],
                                      _label(group, "distance", DistanceLine.label), uid,
                                      str(group.tracking_uid or _new_uid()), length[1]))
            continue
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        boxes.append(AnnotatedBox(float(x0), float(y0), float(x1), float(y1), k,
                                  _label(group, "box", "finding"), None, _source_of(group),
                                  ACCEPTED, uid, str(group.tracking_uid or _new_uid())))
    for group in report.content.get_image_measurement_groups():
        labels.extend(_class_labels(group, slice_of, path))
    return Annotations(boxes, labels, lines, areas)


def _new_uid() -> str:
    from pydicom.uid import generate_uid

    return generate_uid()


def _label(group: Any, prefix: str, default: str) -> str:
    """The group's finding as the label typed (see sr_codes.label_of); `default` without one."""
    if group.finding_type is None:
        return default
    return sr_codes.label_of(group.finding_type.meaning, group.tracking_identifier, prefix)


def _slices_of(volume: Any) -> dict[tuple[str, int | None], int]:
    """(SOP Instance UID, 1-based frame number) -> slice; frame None (a reference to the whole
    file) -> the slice of its frame 1, as other viewers show such a reference."""
    out: dict[tuple[str, int | None], int] = {}
    for k, source in enumerate(volume.sources):
        uid, frame = source.sop_instance_uid, int(getattr(source, "frame", 0)) + 1
        out[(uid, frame)] = k
        if frame == 1 or (uid, None) not in out:
            out[(uid, None)] = k
    return out


def _from_mosaic(volume: Any, k: int, points: np.ndarray) -> tuple[int, np.ndarray]:
    """A region on a Siemens mosaic image: the slice whose tile holds its centre, and the
    points in that tile's pixels (unchanged for any other image)."""
    sources = volume.sources
    if getattr(sources[k], "tile", None) is None:
        return k, points
    x, y = points.mean(axis=0)
    for j, source in enumerate(sources):
        top, left, rows, columns = source.tile or (0, 0, 0, 0)
        if source.sop_instance_uid == sources[k].sop_instance_uid and \
                left <= x < left + columns and top <= y < top + rows:
            return j, points - (left, top)
    return k, points


def _placed(source_item: Any, slice_of: dict[tuple[str, int | None], int],
            path: Path) -> tuple[int, str]:
    """(slice, SOP Instance UID) of the image (and frame) an SR item references."""
    ref = source_item.ReferencedSOPSequence[0]
    uid = str(ref.ReferencedSOPInstanceUID)
    from pydicom.multival import MultiValue  # pydicom loads on first use, not at start-up

    frames = ref.get("ReferencedFrameNumber")  # IS, VM 1-n: a number or a list of them
    frames = [] if frames is None or frames == "" else \
        list(frames) if isinstance(frames, MultiValue) else [frames]
    frame = int(frames[0]) if frames else None
    if (uid, None) not in slice_of:
        raise AnnotationError(path, "The SR references an image that is not in this series: "
                              "it belongs to another series.")
    if (uid, frame) not in slice_of:
        raise AnnotationError(path, f"The SR references frame {frame} of an image that has "
                              "no such frame in this series.")
    return slice_of[(uid, frame)], uid


def _length(group: Any) -> tuple[float, str] | None:
    """(length, 'mm' or 'px') of a ruler: lengths in other UCUM units than lengths are px."""
    for m in group.get_measurements():
        if m.name.value == _LENGTH:
            scale = _LENGTH_UNITS.get(str(m.unit.value))
            return (float(m.value) * scale, MM) if scale else (float(m.value), PX)
    return None


def _source_of(group: Any) -> str:
    """'model:<name>@<version>' from the group's algorithm identification, else annotator."""
    found = {}
    for item in group[0].ContentSequence:
        code = item.ConceptNameCodeSequence[0].CodeValue
        if code in ("111001", "111003") and hasattr(item, "TextValue"):
            found[code] = str(item.TextValue)
    if "111001" in found:
        return f"model:{found['111001']}@{found.get('111003', '')}"
    return ANNOTATOR


def _class_labels(group: Any, slice_of: dict[tuple[str, int | None], int],
                  path: Path) -> list[ClassLabel]:
    images = group.source_images
    k, uid = _placed(images[0], slice_of, path) if images else (None, "")
    scope = SLICE if images else SERIES
    return [ClassLabel(sr_codes.label_of(q.value.meaning, group.tracking_identifier,
                                         f"{scope} class"), _source_of(group), scope, k, uid,
                       None, str(group.tracking_uid or _new_uid()))
            for q in group.get_qualitative_evaluations()]


def read_provenance(path: str | Path) -> Provenance:
    """Annotator (person observer), model (device observer) and save time of an SR."""
    path = Path(path)
    report = _report(path)
    annotator, model = "", None
    for ctx in report.content.get_observer_contexts():
        attrs = ctx.observer_identifying_attributes
        if ctx.observer_type.value == "121006":  # DCM Person
            annotator = str(attrs.name).rstrip("^")
        elif ctx.observer_type.value == "121007":  # DCM Device
            model = f"model:{attrs.name}@{attrs.model_name or ''}"
    ds = report.dataset
    saved = dt.datetime.strptime(f"{ds.ContentDate}{str(ds.ContentTime)[:6]}", "%Y%m%d%H%M%S")
    return Provenance(annotator, model, saved.isoformat())
