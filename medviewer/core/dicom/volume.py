"""Series -> Volume: voxels in modality units with a (column, row, slice, 1) -> LPS mm affine.

    load_series(source, *, progress=None, cancel=None) -> Volume

`source` is a scanned `Series` (fast path: headers already parsed, pixel data read at its
offset), a folder, a single file, or a list of files. Raises DicomError naming the file and
the reason for corrupt, truncated or undecodable data; LoadCancelled when cancel() said stop.

    SeriesLoader(source)   # sorts and plans from headers, decodes nothing yet
      .shape, .affine, .slice_count
      .read_slice(k) -> np.ndarray   # one slice in modality units, for first-slice display
      .load(progress=None, cancel=None) -> Volume
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from medviewer.core.dicom import pixels as px
from medviewer.core.dicom.errors import DicomError
from medviewer.core.dicom.model import Instance, Series
from medviewer.core.display import Window, windows_from_dataset

ProgressCallback = Callable[[int, int], None]  # (done, total)
CancelCheck = Callable[[], bool]  # returns True when the caller wants to stop


class LoadCancelled(Exception):  # noqa: N818 - the name the contract gives it
    """The caller's cancel() asked to stop a load; nothing is wrong with the data."""


@dataclass
class SliceSource:
    """Where one slice of the volume came from."""

    path: str
    frame: int = 0  # frame index inside a multi-frame file
    sop_instance_uid: str = ""


@dataclass
class Volume:
    """A loaded stack.

    voxels: (slices, rows, columns), or (time, slices, rows, columns) when positions repeat,
    with a trailing axis of 3 for colour; modality units (HU for CT); smallest lossless dtype.
    affine: 4x4 float64 mapping (column, row, slice, 1) to patient LPS millimetres.
    """

    voxels: np.ndarray
    affine: np.ndarray
    modality: str = ""
    photometric: str = "MONOCHROME2"  # of the source; MONOCHROME1 is inverted for display only
    windows: list[Window] = field(default_factory=list)  # from the header, in header order
    voi_lut: np.ndarray | None = None  # first VOI LUT of the header, applied for display
    voi_lut_first: int = 0  # first mapped input value of that LUT
    sources: list[SliceSource] = field(default_factory=list)  # one per slice (per time point 0)
    series: Series | None = None
    description: str = ""
    warnings: list[str] = field(default_factory=list)  # e.g. "slice gap at slice 12 (5.0 mm)"

    @property
    def is_colour(self) -> bool:
        return self.voxels.ndim >= 3 and self.voxels.shape[-1] == 3 and self.photometric == "RGB"

    @property
    def is_4d(self) -> bool:
        return self.voxels.ndim - (1 if self.is_colour else 0) == 4

    @property
    def spacing(self) -> tuple[float, float, float]:
        """(slice, row, column) spacing in mm, from the affine."""
        a = self.affine[:3, :3]
        col, row, slc = (float(np.linalg.norm(a[:, i])) for i in range(3))
        return slc, row, col


