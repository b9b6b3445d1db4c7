"""Planning a load from headers: which files, in which order, with which geometry.

    collect(source) -> (series, instances, notes)     # files of a folder / list / Series
    reference_header(instance) -> Dataset              # the header the whole series shares
    expand_frames(instances, ref) -> [Frame]           # one per 2D image, multi-frame expanded
    arrange(frames, ref) -> (grid[time][slice], affine, notes)
    has_geometry(frames), patient_orientation(ref), spacing_notes(instances, ref)
    header_windows(ref), voi_lut(ref), is_dose(ref), frame_rate(ref)

Nothing here decodes pixels; `volume.SeriesLoader` reads them in the planned order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from medviewer.core.dicom import checks, headers, listing, mosaic
from medviewer.core.dicom import pixels as px
from medviewer.core.dicom.checks import usable_spacing
from medviewer.core.dicom.errors import DicomError
from medviewer.core.dicom.model import Instance, Series
from medviewer.core.display import Window, windows_from_dataset

RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"  # RT Dose Storage
PATIENT_LETTERS = set("APRLHF")


@dataclass
class Frame:
    """One 2D image of the series: a file, or one frame of a multi-frame file."""

    instance: Instance
    frame: int
    position: np.ndarray | None  # ImagePositionPatient of this frame
    orientation: np.ndarray  # 6 direction cosines
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing)
    rescale: px.Rescale
    order: tuple  # (temporal position, acquisition time, instance number, frame) for 4D
    located: bool = False  # position and orientation came from the header, not defaults
    tile: mosaic.Tile | None = None  # where this slice lies in a Siemens mosaic image
    # header values this frame could not trust and what it used instead (see checks.frame_notes)
    doubts: tuple[str, ...] = ()


def collect(source: Series | str | Path | Sequence[str | Path]
            ) -> tuple[Series | None, list[Instance], list[str], dict[str, DicomError]]:
    """(series, instances, notes, refused): `refused` maps the files of a scanned series
    whose declared image does not fit the file to the reason; each keeps one blank slot."""
    if isinstance(source, Series):
        if not source.instances:
            raise DicomError(None, "The series holds no images.")
        return source, *checks.fit_instances(source.instances)
    paths, chosen, notes = _expand_paths(source)
    instances = []
    for path in paths:
        try:
            inst = _image_instance(path, must_be_image=chosen and len(paths) == 1)
        except DicomError as exc:
            if chosen:
                raise
            notes.append(f"{Path(path).name} skipped: {exc.reason}")
            continue
        if inst is not None:
            instances.append(inst)
            notes += checks.excess_notes(inst)[:max(0, 3 - len(notes))]
    if not instances:
        raise DicomError(str(source) if isinstance(source, str | Path) else None,
                         "No DICOM images were found here.")
    return None, *_largest_stack(instances, notes), {}


def _expand_paths(source: str | Path | Sequence[str | Path]) -> tuple[list[str], bool, list[str]]:
    """(files, chosen, notes): chosen files raise on errors, files found in a folder are
    skipped, and what the folder's listing left out (links out of it, pipes) is noted."""
    if isinstance(source, str | Path):
        root = Path(source)
        if root.is_dir():  # listed as the scan lists it: no link out of it, no pipe, no /proc
            targets = listing.Targets()
            targets.add(str(root))
            files = sorted(os.path.join(folder, name) for folder, found in
                           targets.finish().folders.items() for name in found.names)
            return files, False, [f"{Path(p.path).name} skipped: {p.reason}"
                                  for p in targets.problems]
        if not root.exists():
            raise DicomError(root, "The file or folder does not exist.")
        return [str(root)], True, []
    return [str(p) for p in source], True, []


def _image_instance(path: str, *, must_be_image: bool) -> Instance | None:
    """The scanner's facts of one file; None for non-DICOM and non-image files (reports,
    plans), which raise instead when the reader chose that one file to open."""
    try:
        inst = headers.read_instance(path)
    except OSError as exc:
        raise DicomError(path, f"The file cannot be read ({exc.strerror or exc}).") from exc
    if inst is None:
        if must_be_image:
            raise DicomError(path, "This is not a DICOM file.")
        return None
    if not (inst.rows and inst.columns) and not inst.pixel_data_offset:
        if "Image" in UID(inst.sop_class_uid).name:  # as the scan says (a file cut short)
            raise DicomError(path, "The image object holds no pixel data: the file was cut "
                                   "short or is damaged.")
        if must_be_image:
            raise DicomError(path, "This DICOM file holds no image (it is a report, plan or "
                                   "other non-image object).")
        return None
    checks.pixel_data(inst)  # a declared size the file cannot hold is refused here
    return inst


