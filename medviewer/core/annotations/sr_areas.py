"""Area ROIs (rectangle, ellipse) in a TID 1500 measurement group, and back (highdicom).

One group per ROI (TID 1410 Planar ROI Measurements): its outline on the source image as
SCOORD in pixel coordinates, then TID 1419 ROI measurements:

- Area (SCT 42798000) in UCUM mm2, or UCUM {square pixels} when the series gives no pixel
  size;
- Mean, Standard Deviation, Minimum, Maximum of the pixel values as one quantity with a
  Derivation modifier (DCM 121401; SCT 373098007, 386136009, 255605001, 56851009), the way
  dcmqi writes them, where the modality names the quantity: Attenuation Coefficient in HU
  (UCUM [hnsf'U]) for CT, MR signal intensity for MR. Other modalities (an X-ray's pixel
  values have no standard quantity) get the statistics as measurements of their own (SCT
  Mean, ...), the OHIF way, rather than a private code; units UCUM 1 when none is known.
  Colour images have no modality values: area only.

A rectangle is a closed POLYLINE of 5 points (SCOORD has no POLYGON: a polyline whose last
point is its first is the closed one); an ellipse is an ELLIPSE with the end points of its
major then its minor axis. Readers also find statistics named Mean / Minimum / ... directly
(the OHIF / dcmjs way), so their SRs open too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from medviewer.core.annotations import sr_codes
from medviewer.core.annotations.boxes import ELLIPSE, MM2, PX2, RECT, AreaMeasurement

AREA = "42798000"  # SCT Area
STATISTICS = {"373098007": "mean", "386136009": "sd", "255605001": "minimum",
              "56851009": "maximum"}  # SCT Mean, Standard Deviation, Minimum, Maximum
_NO_UNIT = "1"


def outline(area: AreaMeasurement) -> tuple[str, np.ndarray]:
    """(SCOORD graphic type, (n, 2) points) of the ROI in pixel coordinates."""
    x0, y0, x1, y1 = area.corners
    if area.kind == RECT:
        return "POLYLINE", np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    across, down = [[x0, cy], [x1, cy]], [[cx, y0], [cx, y1]]
    major_first = across + down if x1 - x0 >= y1 - y0 else down + across
    return "ELLIPSE", np.array(major_first)


def corners_of(graphic_type: str, points: np.ndarray) -> tuple[str, tuple, tuple] | None:
    """(kind, p0, p1) of an outline read from an SR; None when it is no rectangle or ellipse
    (the ellipse's axes must be those of the image: only those are drawn and measured)."""
    points = np.asarray(points, float)
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    corners = ((float(x0), float(y0)), (float(x1), float(y1)))
    if graphic_type == "ELLIPSE" and len(points) == 4:
        return ELLIPSE, *corners
    if graphic_type == "POLYLINE" and len(points) == 5 and np.allclose(points[0], points[-1]):
        on_edges = np.isclose(points[:, 0], x0) | np.isclose(points[:, 0], x1)
        on_edges &= np.isclose(points[:, 1], y0) | np.isclose(points[:, 1], y1)
        return (RECT, *corners) if on_edges.all() else None
    return None


# --- writing ---------------------------------------------------------------------------------

def measurements(area: AreaMeasurement, modality: str = "") -> list[Any]:
    """highdicom Measurements of the ROI: area, then mean, SD, minimum, maximum when known."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    area_unit = codes.UCUM.SquareMillimeter if area.area_unit == MM2 else \
        sr_codes.unit_code(sr_codes.SQUARE_PIXELS)
    out = [hd.sr.Measurement(name=codes.SCT.Area, value=float(area.area), unit=area_unit)]
    derived = ((codes.SCT.Mean, area.mean), (codes.SCT.StandardDeviation, area.sd),
               (codes.SCT.Minimum, area.minimum), (codes.SCT.Maximum, area.maximum))
    quantity, unit = _quantity(area.units, modality), _unit(area.units)
    out += [hd.sr.Measurement(name=quantity or how, value=float(value), unit=unit,
                              derivation=how if quantity else None)
            for how, value in derived if value is not None]
    return out


def _quantity(units: str, modality: str) -> Any:
    """The quantity the statistics derive from; None when the modality names none."""
    from pydicom.sr.codedict import codes

    if units == "HU":
        return codes.DCM.AttenuationCoefficient
    if modality == "MR":
        return codes.DCM.MRSignalIntensity
    return None


def _unit(units: str) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if units == "HU":
        return codes.UCUM.HounsfieldUnit
    if not units:
        return codes.UCUM.NoUnits
    return hd.sr.CodedConcept(units, "UCUM", units)  # e.g. a PET's Bq/mL


# --- reading ---------------------------------------------------------------------------------

def area_from_group(group: Any, graphic_type: str, points: np.ndarray, slice_index: int,
                    sop_instance_uid: str) -> AreaMeasurement | None:
    """The group's area ROI: a rectangle or ellipse outline with an Area measurement; None
    for any other planar ROI group (a box, a ruler)."""
    from pydicom.uid import generate_uid

    stats = statistics(group)
    shape = corners_of(graphic_type, points)
    if stats is None or shape is None:
        return None
    kind, p0, p1 = shape
    label = group.finding_type.meaning if group.finding_type else "area"
    return AreaMeasurement(slice_index, kind, p0, p1, **stats, label=label,
                           sop_instance_uid=sop_instance_uid,
                           uid=str(group.tracking_uid or generate_uid()))


def statistics(group: Any) -> dict[str, Any] | None:
    """Area, its unit and the pixel statistics of a planar ROI group; None without an area."""
    found: dict[str, Any] = {}
    for m in group.get_measurements():
        name = m.name.value
        if name == AREA and "area" not in found:
            scale = {"mm2": 1.0, "cm2": 100.0}.get(m.unit.value)
            found["area"] = float(m.value) * (scale or 1.0)
            found["area_unit"] = MM2 if scale else PX2
            continue
        derivation = m.derivation.value if m.derivation is not None else None
        key = STATISTICS.get(derivation or name)  # dcmqi's modifier, or OHIF's name
        if key and key not in found and math.isfinite(float(m.value)):
            found[key] = float(m.value)
            found["units"] = _units_of(m.unit.value)
    return found if "area" in found else None


def _units_of(ucum: str) -> str:
    return {"[hnsf'U]": "HU", _NO_UNIT: ""}.get(ucum, ucum)
