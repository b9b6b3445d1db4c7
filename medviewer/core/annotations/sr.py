"""Boxes, distance lines, area ROIs and class labels as DICOM SR (TID 1500) + a JSON sidecar.

    write_sr(path, volume, box_set, lines, annotator="Jane Doe", model="m@1", areas=rois)
    read_sr(path, volume) -> Annotations(boxes, class_labels, lines, areas)
    read_provenance(path) -> Provenance (annotator, model, saved_at)

The SR is the standard part that 3D Slicer or OHIF open: a Comprehensive 3D SR holding a
Measurement Report whose groups reference the source images; a box is a closed 5-point
POLYLINE in pixel coordinates, a distance a 2-point POLYLINE with its length (mm, or UCUM
{pixels} on an image without pixel size), an area ROI its outline with area, mean, SD, min and
max (see sr_areas), a class label a qualitative evaluation (of one image, or of the series
when it names no image). Every reference to an image of a multi-frame file names its frame.
Labels are coded as the SEG codes them (see sr_codes); the procedure follows the modality.
Rejected model boxes are no findings, so they stay out of the SR.

What SR cannot hold cleanly (a model's score, a box's proposed/accepted/rejected state,
rejected boxes, exact float64 coordinates: SR stores float32) goes into a JSON sidecar beside
it (same stem, `.json`). The sidecar names the SR's SOP Instance UID: when it matches, it is
the complete record; when it is missing or stale, the SR alone is read (scores None, boxes
accepted) so an SR made or changed elsewhere still opens. Both saves are atomic.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pydicom.multival import MultiValue

from medviewer.core.annotations import sr_areas, sr_codes
from medviewer.core.annotations.boxes import (
    ACCEPTED,
    ANNOTATOR,
    MM,
    PX,
    REJECTED,
    SERIES,
    SLICE,
    AnnotatedBox,
    AreaMeasurement,
    BoxSet,
    ClassLabel,
    DistanceLine,
    area_from_dict,
)
from medviewer.core.annotations.seg import DEFAULT_MANUFACTURER, AnnotationError, person_name
from medviewer.core.atomic import atomic_file, write_text_atomic

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


def sidecar_path_for(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


# --- writing -----------------------------------------------------------------------------------

def write_sr(path: str | Path, volume: Any, boxes: BoxSet | Iterable[AnnotatedBox],
             measurements: Iterable[DistanceLine] = (), *, annotator: str,
             model: str | None = None, class_labels: Iterable[ClassLabel] | None = None,
             saved_at: dt.datetime | None = None, series_number: int = 901,
             areas: Iterable[AreaMeasurement] = ()) -> Path:
    """Save as SR + sidecar; class labels default to those of a BoxSet. `measurements` are
    the distance lines (rulers), `areas` the rectangle / ellipse ROIs."""
    boxes_in = list(boxes)
    labels = list(boxes.class_labels if class_labels is None and isinstance(boxes, BoxSet)
                  else class_labels or ())
    measurements, areas = list(measurements), list(areas)
    when = (saved_at or dt.datetime.now().astimezone()).replace(microsecond=0)
    refs = _evidence(volume, boxes_in, labels, [*measurements, *areas])
    modality = str(getattr(volume, "modality", "") or "")
    try:  # highdicom checks each item: what it refuses is a message, not a crash
        groups = ([_box_group(b, refs) for b in boxes_in if b.state != REJECTED]
                  + [_line_group(m, refs) for m in measurements]
                  + [_area_group(a, refs, modality) for a in areas]
                  + [_label_group(c, refs) for c in labels]) or [_empty_group()]
    except (ValueError, TypeError, AttributeError) as exc:
        raise AnnotationError(path, f"The annotations cannot be encoded as DICOM SR ({exc})."
                              ) from exc
    evidence = list({str(r.header.SOPInstanceUID): r.header for r in refs.values()}.values())
    sr = _document(volume, groups, evidence, annotator, model, when, series_number, Path(path))
    path = Path(path)
    with atomic_file(path) as f:
        sr.save_as(f, enforce_file_format=True)
    _write_sidecar(path, sr.SOPInstanceUID, volume,
                   Annotations(boxes_in, labels, measurements, areas),
                   Provenance(annotator, model, when.isoformat()))
    return path


class _Ref(NamedTuple):
    """The image a slice is: its file's header and, in a multi-frame file, its frame."""

    header: Any
    frames: list[int] | None  # [1-based frame number], None for a single-frame image
    # (column, row) of the slice's first pixel in the stored image: a Siemens mosaic tile's
    # place in its grid, so the SCOORDs are right on the image the SR references
    offset: tuple[int, int] = (0, 0)