class SeriesLoader:
    """Plans a load from headers (cheap), then decodes one slice or the whole volume."""

    def __init__(self, source: Series | str | Path | Sequence[str | Path]) -> None:
        self.series, instances, self.warnings = _collect(source)
        self.reference = _reference_header(instances[0])
        self.frames = _expand_frames(instances, self.reference)
        self.grid, self.affine, notes = _arrange(self.frames, self.reference)
        self.warnings += notes
        first = self.frames[0].instance
        self.rows, self.columns = first.rows, first.columns
        self.colour = px._is_colour(self.reference)
        self.photometric = "RGB" if self.colour else str(
            self.reference.get("PhotometricInterpretation") or first.photometric or "MONOCHROME2")
        self.lut = px.modality_lut(self.reference)
        self._datasets: dict[str, Dataset] = {}

    @property
    def slice_count(self) -> int:
        return len(self.grid[0])

    @property
    def shape(self) -> tuple[int, ...]:
        lead = (len(self.grid), self.slice_count) if len(self.grid) > 1 else (self.slice_count,)
        return (*lead, self.rows, self.columns, *((3,) if self.colour else ()))

    def read_slice(self, k: int, t: int = 0) -> np.ndarray:
        """Slice k (time point t) in modality units, decoding that one frame only."""
        frame = self.frames[self.grid[t][k]]
        raw = self._decode_one(frame)
        return self._finish(raw[None], [frame.rescale])[0]

    def load(self, progress: ProgressCallback | None = None,
             cancel: CancelCheck | None = None) -> Volume:
        """Decode every frame into one preallocated array, then rescale it in place."""
        order = [i for row in self.grid for i in row]
        raw = self._decode_all(order, progress, cancel)
        voxels = self._finish(raw, [self.frames[i].rescale for i in order])
        voxels = voxels.reshape(self.shape)
        return self._volume(voxels)

    # -- decoding ---------------------------------------------------------------------------

    def _raw_dtype(self) -> np.dtype:
        inst = self.frames[0].instance
        if self.colour or inst.bits_allocated not in (8, 16, 32):
            return np.dtype(np.uint8)
        return px.stored_dtype(inst.bits_allocated, bool(inst.pixel_representation))

    def _decode_all(self, order: list[int], progress: ProgressCallback | None,
                    cancel: CancelCheck | None) -> np.ndarray:
        shape = (len(order), self.rows, self.columns, *((3,) if self.colour else ()))
        raw = np.empty(shape, self._raw_dtype())
        slot_of = {frame_index: slot for slot, frame_index in enumerate(order)}
        ticker = _Ticker(len(order), progress)
        done = 0
        for path, indices in _by_file(self.frames, order):
            if cancel is not None and cancel():
                raise LoadCancelled(path)
            raw = self._decode_file(path, indices, raw, slot_of)
            done += len(indices)
            ticker(done)
        ticker(done, force=True)
        return raw

    def _decode_file(self, path: str, indices: list[int], raw: np.ndarray,
                     slot_of: dict[int, int]) -> np.ndarray:
        how = _strategy(self.frames[indices[0]].instance, self.colour, self.lut)
        if how == "pydicom":
            frames = px.decode_dataset(path, self._dataset(path, full=True))
            if frames.dtype != raw.dtype and not np.can_cast(frames.dtype, raw.dtype, "safe"):
                raw = raw.astype(np.result_type(raw.dtype, frames.dtype))
            for i in indices:
                raw[slot_of[i]] = frames[self.frames[i].frame]
            return raw
        for i in indices:
            self._decode_fast(self.frames[i], raw[slot_of[i]], how)
        return raw

    def _decode_fast(self, frame: Frame, out: np.ndarray, how: str) -> None:
        inst = frame.instance
        if how == "native":
            px.read_native(inst.path, inst.pixel_data_offset, out, frame.frame * out.nbytes)
        else:
            fragments = px.read_fragments(inst.path, inst.pixel_data_offset)
            if inst.number_of_frames > 1 and len(fragments) != inst.number_of_frames:
                raise DicomError(inst.path, "The RLE image data does not hold one fragment per "
                                            "frame: the file is corrupt.")
            piece = fragments[frame.frame] if inst.number_of_frames > 1 else b"".join(fragments)
            px.decode_rle(inst.path, piece, out, inst.bits_allocated)

    def _decode_one(self, frame: Frame) -> np.ndarray:
        inst = frame.instance
        how = _strategy(inst, self.colour, self.lut)
        if how == "pydicom":
            frames = px.decode_dataset(inst.path, self._dataset(inst.path, full=True))
            return frames[frame.frame]
        out = np.empty((self.rows, self.columns), self._raw_dtype())
        self._decode_fast(frame, out, how)
        return out

    def _dataset(self, path: str, *, full: bool) -> Dataset:
        if full:  # pixel data is not cached: a volume's worth would double the memory
            return px.read_dataset(path)
        if path not in self._datasets:
            self._datasets[path] = px.read_dataset(path, header_only=True)
        return self._datasets[path]

    def _finish(self, raw: np.ndarray, rescales: list[px.Rescale]) -> np.ndarray:
        """Unused bits, then the Modality LUT (rescale or table); colour passes through."""
        if self.colour:
            return raw
        px.fix_unused_bits(raw, int(self.reference.get("BitsStored") or 0))
        if self.lut is not None:
            return px.apply_lut_table(raw, *self.lut)
        return px.to_modality(raw, rescales)

    # -- result ------------------------------------------------------------------------------

    def _volume(self, voxels: np.ndarray) -> Volume:
        ref = self.reference
        lut, first = _voi_lut(ref)
        sources = [SliceSource(self.frames[i].instance.path, self.frames[i].frame,
                               self.frames[i].instance.sop_instance_uid) for i in self.grid[0]]
        return Volume(
            voxels=voxels, affine=self.affine, modality=str(ref.get("Modality", "")),
            photometric=self.photometric, windows=windows_from_dataset(ref), voi_lut=lut,
            voi_lut_first=first, sources=sources, series=self.series,
            description=str(ref.get("SeriesDescription", "")), warnings=list(self.warnings))