def _number(value: object, kind: type) -> float | int | None:
    try:
        return kind(float(value)) if value not in (None, "") else None  # type: ignore
    except (TypeError, ValueError, OverflowError):
        return None


def _largest_stack(instances: list[Instance], notes: list[str]
                   ) -> tuple[list[Instance], list[str]]:
    """A folder may hold several series: load the largest stack and say what was left out."""
    groups: dict[tuple, list[Instance]] = {}
    for inst in instances:
        cosines = checks.usable_orientation(inst.orientation)  # NaN would split every file
        iop = tuple(round(v, 3) for v in cosines) if cosines else None
        groups.setdefault((inst.sop_class_uid, iop, inst.rows, inst.columns), []).append(inst)
    best = max(groups.values(), key=len)
    if len(groups) > 1:
        notes.append(f"{len(instances) - len(best)} images of other series or stacks here were "
                     "not loaded; open them from the study browser.")
    return best, notes


def reference_header(inst: Instance) -> Dataset:
    """The header (no pixels) of one file, read once for the facts an Instance does not hold;
    elements that cannot be decoded are left out (see `checks.drop_unreadable`)."""
    ds = px.read_dataset(inst.path, header_only=True)
    checks.drop_unreadable(ds)
    return ds


def _rescale(slope: object, intercept: object, dose: float | None = None, bits: int = 16
             ) -> tuple[px.Rescale, tuple[str, ...]]:
    """Modality rescale; an RT Dose's DoseGridScaling multiplies it so voxels read in Gy.
    One that cannot be right (NaN, inf, a zero slope, values past float32) is not applied:
    the stored values are shown, and the second item says why."""
    s, i = _number(slope, float), _number(intercept, float)
    s, i = 1.0 if s is None else s, 0.0 if i is None else i
    if dose:
        s, i = s * dose, i * dose
    if checks.usable_rescale(s, i, bits) is None:
        return px.Rescale(), (f"RescaleSlope {checks.text(s)} / RescaleIntercept "
                              f"{checks.text(i)} is not a usable rescale",)
    return px.Rescale(s, i), ()


def is_dose(ref: Dataset) -> bool:
    """RT Dose: stored values times DoseGridScaling are the dose (PS3.3 C.8.8.3)."""
    return ref.get("SOPClassUID") == RT_DOSE or ref.get("Modality") == "RTDOSE"


def _dose_scaling(ds: Dataset) -> float | None:
    return _number(ds.get("DoseGridScaling"), float) if is_dose(ds) else None


def _geometry(inst: Instance, iop: object, ipp: object
              ) -> tuple[tuple[float, ...] | None, np.ndarray | None, tuple[str, ...]]:
    """(orientation, position, doubts) of one image: values that cannot be right are dropped
    (a position without a trustworthy orientation too: it cannot be sorted along a normal)."""
    doubts: tuple[str, ...] = ()
    orientation = checks.usable_orientation(iop)  # type: ignore[arg-type]
    if orientation is None and iop is not None:
        doubts += (f"ImageOrientationPatient {checks.text(iop)} is not a usable orientation",)
    position = checks.usable_position(ipp)  # type: ignore[arg-type]
    if position is None and ipp is not None and not doubts:
        doubts += (f"ImagePositionPatient {checks.text(ipp)} is not a usable position",)
    if doubts:
        position = None
    return orientation, None if position is None else np.array(position, float), doubts