def _evidence(volume: Any, boxes: list[AnnotatedBox], labels: list[ClassLabel],
              measured: list[DistanceLine | AreaMeasurement]) -> dict[int, _Ref]:
    """The images of the slices the content references (the first slice when none is)."""
    slices = {b.slice_index for b in boxes if b.state != REJECTED}
    slices |= {m.slice_index for m in measured}
    slices |= {c.slice_index for c in labels if c.scope == SLICE}
    sources = list(getattr(volume, "sources", None) or [])
    if not sources:
        raise AnnotationError(None, "The series does not list its source files; reload it "
                              "from disk before saving annotations.")
    headers: dict[str, Any] = {}  # a multi-frame file is read once
    out = {}
    for k in sorted(slices) or [0]:
        if not 0 <= k < len(sources):
            raise AnnotationError(None, f"An annotation lies on slice {k + 1}, but the series "
                                  f"has {len(sources)} slices.")
        path = sources[k].path
        header = headers[path] = headers.get(path) or _header(path)
        multi = int(header.get("NumberOfFrames", 1) or 1) > 1
        tile = getattr(sources[k], "tile", None)  # (top, left, rows, columns)
        out[k] = _Ref(header, [int(sources[k].frame) + 1] if multi else None,
                      (tile[1], tile[0]) if tile else (0, 0))
    return out


def _header(path: str) -> Any:
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (OSError, ValueError, EOFError) as exc:
        raise AnnotationError(path, f"The source image cannot be read ({exc}); the SR must "
                              "reference it, so restore the series.") from exc


def _algorithm(source: str) -> Any:
    import highdicom as hd

    if source == ANNOTATOR:
        return None
    name, _, version = source.removeprefix("model:").rpartition("@")
    return hd.sr.AlgorithmIdentification(name=name[:64], version=version[:64])


def _tracking(uid: str, text: str) -> Any:
    import highdicom as hd

    return hd.sr.TrackingIdentifier(uid=uid, identifier=text)


def _region(points: np.ndarray, ref: _Ref, graphic_type: str = "POLYLINE") -> Any:
    import highdicom as hd

    # not from_source_image: it refuses frame numbers in a single-frame SOP class's file
    # (an MR Image holding several frames), where the frame is what places the slice
    source = hd.sr.SourceImageForRegion(str(ref.header.SOPClassUID),
                                        str(ref.header.SOPInstanceUID), ref.frames)
    return hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues(graphic_type),
                             graphic_data=(points + ref.offset).astype(np.float32),
                             source_image=source)


def _box_group(box: AnnotatedBox, refs: dict[int, _Ref]) -> Any:
    import highdicom as hd

    corners = np.array([[box.x0, box.y0], [box.x1, box.y0], [box.x1, box.y1], [box.x0, box.y1],
                        [box.x0, box.y0]])
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(box.uid, f"box {box.label}"[:64]),
        referenced_region=_region(corners, refs[box.slice_index]),
        finding_type=sr_codes.label_code(box.label), algorithm_id=_algorithm(box.source))


def _line_group(line: DistanceLine, refs: dict[int, _Ref]) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    unit = codes.UCUM.Millimeter if line.unit == MM else sr_codes.unit_code(sr_codes.PIXELS)
    length = hd.sr.Measurement(name=codes.SCT.Length, value=float(line.length_mm), unit=unit)
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(line.uid, f"distance {line.label}"[:64]),
        referenced_region=_region(np.array([line.start, line.end]), refs[line.slice_index]),
        finding_type=_finding(line.label, DistanceLine.label), measurements=[length])


