"""Boxes, distance lines, area ROIs and class labels as DICOM SR (TID 1500) + a JSON sidecar.

    write_sr(path, volume, box_set, lines, annotator="Jane Doe", model="m@1", areas=rois)
    read_sr(path, volume) -> Annotations(boxes, class_labels, lines, areas)
    read_provenance(path) -> Provenance (annotator, model, saved_at)

The SR is the standard part that 3D Slicer or OHIF open: a Comprehensive 3D SR holding a
Measurement Report whose groups reference the source images; a box is a closed 5-point
POLYLINE in pixel coordinates, a distance a 2-point POLYLINE with its length (mm, or UCUM
{pixels} on an image without pixel size), an area ROI its outline with area, mean, SD, min and
max (see sr_areas), a lesion of a segmentation its volume, diameters, centre and tracking
identifiers (see sr_lesions), a class label a qualitative evaluation (of one image, or of the series
when it names no image). Every reference to an image of a multi-frame file names its frame.
Labels are coded as the SEG codes them and the procedure follows the source (see sr_codes).
Rejected model boxes are no findings, so they stay out of the SR.

What SR cannot hold cleanly (a model's score, a box's proposed/accepted/rejected state,
rejected boxes, exact float64 coordinates: SR stores float32) goes into a JSON sidecar beside
it (same stem, `.json`). The sidecar names the SR's SOP Instance UID: when it matches, it is
the complete record; when it is missing or stale, the SR alone is read (scores None, boxes
accepted) so an SR made or changed elsewhere still opens (see sr_read, whose names this module
also gives). Both saves are atomic.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from medviewer.core.annotations import sr_areas, sr_codes, sr_lesions, sr_ratios
from medviewer.core.annotations.boxes import (
    ANNOTATOR,
    MM,
    REJECTED,
    SLICE,
    AnnotatedBox,
    AreaMeasurement,
    BoxSet,
    ClassLabel,
    DistanceLine,
)
from medviewer.core.annotations.seg import (
    DEFAULT_MANUFACTURER,
    AnnotationError,
    check_unique_images,
    person_name,
)
from medviewer.core.annotations.sr_ratios import RatioFinding
from medviewer.core.annotations.sr_read import (  # reading lives there; these names stay here
    SIDECAR_FORMAT,
    SIDECAR_VERSION,
    Annotations,
    Provenance,
    annotations_from_sidecar,
    read_provenance,
    read_sidecar,
    read_sr,
    sidecar_path_for,
)
from medviewer.core.atomic import atomic_file, write_text_atomic
from medviewer.core.lesions import Lesion

__all__ = ["SIDECAR_FORMAT", "SIDECAR_VERSION", "Annotations", "Provenance",
           "annotations_from_sidecar", "read_provenance", "read_sidecar", "read_sr",
           "sidecar_path_for", "write_sr"]


# --- writing -----------------------------------------------------------------------------------

def write_sr(path: str | Path, volume: Any, boxes: BoxSet | Iterable[AnnotatedBox],
             measurements: Iterable[DistanceLine] = (), *, annotator: str,
             model: str | None = None, class_labels: Iterable[ClassLabel] | None = None,
             saved_at: dt.datetime | None = None, series_number: int = 901,
             areas: Iterable[AreaMeasurement] = (), lesions: Iterable[Lesion] = (),
             ratios: Iterable[RatioFinding] = ()) -> Path:
    """Save as SR + sidecar; class labels default to those of a BoxSet. `measurements` are
    the distance lines (rulers), `areas` the rectangle / ellipse ROIs, `lesions` a
    segmentation's lesions (core.lesions; see sr_lesions: their tracking identifiers are
    written as given), `ratios` ratios such as the cardiothoracic ratio (see sr_ratios)."""
    boxes_in = list(boxes)
    labels = list(boxes.class_labels if class_labels is None and isinstance(boxes, BoxSet)
                  else class_labels or ())
    measurements, areas, lesions = list(measurements), list(areas), list(lesions)
    ratios = list(ratios)
    when = (saved_at or dt.datetime.now().astimezone()).replace(microsecond=0)
    check_unique_images(volume, path)
    refs = _evidence(volume, boxes_in, labels, [*measurements, *areas, *lesions, *ratios])
    modality = str(getattr(volume, "modality", "") or "")
    try:  # highdicom checks each item: what it refuses is a message, not a crash
        groups = ([_box_group(b, refs) for b in boxes_in if b.state != REJECTED]
                  + [_line_group(m, refs) for m in measurements]
                  + [_area_group(a, refs, modality) for a in areas]
                  + [_label_group(c, refs) for c in labels]
                  + [sr_lesions.lesion_group(les, refs[les.slice_index], modality,
                                             _algorithm(model) if model else None)
                     for les in lesions]
                  + [sr_ratios.ratio_group(r, refs[r.slice_index],
                                           _algorithm(model) if model else None)
                     for r in ratios]) or [_empty_group()]
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


# Storage classes whose IOD has no Multi-frame module: a reference to one of their images may
# not carry ReferencedFrameNumber (dciodvfy: "Shall not be present for Referenced SOP Class
# that is not multi-frame"), even when the file, against its IOD, holds several frames (an MR
# Image with NumberOfFrames, like pydicom's emri_small). Such a finding names the image only;
# its slice is kept in the JSON sidecar, and the SR alone puts it on the first frame.
SINGLE_FRAME_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.1",  # CR
    "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1.1",  # DX
    "1.2.840.10008.5.1.4.1.1.1.2", "1.2.840.10008.5.1.4.1.1.1.2.1",  # MG
    "1.2.840.10008.5.1.4.1.1.1.3", "1.2.840.10008.5.1.4.1.1.1.3.1",  # IO
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image
    "1.2.840.10008.5.1.4.1.1.4",  # MR Image
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture (single-frame)
    "1.2.840.10008.5.1.4.1.1.128",  # PET Image
})


def _evidence(volume: Any, boxes: list[AnnotatedBox], labels: list[ClassLabel],
              measured: list[DistanceLine | AreaMeasurement | Lesion | RatioFinding]
              ) -> dict[int, _Ref]:
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
        multi = (int(header.get("NumberOfFrames", 1) or 1) > 1
                 and str(header.get("SOPClassUID", "")) not in SINGLE_FRAME_CLASSES)
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