def expand_frames(instances: list[Instance], ref: Dataset) -> list[Frame]:
    """One Frame per 2D image: single-frame files from the scanner's facts, multi-frame files
    (and enhanced ones) from their functional groups."""
    frames: list[Frame] = []
    fallback = _spacing_of(ref) or detector_spacing(ref) or ultrasound_spacing(ref) or (1.0, 1.0)
    syntax = str(ref.file_meta.get("TransferSyntaxUID", ""))
    enhanced, dose = "PerFrameFunctionalGroupsSequence" in ref, is_dose(ref)
    for inst in instances:
        if not inst.transfer_syntax_uid and syntax:  # no File Meta: inferred when read
            inst = replace(inst, transfer_syntax_uid=syntax)
        own = inst.path == instances[0].path  # else its own header, read only when needed
        if inst.mosaic_images:
            frames += _mosaic_frames(inst, ref, fallback)
        elif inst.number_of_frames > 1 or enhanced:
            frames += _multiframe(inst, ref if own else reference_header(inst), fallback)
        else:
            scaling = _dose_scaling(ref if own else reference_header(inst)) if dose else None
            frames.append(_single_frame(inst, fallback, scaling))
    return frames


def _single_frame(inst: Instance, fallback: tuple[float, float], dose: float | None) -> Frame:
    iop, position, doubts = _geometry(inst, inst.orientation, inst.position)
    order = (inst.temporal_position or 0, inst.acquisition_time, inst.instance_number or 0, 0)
    rescale, more = _rescale(inst.rescale_slope, inst.rescale_intercept, dose,
                             inst.bits_allocated)
    return Frame(inst, 0, position, _orientation(iop),
                 usable_spacing(inst.pixel_spacing) or fallback, rescale, order,
                 located=position is not None and iop is not None, doubts=doubts + more)


def _mosaic_frames(inst: Instance, ref: Dataset, fallback: tuple[float, float]) -> list[Frame]:
    """One Frame per tile of a Siemens mosaic, placed along the CSA SliceNormalVector (the
    orientation's normal when the header has none) one slice step apart."""
    whole = _single_frame(inst, fallback, None)
    normal = mosaic.slice_normal(mosaic.csa_header(ref))
    if normal is None:
        normal = np.cross(whole.orientation[:3], whole.orientation[3:])
    step = _nominal_step(inst, ref)
    return [replace(whole, position=position, tile=tile, order=(*whole.order[:3], k))
            for k, (tile, position) in enumerate(mosaic.tiles(
                inst, inst.mosaic_images, normal, step, whole.orientation, whole.pixel_spacing))]


def image_size(frame: Frame) -> tuple[int, int]:
    """(rows, columns) of the frame's image: a tile's for a mosaic slice."""
    if frame.tile is not None:
        return frame.tile[2], frame.tile[3]
    return frame.instance.rows, frame.instance.columns


def _orientation(value: Sequence[float] | None) -> np.ndarray:
    return np.array(value if value else (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), float)


def _group_value(groups: list[Dataset | None], sequence: str, keyword: str) -> object:
    """A functional group value: per-frame first, then shared (PS3.3 C.7.6.16)."""
    for group in groups:
        try:
            if group is not None and sequence in group and len(group[sequence].value):
                item = group[sequence].value[0]
                if keyword in item:
                    return item[keyword].value
        except Exception:  # an undecodable element in the group: as if absent
            continue
    return None


def _frame_groups(ds: Dataset, k: int) -> list[Dataset | None]:
    """[per-frame item k, shared item] of an enhanced file (None where absent)."""
    shared = ds.get("SharedFunctionalGroupsSequence") or [None]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    return [per_frame[k] if k < len(per_frame) else None, shared[0]]


def _multiframe(inst: Instance, ds: Dataset, fallback: tuple[float, float]) -> list[Frame]:
    """Frames of a classic (one position + offsets) or enhanced (per-frame groups) file."""
    offsets = _frame_offsets(ds, inst.number_of_frames)
    dose = _dose_scaling(ds)
    return [_frame_of(inst, ds, k, offsets, fallback, dose) for k in range(inst.number_of_frames)]


