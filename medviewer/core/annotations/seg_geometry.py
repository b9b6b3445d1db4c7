"""The geometry a DICOM SEG copies from its source images, made right for every kind of source.

highdicom copies the Pixel Measures of the first source image into the SEG. Real images break
that in three ways, each fixed here on the headers read for the save (never in the files):

- a projection X-ray (DX, CR: no ImageOrientationPatient) has PixelSpacing but no
  SliceThickness, and a Pixel Measures item without SliceThickness cannot be read back
  (highdicom refuses it, dciodvfy flags it); a CR may say `0\\0`. Such a SEG carries no Pixel
  Measures: its frames lie on the referenced image, which keeps its own spacing. The SEG gets
  the source's PatientOrientation instead (Type 2C without a plane orientation).
- a cross-sectional image with an empty SliceThickness (Type 2) gets the slice step, as
  SliceThickness is Type 1C in the SEG's Pixel Measures; one without a usable PixelSpacing
  (itself invalid) is refused with that reason (ValueError) rather than copied.
- SpacingBetweenSlices is the step between the referenced planes when they are evenly spaced,
  measured from their positions, and absent otherwise (a series with gaps), never a header's
  value copied onto planes it does not describe.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from medviewer.core.dicom.checks import usable_spacing

_STEP_TOLERANCE = 0.01  # relative: steps within 1 % of each other are "evenly spaced"


def prepare_sources(datasets: Sequence[Any], slice_step: float) -> None:
    """Make the source headers (read for this save only) ones that highdicom turns into a
    readable, valid SEG; ValueError, with the reason, for a source no valid SEG can have."""
    for ds in datasets:
        if "SharedFunctionalGroupsSequence" in ds:
            _prepare_enhanced(ds, slice_step)
        elif "ImageOrientationPatient" in ds:
            _check_spacing(ds.get("PixelSpacing"))
            if not _positive(ds.get("SliceThickness")):
                ds.SliceThickness = _ds(slice_step)
        else:  # a projection image: its frames are placed by reference, not by geometry
            for keyword in ("PixelSpacing", "SpacingBetweenSlices"):
                if keyword in ds:
                    delattr(ds, keyword)


def _prepare_enhanced(ds: Any, slice_step: float) -> None:
    """The shared Pixel Measures highdicom reads: from the first frame when only per-frame
    groups hold them, with a SliceThickness."""
    shared = ds.SharedFunctionalGroupsSequence[0]
    if "PixelMeasuresSequence" not in shared:
        frames = ds.get("PerFrameFunctionalGroupsSequence") or []
        measures = frames[0].get("PixelMeasuresSequence") if frames else None
        if not measures:
            return
        shared.PixelMeasuresSequence = copy.deepcopy(measures)
    item = shared.PixelMeasuresSequence[0]
    _check_spacing(item.get("PixelSpacing"))
    if not _positive(item.get("SliceThickness")):
        item.SliceThickness = _ds(slice_step)


def finish_seg(seg: Any, sources: Sequence[Any]) -> None:
    """After highdicom: SpacingBetweenSlices as measured, PatientOrientation without a plane."""
    shared = seg.SharedFunctionalGroupsSequence[0]
    measures = shared.get("PixelMeasuresSequence")
    if measures:
        step = even_step(sources)
        if step is None:
            if "SpacingBetweenSlices" in measures[0]:
                del measures[0].SpacingBetweenSlices
        else:
            measures[0].SpacingBetweenSlices = _ds(step)
    if "PlaneOrientationSequence" not in shared:
        orientation = sources[0].get("PatientOrientation")
        seg.PatientOrientation = list(orientation) if orientation and \
            len(orientation) == 2 else None  # Type 2: present, empty when unknown


def even_step(sources: Sequence[Any]) -> float | None:
    """The step in mm between the planes of `sources` (single-frame headers, or one enhanced
    multi-frame header) when they are evenly spaced along the slice normal, else None."""
    positions, orientation = _positions(sources)
    if len(positions) < 2 or orientation is None:
        return None
    row, column = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, column)
    along = np.sort(np.asarray(positions, float) @ normal)
    steps = np.diff(along)
    if steps.size == 0 or steps.min() <= 1e-3:
        return None
    if steps.max() - steps.min() > _STEP_TOLERANCE * steps.mean():
        return None
    return float(steps.mean())


def _positions(sources: Sequence[Any]) -> tuple[list[Any], Any]:
    first = sources[0]
    if "PerFrameFunctionalGroupsSequence" not in first:
        positions = [ds.get("ImagePositionPatient") for ds in sources]
        return [p for p in positions if p], first.get("ImageOrientationPatient")
    shared = first.SharedFunctionalGroupsSequence[0]
    orientation = None
    if "PlaneOrientationSequence" in shared:
        orientation = shared.PlaneOrientationSequence[0].get("ImageOrientationPatient")
    positions = []
    for frame in first.PerFrameFunctionalGroupsSequence:
        plane = frame.get("PlanePositionSequence")
        if plane:
            positions.append(plane[0].get("ImagePositionPatient"))
        if orientation is None and "PlaneOrientationSequence" in frame:
            orientation = frame.PlaneOrientationSequence[0].get("ImageOrientationPatient")
    return [p for p in positions if p], orientation


def _check_spacing(spacing: Any) -> None:
    """A cross-sectional image's SEG repeats its pixel size, which DICOM requires of it."""
    if usable_spacing(spacing) is None:  # the viewer's rule: 0\0, NaN or 1e308 is no size
        said = "no PixelSpacing" if not spacing else \
            "PixelSpacing " + "\\".join(str(v) for v in spacing)
        raise ValueError(f"The source images have {said}, so a DICOM SEG of them cannot say "
                         "its pixel size; fix the series' PixelSpacing to save a "
                         "segmentation of it.")


def _positive(value: Any) -> bool:
    try:
        return value is not None and value != "" and float(value) > 0
    except (TypeError, ValueError):
        return False


def _ds(value: float) -> str:
    """A DS string of at most 16 characters."""
    text = f"{value:.6g}"
    return text if len(text) <= 16 else f"{value:.10g}"[:16]
