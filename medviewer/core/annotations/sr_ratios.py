"""A ratio measured on one image (lab 5's cardiothoracic ratio) as a TID 1500 measurement group.

One TID 1501 group per ratio (highdicom's MeasurementsAndQualitativeEvaluations):

- Tracking Identifier ("cardiothoracic ratio") and a Tracking Unique Identifier derived from
  the image and the ratio's name, so saving the same film's ratio again keeps it;
- the image it was measured on as the group's source, and the finding site (SCT Heart);
- the measurement: the ratio (UCUM {ratio}) with the segments it was measured along (the
  heart's width and the thorax's) as SCOORD POLYLINEs on that image.

The ratio's concept name: neither pydicom's nor highdicom's code dictionaries hold a code for
the cardiothoracic ratio of a chest film (their LOINC 59074-5 / 59076-0 are fetal circumference
and area ratios of CID 12279), so it is coded in the viewer's private scheme (sr_codes), its
meaning the ratio's name, as the viewer codes any label SNOMED does not name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medviewer.core.annotations import sr_codes

Segment = tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class RatioFinding:
    """A ratio on slice `slice_index`: value, the segments measured ((x0, y0), (x1, y1) in
    pixels of the slice), and the anatomy it is about (a label the SEG codes: "heart")."""

    name: str
    value: float
    slice_index: int = 0
    lines: tuple[Segment, ...] = ()
    site: str = "heart"

    def tracking_uid(self, sop_instance_uid: str) -> str:
        from pydicom.uid import generate_uid

        return generate_uid(entropy_srcs=[sop_instance_uid, self.name])


def ratio_group(ratio: RatioFinding, ref: Any, algorithm: Any = None) -> Any:
    """The TID 1501 group of one ratio; `ref` is the evidence of its image (sr._Ref)."""
    import highdicom as hd

    sop_class, sop_uid = str(ref.header.SOPClassUID), str(ref.header.SOPInstanceUID)
    lines = [hd.sr.CoordinatesForMeasurement(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=(np.asarray(segment, np.float64) + ref.offset).astype(np.float32),
        source_image=hd.sr.SourceImageForRegion(sop_class, sop_uid, ref.frames))
        for segment in ratio.lines]
    measurement = hd.sr.Measurement(
        name=sr_codes.label_code(ratio.name), value=float(ratio.value),
        unit=sr_codes.unit_code(("{ratio}", "UCUM", "ratio")),
        referenced_coordinates=lines or None)
    sites = [hd.sr.FindingSite(sr_codes.label_code(ratio.site))] if ratio.site else None
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=ratio.tracking_uid(sop_uid),
                                                     identifier=ratio.name.lower()[:64]),
        measurements=[measurement], finding_sites=sites, algorithm_id=algorithm,
        source_images=[hd.sr.SourceImageForMeasurementGroup(sop_class, sop_uid, ref.frames)])