def _frame_of(inst: Instance, ds: Dataset, k: int, offsets: np.ndarray | None,
              fallback: tuple[float, float], dose: float | None) -> Frame:
    """Frame k: functional groups first, then the file's own attributes, then defaults."""
    groups = _frame_groups(ds, k)
    iop = checks.floats(_group_value(groups, "PlaneOrientationSequence",
                               "ImageOrientationPatient"), 6) or inst.orientation
    cosines = _orientation(checks.usable_orientation(iop))
    ipp = checks.floats(_group_value(groups, "PlanePositionSequence", "ImagePositionPatient"), 3)
    if ipp is None and inst.position and offsets is not None:
        ipp = tuple(np.array(inst.position) + offsets[k] * np.cross(cosines[:3], cosines[3:]))
    iop, position, doubts = _geometry(inst, iop, ipp)
    spacing = usable_spacing(_group_value(groups, "PixelMeasuresSequence", "PixelSpacing"))
    transform = "PixelValueTransformationSequence"
    rescale, more = _rescale(
        _group_value(groups, transform, "RescaleSlope") or ds.get("RescaleSlope"),
        _group_value(groups, transform, "RescaleIntercept") or ds.get("RescaleIntercept"),
        dose, inst.bits_allocated)
    temporal = _number(_group_value(groups, "FrameContentSequence", "TemporalPositionIndex"), int)
    return Frame(inst, k, position, cosines,
                 spacing or usable_spacing(inst.pixel_spacing) or fallback, rescale,
                 (temporal or 0, "", inst.instance_number or 0, k),
                 located=position is not None and iop is not None, doubts=doubts + more)


def _frame_offsets(ds: Dataset, count: int) -> np.ndarray | None:
    """Classic multi-frame: distance of each frame from the file's position along the normal."""
    grid = ds.get("GridFrameOffsetVector")  # RT dose, some NM
    values = [grid] if isinstance(grid, int | float | str) else grid  # one value: no list
    offsets = checks.floats(values, count) if grid is not None else None
    if offsets is not None and np.isfinite(offsets).all():  # junk text reads as none given
        return np.array(offsets)
    step = checks.usable_step(_number(ds.get("SpacingBetweenSlices"), float)) or \
        checks.usable_step(_number(ds.get("SliceThickness"), float))
    return None if not step else np.arange(count) * step


def arrange(frames: list[Frame], ref: Dataset) -> tuple[list[list[int]], np.ndarray, list[str]]:
    """Grid [time][slice] of frame indices sorted along the slice normal, the affine, notes."""
    iop = frames[0].orientation
    normal = np.cross(iop[:3], iop[3:])
    mixed = not same_orientation(frames)
    if mixed or any(f.position is None for f in frames):
        grid = [sorted(range(len(frames)), key=lambda i: frames[i].order)]
        # no patient geometry: the bare pixel grid, so the images show as stored (a film
        # with an orientation but no position is neither flipped nor turned by it)
        bare = replace(frames[grid[0][0]], orientation=_orientation(None))
        step = np.array([0.0, 0.0, _nominal_step(frames[0].instance, ref)])
        # a stack of Secondary Capture images (scanned films, digits) has no positions by
        # definition: saying so would be noise
        capture = str(ref.get("SOPClassUID", "")).startswith("1.2.840.10008.5.1.4.1.1.7")
        doubted = any(f.doubts for f in frames)  # checks.frame_notes says why, and what instead
        notes = [] if len(frames) == 1 or (capture and not mixed) or doubted else [
            "The images lie in different orientations (a localizer, rotating projections): "
            "shown one by one in acquisition order, without MPR or slice positions." if mixed
            else "The images carry no slice positions: they are ordered by instance number."]
        return grid, _affine(bare, step, None), notes
    depth = np.array([float(f.position @ normal) for f in frames])
    grid, notes = _split_time(frames, depth)
    positions = np.array([frames[i].position for i in grid[0]])
    step, more = _slice_step(positions, normal, _nominal_step(frames[0].instance, ref))
    return grid, _affine(frames[grid[0][0]], step, positions[0]), notes + more


def _split_time(frames: list[Frame], depth: np.ndarray) -> tuple[list[list[int]], list[str]]:
    """One row per time point when every position repeats equally often (dynamic, DWI)."""
    order = sorted(range(len(frames)), key=lambda i: (depth[i], frames[i].order))
    tolerance = 1e-3 * max(1.0, float(np.ptp(depth)) / max(1, len(frames)))
    groups: list[list[int]] = []
    for i in order:
        if groups and abs(depth[i] - depth[groups[-1][0]]) <= tolerance:
            groups[-1].append(i)
        else:
            groups.append([i])
    counts = {len(g) for g in groups}
    if counts == {1}:
        return [[g[0] for g in groups]], []
    if len(counts) > 1:
        return [order], [f"Slice positions repeat unevenly ({min(counts)} to {max(counts)} "
                         "images per position): shown as one stack in position order."]
    for g in groups:
        g.sort(key=lambda i: frames[i].order)
    return [[g[t] for g in groups] for t in range(counts.pop())], []