def _area_group(area: AreaMeasurement, refs: dict[int, _Ref], modality: str) -> Any:
    import highdicom as hd

    graphic_type, points = sr_areas.outline(area)
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(area.uid, f"{area.kind} {area.label}"[:64]),
        referenced_region=_region(points, refs[area.slice_index], graphic_type),
        finding_type=_finding(area.label, AreaMeasurement.label),
        measurements=sr_areas.measurements(area, modality))


def _finding(label: str, default: str) -> Any:
    """A ruler or ROI left with its default name ('distance', 'area') names no finding."""
    return None if label == default else sr_codes.label_code(label)


def _label_group(label: ClassLabel, refs: dict[int, _Ref]) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    images = None
    if label.scope == SLICE:
        ref = refs[label.slice_index]
        images = [hd.sr.SourceImageForMeasurementGroup(
            str(ref.header.SOPClassUID), str(ref.header.SOPInstanceUID), ref.frames)]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(label.uid, f"{label.scope} class {label.label}"[:64]),
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(codes.SCT.Classification,
                                                             sr_codes.label_code(label.label))],
        algorithm_id=_algorithm(label.source), source_images=images)


def _empty_group() -> Any:
    """TID 1500 needs one group: an empty one says 'reviewed, nothing to report' (and keeps
    the rejected boxes' sidecar next to a valid SR)."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(generate_uid(), "no findings"))


def _observers(annotator: str, model: str | None) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    person = hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
            name=person_name(annotator)))
    device = None
    if model:
        name, _, version = model.removeprefix("model:").rpartition("@")
        device = hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=generate_uid(entropy_srcs=[model]), name=(name or model)[:64],
                model_name=version[:64] or None, manufacturer_name=DEFAULT_MANUFACTURER))
    return hd.sr.ObservationContext(observer_person_context=person,
                                    observer_device_context=device)


def _document(volume: Any, groups: list[Any], evidence: list[Any], annotator: str,
              model: str | None, when: dt.datetime, series_number: int, path: Path) -> Any:
    import highdicom as hd

    from medviewer import __version__

    procedure = sr_codes.procedure_code(str(getattr(volume, "modality", "") or ""),
                                        str(evidence[0].get("BodyPartExamined", "") or ""),
                                        evidence[0])
    try:
        report = hd.sr.MeasurementReport(
            observation_context=_observers(annotator, model), procedure_reported=procedure,
            imaging_measurements=groups)
        sr = hd.sr.Comprehensive3DSR(
            evidence=evidence, content=report, series_instance_uid=hd.UID(),
            series_number=series_number, sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer=DEFAULT_MANUFACTURER, series_description="Annotations",
            software_versions=__version__, content_date=when.date(),
            content_time=when.time().replace(tzinfo=None))
    except (ValueError, TypeError, AttributeError) as exc:
        raise AnnotationError(path, f"The annotations cannot be encoded as DICOM SR ({exc})."
                              ) from exc
    sr_codes.declare_private_scheme(sr)
    return sr


# --- the JSON sidecar --------------------------------------------------------------------------

def _write_sidecar(path: Path, sr_uid: str, volume: Any, content: Annotations,
                   provenance: Provenance) -> Path:
    series = getattr(volume, "series", None)
    record = {
        "format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "sr_sop_instance_uid": sr_uid,
        "series_instance_uid": getattr(series, "series_instance_uid", ""),
        "study_instance_uid": getattr(series, "study_instance_uid", ""),
        **asdict(provenance),
        "boxes": [asdict(b) for b in content.boxes],
        "class_labels": [asdict(c) for c in content.class_labels],
        "measurements": [asdict(m) for m in content.lines],
        "areas": [asdict(a) for a in content.areas],  # absent from sidecars before areas
    }
    return write_text_atomic(sidecar_path_for(path), json.dumps(record, indent=1) + "\n")


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The sidecar's record; AnnotationError when it is not one of ours."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
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
