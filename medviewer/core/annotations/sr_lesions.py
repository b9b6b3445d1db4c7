"""Lesions (core.lesions) as TID 1500 measurement groups, and back (highdicom).

One TID 1411 Volumetric ROI group per lesion:

- Tracking Identifier ("nodule 1") and Tracking Unique Identifier: kept across saves, so a
  later report of the same lesion can be followed (`track_against` matches the lesions about
  to be saved with those of the SR already at that path, by label and centre);
- the ROI: the lesion's centre as an SCOORD3D POINT in the series' frame of reference, with
  the image its diameters are measured on as source;
- Finding type: the label's code (as the SEG codes it: "nodule" -> SCT 27925004 Nodule);
  Finding site: the label around the lesion ("lung" -> SCT 39607008 Lung), with laterality
  from the centre's side for a paired organ;
- measurements: Volume (SCT 118565006, UCUM ml), Long axis (SCT 103339001, mm), Short axis
  (SCT 103340004, mm), and on CT the mean attenuation (DCM Attenuation Coefficient, Mean
  derivation, UCUM [hnsf'U]).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medviewer.core.annotations import sr_codes
from medviewer.core.lesions import Lesion, keep_tracking

PAIRED_SITES = {"lung", "kidney", "breast", "adrenal gland", "ovary", "eye", "lobe of lung"}
VOLUME, LONG_AXIS, SHORT_AXIS = "118565006", "103339001", "103340004"


def lesion_group(lesion: Lesion, ref: Any, modality: str, algorithm: Any = None) -> Any:
    """The TID 1411 group of one lesion; `ref` is the evidence of its measured image."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    source = hd.sr.SourceImageForSegmentation(str(ref.header.SOPClassUID),
                                              str(ref.header.SOPInstanceUID), ref.frames)
    centre = hd.sr.VolumeSurface(
        graphic_type=hd.sr.GraphicTypeValues3D.POINT,
        graphic_data=np.asarray([lesion.centre_lps], np.float32),
        frame_of_reference_uid=str(ref.header.FrameOfReferenceUID), source_images=[source])
    mm = codes.UCUM.Millimeter
    measurements = [
        hd.sr.Measurement(name=codes.SCT.Volume, value=float(lesion.volume_ml),
                          unit=hd.sr.CodedConcept("ml", "UCUM", "milliliter")),
        hd.sr.Measurement(name=codes.SCT.LongAxis, value=float(lesion.long_axis_mm), unit=mm),
        hd.sr.Measurement(name=codes.SCT.ShortAxis, value=float(lesion.short_axis_mm), unit=mm)]
    if lesion.mean_value is not None and modality == "CT":
        measurements.append(hd.sr.Measurement(
            name=codes.DCM.AttenuationCoefficient, value=float(lesion.mean_value),
            unit=codes.UCUM.HounsfieldUnit, derivation=codes.SCT.Mean))
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=lesion.tracking_uid or None, identifier=(lesion.tracking_id or lesion.name)[:64]),
        referenced_volume_surface=centre, finding_type=sr_codes.label_code(lesion.label),
        finding_sites=_sites(lesion), measurements=measurements, algorithm_id=algorithm)


def _sites(lesion: Lesion) -> list[Any] | None:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if not lesion.site:
        return None
    laterality = None
    if lesion.site.strip().lower() in PAIRED_SITES:  # LPS: +x is the patient's left
        laterality = codes.SCT.Left if lesion.centre_lps[0] > 0 else codes.SCT.Right
    return [hd.sr.FindingSite(sr_codes.label_code(lesion.site), laterality=laterality)]


def read_lesions(path: str | Path) -> list[Lesion]:
    """The lesions of an SR's volumetric groups with a POINT centre: label, centre, tracking
    and measurements (what `keep_tracking` and a reader need; no pixel positions)."""
    import highdicom as hd

    from medviewer.core.annotations.seg import AnnotationError

    try:
        report = hd.sr.MeasurementReport.from_sequence([hd.sr.srread(path)])
        groups = report.get_volumetric_roi_measurement_groups()
    except Exception as exc:  # noqa: BLE001 - pydicom and highdicom raise many types here
        raise AnnotationError(path, f"This file is not a readable DICOM SR measurement report "
                              f"({type(exc).__name__}: {exc}).") from exc
    return [lesion for g in groups if (lesion := _lesion_of(g)) is not None]


def _lesion_of(group: Any) -> Lesion | None:
    roi = group.roi
    if roi is None or str(roi.graphic_type.value) != "POINT" or group.finding_type is None:
        return None
    values = {m.name.value: float(m.value) for m in group.get_measurements()}
    centre = tuple(float(v) for v in np.asarray(roi.graphic_data, float).reshape(-1)[:3])
    identifier = str(group.tracking_identifier or "")
    label = sr_codes.label_of(group.finding_type.meaning, identifier.rsplit(" ", 1)[0], "")
    return Lesion(label=label.strip(), value=0, number=0, voxels=0,
                  volume_ml=values.get(VOLUME, 0.0), long_axis_mm=values.get(LONG_AXIS, 0.0),
                  short_axis_mm=values.get(SHORT_AXIS, 0.0), slice_index=0,
                  key_point=(0.0, 0.0), centre_voxel=(0.0, 0.0, 0.0), centre_lps=centre,
                  mean_value=None, long_axis=((0, 0), (0, 0)), short_axis=((0, 0), (0, 0)),
                  tracking_uid=str(group.tracking_uid or ""), tracking_id=identifier)


def track_against(path: str | Path, lesions: Sequence[Lesion]) -> list[Lesion]:
    """`lesions` with the tracking identifiers of the same lesions in the SR at `path` (a
    save over an earlier one); new lesions, or no readable SR there, get new ones."""
    from medviewer.core.annotations.seg import AnnotationError

    previous: list[Lesion] = []
    if Path(path).exists():
        try:
            previous = read_lesions(path)
        except AnnotationError:
            previous = []  # not ours to read: the save itself decides whether to replace it
    return keep_tracking(lesions, previous)