def _nominal_step(inst: Instance, ref: Dataset) -> float:
    return (checks.usable_step(_number(ref.get("SpacingBetweenSlices"), float))
            or checks.usable_step(inst.slice_thickness) or 1.0)


def _slice_step(positions: np.ndarray, normal: np.ndarray, nominal: float
                ) -> tuple[np.ndarray, list[str]]:
    """The typical step between neighbouring slices (median: robust to a missing slice)."""
    if len(positions) < 2:
        return normal * nominal, []
    diffs = np.diff(positions, axis=0)
    along = diffs @ normal
    median = float(np.median(along))
    typical = np.abs(along - median) <= 0.1 * abs(median)
    step = diffs[typical].mean(axis=0)
    notes = [f"Slice gap after slice {k + 1}: {d:.2f} mm instead of {median:.2f} mm "
             f"(about {round(d / median) - 1} slice(s) missing)."
             for k, d in enumerate(along) if median > 0 and d > 1.5 * median]
    if not notes and not typical.all():
        notes.append("Slice spacing is uneven: distances are approximate along the slices.")
    return step, notes


def _affine(first: Frame, step: np.ndarray, origin: np.ndarray | None) -> np.ndarray:
    row_spacing, col_spacing = first.pixel_spacing
    affine = np.eye(4)
    affine[:3, 0] = first.orientation[:3] * col_spacing
    affine[:3, 1] = first.orientation[3:] * row_spacing
    affine[:3, 2] = step
    affine[:3, 3] = origin if origin is not None else 0.0
    return affine


# -- what the view needs to be honest about ------------------------------------------------


def has_geometry(frames: list[Frame]) -> bool:
    """True when every image has a patient position and orientation (IPP/IOP or functional
    groups): only then do edge letters and millimetre positions mean anything."""
    return all(f.located for f in frames) and same_orientation(frames)


def same_orientation(frames: list[Frame], tolerance: float = 1e-3) -> bool:
    """Whether all images share the first one's direction cosines: only then are they one
    volume."""
    first = frames[0].orientation
    return all(np.abs(f.orientation - first).max() < tolerance for f in frames[1:])


def patient_orientation(ref: Dataset) -> tuple[str, str] | None:
    """PatientOrientation (0020,0020) of a projection image: the patient directions of the
    row (towards the right edge) and column (towards the bottom) directions, e.g. ('L', 'F')."""
    value = ref.get("PatientOrientation")
    letters = [str(v).strip().upper() for v in (value if isinstance(value, Sequence)
                                                 and not isinstance(value, str) else [value])]
    if len(letters) != 2 or not all(s and set(s) <= PATIENT_LETTERS for s in letters):
        return None
    return letters[0], letters[1]


def _spacing_of(ds: Dataset) -> tuple[float, float] | None:
    """PixelSpacing at the top level or in the functional groups (patient-plane spacing)."""
    return usable_spacing(ds.get("PixelSpacing")) or usable_spacing(
        _group_value(_frame_groups(ds, 0), "PixelMeasuresSequence", "PixelSpacing"))


def detector_spacing(ref: Dataset) -> tuple[float, float] | None:
    """ImagerPixelSpacing of a projection image (spacing at the detector plane)."""
    return usable_spacing(ref.get("ImagerPixelSpacing"))


def ultrasound_spacing(ref: Dataset) -> tuple[float, float] | None:
    """(row, column) mm from the first ultrasound region calibrated in cm in both directions
    (SequenceOfUltrasoundRegions, PhysicalUnits 3 = cm): ultrasound images rarely carry
    PixelSpacing."""
    for region in ref.get("SequenceOfUltrasoundRegions") or []:
        try:
            units = (region.get("PhysicalUnitsXDirection"),
                     region.get("PhysicalUnitsYDirection"))
            dx, dy = region.get("PhysicalDeltaX"), region.get("PhysicalDeltaY")
            if units == (3, 3) and dx and dy:  # float() of a wrong VR's text or list fails
                return usable_spacing((abs(float(dy)) * 10.0, abs(float(dx)) * 10.0))
        except Exception:  # an undecodable value in the region: not a calibration
            continue
    return None