class _Ticker:
    """Calls progress(done, total) at most every 50 ms, plus once at the end."""

    def __init__(self, total: int, progress: ProgressCallback | None) -> None:
        self.total, self.progress, self.last = total, progress, 0.0

    def __call__(self, done: int, *, force: bool = False) -> None:
        now = time.perf_counter()
        if self.progress is not None and (force or now - self.last >= 0.05):
            self.last = now
            self.progress(done, self.total)


def load_series(
    source: Series | str | Path | Sequence[str | Path],
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
) -> Volume:
    """Load a scanned series, a folder, a file or a list of files into a Volume."""
    return SeriesLoader(source).load(progress=progress, cancel=cancel)




# -- planning from headers ---------------------------------------------------------------------


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


def _collect(source: Series | str | Path | Sequence[str | Path]
             ) -> tuple[Series | None, list[Instance], list[str]]:
    if isinstance(source, Series):
        if not source.instances:
            raise DicomError(None, "The series holds no images.")
        return source, list(source.instances), []
    paths, chosen = _expand_paths(source)
    instances, notes = [], []
    for path in paths:
        try:
            inst = _read_instance(path)
        except DicomError as exc:
            if chosen:
                raise
            notes.append(f"{Path(path).name} skipped: {exc.reason}")
            continue
        if inst is not None:
            instances.append(inst)
        elif chosen and len(paths) == 1:
            raise DicomError(path, "This is not a DICOM image file.")
    if not instances:
        raise DicomError(str(source) if isinstance(source, str | Path) else None,
                         "No DICOM images were found here.")
    return None, *_largest_stack(instances, notes)


def _expand_paths(source: str | Path | Sequence[str | Path]) -> tuple[list[str], bool]:
    """(files, chosen): chosen files raise on errors, files found in a folder are skipped."""
    if isinstance(source, str | Path):
        root = Path(source)
        if root.is_dir():
            return sorted(str(p) for p in root.rglob("*") if p.is_file()), False
        if not root.exists():
            raise DicomError(root, "The file or folder does not exist.")
        return [str(root)], True
    return [str(p) for p in source], True


def _read_instance(path: str) -> Instance | None:
    """Header facts of one file (None when it is not a DICOM image), like the scanner's."""
    try:
        with open(path, "rb") as f:
            ds = px.pydicom.dcmread(f, stop_before_pixels=True)
            at = f.tell()
            head = f.read(12)
    except px.pydicom.errors.InvalidDicomError:
        return None
    except OSError as exc:
        raise DicomError(path, f"The file cannot be read ({exc.strerror or exc}).") from exc
    except Exception as exc:  # pydicom raises many types on a corrupt header
        raise DicomError(path, f"The DICOM header is corrupt ({exc}).") from exc
    if not head.startswith(px._PIXEL_TAG):
        if "Rows" not in ds:
            return None  # a report, plan or other non-image object
        offset = None
    else:
        offset = at + (8 if ds.file_meta.get("TransferSyntaxUID") == "1.2.840.10008.1.2" else 12)
    return _instance_from_dataset(path, ds, offset)