def spacing_known(instances: list[Instance], ref: Dataset) -> bool:
    """Whether any header gives the pixel size; without it measurements are in pixels."""
    return bool(usable_spacing(instances[0].pixel_spacing) or _spacing_of(ref)
                or detector_spacing(ref) or ultrasound_spacing(ref))


def spacing_notes(instances: list[Instance], ref: Dataset) -> list[str]:
    """The caveat a radiologist expects when distances do not come from PixelSpacing."""
    if usable_spacing(instances[0].pixel_spacing) or _spacing_of(ref):
        return []
    if detector_spacing(ref):
        return ["Spacing is at the detector (ImagerPixelSpacing): measurements are not "
                "corrected for magnification."]
    if ultrasound_spacing(ref):
        return ["Spacing is from the ultrasound region calibration."]
    stated = ref.get("PixelSpacing")
    if stated:  # 0\0, negative: said, not silently taken as 1 mm
        text = "\\".join(str(v) for v in stated) if isinstance(stated, Sequence) else stated
        return [f"PixelSpacing {text} is not a usable pixel size: measurements are in pixels."]
    return ["The images carry no pixel spacing: measurements are in pixels."]


def header_windows(ref: Dataset) -> list[Window]:
    """The header's windows; an enhanced image keeps them in the FrameVOILUTSequence (first
    frame's, per-frame before shared) when the top level has none. A LINEAR window narrower
    than the 1 LINEAR allows (a parametric map's, in mm2/s) is taken as LINEAR_EXACT."""
    return [replace(w, function="LINEAR_EXACT") if w.function == "LINEAR" and w.width < 1
            else w for w in _header_windows(ref)]


def _header_windows(ref: Dataset) -> list[Window]:
    windows = windows_from_dataset(ref)
    if windows or "SharedFunctionalGroupsSequence" not in ref and \
            "PerFrameFunctionalGroupsSequence" not in ref:
        return windows
    for group in _frame_groups(ref, 0):
        items = group.get("FrameVOILUTSequence") if group is not None else None
        if items:
            windows = windows_from_dataset(items[0])
            if windows:
                return windows
    return []


def voi_lut(ref: Dataset) -> tuple[np.ndarray | None, int]:
    """(table, first mapped value) of the first VOI LUT, (None, 0) without one; DicomError
    when the table is broken (the window is used instead)."""
    try:
        seq = ref.get("VOILUTSequence")
        if not seq or "LUTData" not in seq[0]:
            return None, 0
        item = seq[0]
        data, descriptor = item.LUTData, [int(v) for v in item.LUTDescriptor]
    except Exception as exc:  # damaged sequence or descriptor: pydicom raises many types
        raise DicomError(None, f"the VOI LUT cannot be read ({exc})") from exc
    if len(descriptor) != 3 or data is None:
        raise DicomError(None, f"the VOI LUT descriptor {descriptor} is not valid")
    bits = descriptor[2]
    if not 8 <= bits <= 16:  # the standard allows 8 to 16 bits per entry
        raise DicomError(None, f"the VOI LUT descriptor {descriptor} is not valid")
    if isinstance(data, bytes):  # OW: 16-bit words in the file's byte order
        order = "<" if px.little_endian(ref) else ">"
        width = 2 if bits > 8 else 1
        table = np.frombuffer(data[:len(data) // width * width], f"{order}u2" if bits > 8 else "u1")
    else:
        table = np.atleast_1d(np.asarray(data))
    if not table.size or table.dtype.kind not in "iu":
        raise DicomError(None, "the VOI LUT holds no entries")
    if table.size < (descriptor[0] or 65536):  # 0 means 65536 entries
        raise DicomError(None, f"the VOI LUT holds {table.size} entries, its descriptor says "
                               f"{descriptor[0] or 65536}")
    return table.astype(np.uint16 if bits > 8 else np.uint8), descriptor[1]


def frame_rate(ref: Dataset) -> float | None:
    """Cine rate of a loop (US, XA, NM) in frames per second: RecommendedDisplayFrameRate,
    then CineRate, then 1000 / FrameTime (ms); None when the header names none."""
    for keyword in ("RecommendedDisplayFrameRate", "CineRate"):
        rate = _number(ref.get(keyword), float)
        if rate and rate > 0:
            return float(rate)
    frame_time = _number(ref.get("FrameTime"), float)
    return 1000.0 / frame_time if frame_time and frame_time > 0 else None