def _floats(value: object, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _instance_from_dataset(path: str, ds: Dataset, offset: int | None) -> Instance:
    inst = Instance(
        path=path, sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        sop_class_uid=str(ds.get("SOPClassUID", "")),
        instance_number=_number(ds.get("InstanceNumber"), int),
        rows=int(ds.get("Rows") or 0), columns=int(ds.get("Columns") or 0),
        number_of_frames=_number(ds.get("NumberOfFrames"), int) or 1,
        position=_floats(ds.get("ImagePositionPatient"), 3),
        orientation=_floats(ds.get("ImageOrientationPatient"), 6),
        pixel_spacing=_floats(ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing"), 2),
        slice_thickness=_number(ds.get("SliceThickness"), float),
        acquisition_time=str(ds.get("AcquisitionTime") or ds.get("ContentTime") or ""),
        transfer_syntax_uid=str(ds.file_meta.get("TransferSyntaxUID", "")),
        photometric=str(ds.get("PhotometricInterpretation", "")),
        samples_per_pixel=int(ds.get("SamplesPerPixel") or 1),
        bits_allocated=int(ds.get("BitsAllocated") or 0),
        pixel_representation=int(ds.get("PixelRepresentation") or 0), pixel_data_offset=offset)
    inst.rescale_slope = _number(ds.get("RescaleSlope"), float)
    inst.rescale_intercept = _number(ds.get("RescaleIntercept"), float)
    inst.temporal_position = _number(ds.get("TemporalPositionIdentifier"), int)
    return inst


def _number(value: object, kind: type) -> float | int | None:
    try:
        return kind(float(value)) if value not in (None, "") else None  # type: ignore
    except (TypeError, ValueError):
        return None


def _largest_stack(instances: list[Instance], notes: list[str]
                   ) -> tuple[list[Instance], list[str]]:
    """A folder may hold several series: load the largest stack and say what was left out."""
    groups: dict[tuple, list[Instance]] = {}
    for inst in instances:
        iop = tuple(round(v, 3) for v in inst.orientation) if inst.orientation else None
        groups.setdefault((inst.sop_class_uid, iop, inst.rows, inst.columns), []).append(inst)
    best = max(groups.values(), key=len)
    if len(groups) > 1:
        notes.append(f"{len(instances) - len(best)} images of other series or stacks here were "
                     "not loaded; open them from the study browser.")
    return best, notes


def _reference_header(inst: Instance) -> Dataset:
    return px.read_dataset(inst.path, header_only=True)


def _header_extras(inst: Instance) -> tuple[float | None, float | None, int | None]:
    """(RescaleSlope, RescaleIntercept, TemporalPositionIdentifier), cheapest source first."""
    known = (inst.rescale_slope, inst.rescale_intercept, inst.temporal_position)
    if any(v is not None for v in known):  # the scanner read them (None may mean "absent")
        return known
    if inst.transfer_syntax_uid not in _NO_WALK:
        explicit = inst.transfer_syntax_uid != "1.2.840.10008.1.2"
        found = px.header_numbers(inst.path, explicit, set(_EXTRA_TAGS))
        if found is not None:
            return tuple(found.get(tag) for tag in _EXTRA_TAGS)  # type: ignore[return-value]
    fresh = _read_instance(inst.path)
    if fresh is None:
        return None, None, None
    return fresh.rescale_slope, fresh.rescale_intercept, fresh.temporal_position


_EXTRA_TAGS = (px.RESCALE_SLOPE, px.RESCALE_INTERCEPT, px.TEMPORAL_POSITION)
_NO_WALK = {"", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}  # big endian, deflated


def _rescale(slope: object, intercept: object) -> px.Rescale:
    s, i = _number(slope, float), _number(intercept, float)
    return px.Rescale(1.0 if s is None else s, 0.0 if i is None else i)


def _expand_frames(instances: list[Instance], ref: Dataset) -> list[Frame]:
    frames: list[Frame] = []
    for inst in instances:
        if inst.number_of_frames > 1 or "PerFrameFunctionalGroupsSequence" in ref:
            ds = ref if inst.path == instances[0].path else _reference_header(inst)
            frames += _multiframe(inst, ds)
            continue
        slope, intercept, temporal = _header_extras(inst)
        position = np.array(inst.position, float) if inst.position else None
        order = (temporal or 0, inst.acquisition_time, inst.instance_number or 0, 0)
        frames.append(Frame(inst, 0, position, _orientation(inst.orientation),
                            inst.pixel_spacing or (1.0, 1.0), _rescale(slope, intercept), order))
    return frames


def _orientation(value: Sequence[float] | None) -> np.ndarray:
    return np.array(value if value else (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), float)


def _group_value(groups: list[Dataset | None], sequence: str, keyword: str) -> object:
    """A functional group value: per-frame first, then shared (PS3.3 C.7.6.16)."""
    for group in groups:
        if group is not None and sequence in group and len(group[sequence].value):
            item = group[sequence].value[0]
            if keyword in item:
                return item[keyword].value
    return None


def _multiframe(inst: Instance, ds: Dataset) -> list[Frame]:
    """Frames of a classic (one position + offsets) or enhanced (per-frame groups) file."""
    shared = ds.SharedFunctionalGroupsSequence[0] if ds.get("SharedFunctionalGroupsSequence") \
        else None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    offsets = _frame_offsets(ds, inst.number_of_frames)
    frames = []
    for k in range(inst.number_of_frames):
        groups = [per_frame[k] if k < len(per_frame) else None, shared]
        iop = _orientation(_floats(_group_value(groups, "PlaneOrientationSequence",
                                                "ImageOrientationPatient"), 6) or inst.orientation)
        ipp = _floats(_group_value(groups, "PlanePositionSequence", "ImagePositionPatient"), 3)
        if ipp is None and inst.position and offsets is not None:
            ipp = tuple(np.array(inst.position) + offsets[k] * np.cross(iop[:3], iop[3:]))
        spacing = _floats(_group_value(groups, "PixelMeasuresSequence", "PixelSpacing"), 2)
        rescale = _rescale(
            _group_value(groups, "PixelValueTransformationSequence", "RescaleSlope")
            or ds.get("RescaleSlope"),
            _group_value(groups, "PixelValueTransformationSequence", "RescaleIntercept")
            or ds.get("RescaleIntercept"))
        temporal = _number(_group_value(groups, "FrameContentSequence", "TemporalPositionIndex"),
                           int)
        frames.append(Frame(inst, k, None if ipp is None else np.array(ipp, float), iop,
                            spacing or inst.pixel_spacing or (1.0, 1.0), rescale,
                            (temporal or 0, "", inst.instance_number or 0, k)))
    return frames


def _frame_offsets(ds: Dataset, count: int) -> np.ndarray | None:
    """Classic multi-frame: distance of each frame from the file's position along the normal."""
    grid = ds.get("GridFrameOffsetVector")  # RT dose, some NM
    if grid is not None and len(grid) == count:
        return np.array([float(v) for v in grid])
    step = _number(ds.get("SpacingBetweenSlices"), float) or _number(ds.get("SliceThickness"),
                                                                      float)
    return None if not step else np.arange(count) * step


def _arrange(frames: list[Frame], ref: Dataset) -> tuple[list[list[int]], np.ndarray, list[str]]:
    """Grid [time][slice] of frame indices sorted along the slice normal, the affine, notes."""
    iop = frames[0].orientation
    normal = np.cross(iop[:3], iop[3:])
    if any(f.position is None for f in frames):
        grid = [sorted(range(len(frames)), key=lambda i: frames[i].order)]
        step = normal * _nominal_step(frames[0].instance, ref)
        origin = frames[grid[0][0]].position
        notes = [] if len(frames) == 1 else [
            "The images carry no slice positions: they are ordered by instance number."]
        return grid, _affine(frames[grid[0][0]], step, origin), notes
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
    return (_number(ref.get("SpacingBetweenSlices"), float) or inst.slice_thickness or 1.0)


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
             for k, d in enumerate(along) if d > 1.5 * median]
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


def _by_file(frames: list[Frame], order: list[int]) -> list[tuple[str, list[int]]]:
    """Frame indices grouped by file, so a multi-frame file is decoded once."""
    groups: dict[str, list[int]] = {}
    for i in order:
        groups.setdefault(frames[i].instance.path, []).append(i)
    return list(groups.items())


def _strategy(inst: Instance, colour: bool, lut: object) -> str:
    """native (read at offset), rle (pylibjpeg-rle) or pydicom (everything else)."""
    simple = (not colour and lut is None and inst.pixel_data_offset is not None
              and inst.samples_per_pixel == 1 and inst.bits_allocated in (8, 16, 32))
    if simple and inst.transfer_syntax_uid in px.NATIVE_LE:
        return "native"
    if simple and inst.transfer_syntax_uid == px.RLE_LOSSLESS:
        return "rle"
    return "pydicom"


def _voi_lut(ref: Dataset) -> tuple[np.ndarray | None, int]:
    seq = ref.get("VOILUTSequence")
    if not seq or "LUTData" not in seq[0]:
        return None, 0
    item = seq[0]
    data = item.LUTData
    bits = int(item.LUTDescriptor[2]) if len(item.LUTDescriptor) > 2 else 16
    if isinstance(data, bytes):
        table = np.frombuffer(data, "<u2" if bits > 8 else "u1")
    else:
        table = np.asarray(data, dtype=np.uint16 if bits > 8 else np.uint8)
    first = int(item.LUTDescriptor[1])
    return table.copy(), first
