"""Series -> Volume: voxels in modality units with a (column, row, slice, 1) -> LPS mm affine.

    load_series(source, *, progress=None, cancel=None) -> Volume

`source` is a scanned `Series` (fast path: headers already parsed, pixel data read at its
offset), a folder, a single file, or a list of files. A file whose pixels fail to decode
(corrupt stream, truncated after the scan) does not hide the others: its slices are blank
(the lowest value of the rest), `Volume.bad_slices` names the file and the reason, and one line
of `Volume.warnings` sums it up. DicomError only when no image at all decodes (or the headers
cannot be planned); LoadCancelled when cancel() said stop.

    SeriesLoader(source)   # sorts and plans from headers, decodes nothing yet
      .shape, .affine, .slice_count
      .read_slice(k) -> np.ndarray   # one slice in modality units (DicomError if it is bad)
      .load(progress=None, cancel=None) -> Volume
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.multival import MultiValue

from medviewer.core.dicom import checks, mosaic, plan
from medviewer.core.dicom import pixels as px
from medviewer.core.dicom.errors import DicomError
from medviewer.core.dicom.model import Instance, Series
from medviewer.core.display import Window

# What a reader checks on the image before reading it (wrong-patient errors are a real hazard):
# who, which study, which series. Kept as decoded text (pydicom applies the character set).
HEADER_KEYWORDS = ("PatientName", "PatientID", "PatientSex", "PatientAge", "PatientBirthDate",
                   "StudyDate", "StudyDescription", "SeriesNumber", "SeriesDescription",
                   "SliceThickness", "InstitutionName", "Modality")

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
    # (top, left, rows, columns) of the slice inside a Siemens mosaic image, None otherwise:
    # the file's one image holds several slices, so the SOP instance alone does not name it
    tile: tuple[int, int, int, int] | None = None


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
    # a 4D series' sources at every time point, [t][k] (empty for 3D): see `source`
    time_sources: list[list[SliceSource]] = field(default_factory=list)
    series: Series | None = None
    description: str = ""
    warnings: list[str] = field(default_factory=list)  # e.g. "slice gap at slice 12 (5.0 mm)"
    # True when positions and orientations came from the header (IPP/IOP or functional
    # groups); False for projection images (DX, CR, US, SC...) whose affine is the bare grid.
    has_geometry: bool = True
    # PatientOrientation of a projection image: (towards the right edge, towards the bottom)
    patient_orientation: tuple[str, str] | None = None
    # False when no header gave the pixel size: the affine's 1 mm is a pixel, and
    # measurements must say "px", not "mm".
    spacing_known: bool = True
    # Images that could not be decoded and are shown blank: "IM0042: <reason>", keyed by
    # t * slice_count + k (just k for a 3D volume), the flat image index in load order.
    bad_slices: dict[int, str] = field(default_factory=dict)
    # Frames per second the header recommends for cine (US, XA, NM loops), else None
    frame_rate: float | None = None
    # HEADER_KEYWORDS -> text of the series' reference header, for the image overlays
    header: dict[str, str] = field(default_factory=dict)

    @property
    def is_colour(self) -> bool:
        return self.voxels.ndim >= 3 and self.voxels.shape[-1] == 3 and self.photometric == "RGB"

    @property
    def is_4d(self) -> bool:
        return self.voxels.ndim - (1 if self.is_colour else 0) == 4

    @property
    def slice_count(self) -> int:
        """Slices per time point."""
        return self.voxels.shape[1 if self.is_4d else 0] if self.voxels.ndim >= 3 else 1

    def bad_reason(self, k: int, t: int = 0) -> str | None:
        """Why slice k (time point t) is blank, or None when it decoded."""
        if not self.bad_slices:
            return None
        return self.bad_slices.get(t * self.slice_count + k)

    def source(self, k: int, t: int = 0) -> SliceSource | None:
        """The file (and frame) of slice k at time point t; None past the end."""
        sources = self.time_sources[t] if 0 < t < len(self.time_sources) else self.sources
        return sources[k] if 0 <= k < len(sources) else None

    @property
    def spacing(self) -> tuple[float, float, float]:
        """(slice, row, column) spacing in mm, from the affine."""
        a = self.affine[:3, :3]
        col, row, slc = (float(np.linalg.norm(a[:, i])) for i in range(3))
        return slc, row, col


class SeriesLoader:
    """Plans a load from headers (cheap), then decodes one slice or the whole volume."""

    def __init__(self, source: Series | str | Path | Sequence[str | Path]) -> None:
        self.series, instances, self.warnings, self.refused = plan.collect(source)
        ref = self.reference = px.read_dataset(instances[0].path, header_only=True)
        dropped = checks.drop_unreadable(ref)
        checks.image_numbers(ref, instances[0].path)
        self.frames = plan.expand_frames(instances, ref)
        self.grid, self.affine, notes = plan.arrange(self.frames, ref)
        self.warnings += notes + checks.frame_notes(self.frames) + plan.spacing_notes(
            instances, ref) + checks.spacing_mismatch_notes(instances) + \
            checks.frame_count_notes(ref)
        if dropped:
            self.warnings.append(f"Header elements {', '.join(dropped[:5])} cannot be decoded "
                                 "and were ignored.")
        self.has_geometry = plan.has_geometry(self.frames)
        self.patient_orientation = plan.patient_orientation(ref)
        self.spacing_known = plan.spacing_known(instances, ref)
        self.windows = plan.header_windows(ref)
        self.frame_rate = plan.frame_rate(ref)
        self.dose = plan.is_dose(ref)
        first = self.frames[0].instance
        self.rows, self.columns = plan.image_size(self.frames[0])
        self.colour = px._is_colour(ref)
        self.photometric = "RGB" if self.colour else str(
            ref.get("PhotometricInterpretation") or first.photometric or "MONOCHROME2")
        self.lut = _table_or_note(px.modality_lut, ref, None, self.warnings,
                                  "stored pixel values are shown, not modality units")
        self.voi = _table_or_note(plan.voi_lut, ref, (None, 0), self.warnings,
                                  "the window is used instead")
        self.header = header_facts(ref, first)

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
        raw = _guarded(frame.instance.path, self._decode_one, frame)
        return self._finish(raw[None], [frame.rescale])[0]

    def source(self, k: int, t: int = 0) -> SliceSource:
        """The file and frame that slice k (time point t) comes from."""
        frame = self.frames[self.grid[t][k]]
        return SliceSource(frame.instance.path, frame.frame, frame.instance.sop_instance_uid,
                           frame.tile)

    def load(self, progress: ProgressCallback | None = None,
             cancel: CancelCheck | None = None) -> Volume:
        """Decode every frame into one preallocated array, then rescale it in place.

        Files that fail to decode leave their slots blank; see `_fill_lowest`."""
        order = [i for row in self.grid for i in row]
        raw, failures = self._decode_all(order, progress, cancel)
        if failures:
            _fill_lowest(raw, list(failures), len(order), failures)
        voxels = self._finish(raw, [self.frames[i].rescale for i in order])
        if failures:  # rescale per frame may differ: blank in modality units too
            _fill_lowest(voxels, list(failures), len(order), failures)
        volume = self._volume(voxels.reshape(self.shape))
        if failures:
            _report_failures(volume, failures, len(order))
        return volume

    # -- decoding ---------------------------------------------------------------------------

    def _raw_dtype(self) -> np.dtype:
        inst = self.frames[0].instance
        if inst.float_pixels and inst.bits_allocated in (32, 64):
            return px.stored_dtype(inst.bits_allocated, True, floating=True)
        if self.colour or inst.bits_allocated not in (8, 16, 32):
            return np.dtype(np.uint8)
        return px.stored_dtype(inst.bits_allocated, bool(inst.pixel_representation))

    def _decode_all(self, order: list[int], progress: ProgressCallback | None,
                    cancel: CancelCheck | None) -> tuple[np.ndarray, dict[int, DicomError]]:
        """(raw stored values, {slot: error} of the images whose file failed to decode)."""
        shape = (len(order), self.rows, self.columns, *((3,) if self.colour else ()))
        checks.affordable(int(np.prod(shape, dtype=np.float64)) * self._raw_dtype().itemsize,
                          self.frames[order[0]].instance.path if order else None)
        try:
            raw = np.empty(shape, self._raw_dtype())
        except MemoryError as exc:
            raise DicomError(self.frames[order[0]].instance.path, "There is not enough memory "
                             "for these images; close other series and try again.") from exc
        slot_of = {frame_index: slot for slot, frame_index in enumerate(order)}
        ticker = _Ticker(len(order), progress)
        done, failures = 0, {}
        for path, indices in _by_file(self.frames, order):
            if cancel is not None and cancel():
                raise LoadCancelled(path)
            try:
                raw = _guarded(path, self._decode_file, path, indices, raw, slot_of)
            except DicomError as exc:  # one bad file must not hide the good ones
                failures.update({slot_of[i]: exc for i in indices})
            done += len(indices)
            ticker(done)
        ticker(done, force=True)
        return raw, failures

    def _decode_file(self, path: str, indices: list[int], raw: np.ndarray,
                     slot_of: dict[int, int]) -> np.ndarray:
        if path in self.refused:  # its header declares more than the file holds
            raise self.refused[path]
        first = self.frames[indices[0]]
        how = _strategy(first.instance, self.colour, self.lut)
        if how == "pydicom" or first.tile is not None:  # whole file once (a mosaic: all tiles)
            frames = self._decode_images(first, how)
            if frames.dtype != raw.dtype and not np.can_cast(frames.dtype, raw.dtype, "safe"):
                raw = raw.astype(np.result_type(raw.dtype, frames.dtype))
            for i in indices:
                frame = self.frames[i]
                raw[slot_of[i]] = mosaic.tile_of(frames[frame.frame], frame.tile)
            return raw
        for i in indices:
            self._decode_fast(self.frames[i], raw[slot_of[i]], how)
        return raw

    def _decode_fast(self, frame: plan.Frame, out: np.ndarray, how: str) -> None:
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

    def _decode_one(self, frame: plan.Frame) -> np.ndarray:
        if frame.instance.path in self.refused:
            raise self.refused[frame.instance.path]
        how = _strategy(frame.instance, self.colour, self.lut)
        return mosaic.tile_of(self._decode_images(frame, how, one=True)[0], frame.tile)

    def _decode_images(self, frame: plan.Frame, how: str, *, one: bool = False) -> np.ndarray:
        """The stored images of the frame's file (only the frame's own with `one`) as
        (images, rows, columns[, 3]); a mosaic's is the whole tiled picture."""
        inst = frame.instance
        if how == "pydicom":
            ds = px.read_dataset(inst.path)
            return px.decode_dataset(inst.path, ds, frame.frame if one else None)
        out = np.empty((1, inst.rows, inst.columns), self._raw_dtype())
        self._decode_fast(frame, out[0], how)
        return out

    def _finish(self, raw: np.ndarray, rescales: list[px.Rescale]) -> np.ndarray:
        """Unused bits, then the Modality LUT (rescale or table); colour passes through."""
        if self.colour:
            return raw
        if raw.dtype.kind == "f":  # Float Pixel Data: the stored values are the values
            identity = all(r.is_identity for r in rescales)
            return raw if identity else px.to_float32(raw, rescales)
        px.fix_unused_bits(raw, int(self.reference.get("BitsStored") or 0))
        if self.lut is not None:
            return px.apply_lut_table(raw, *self.lut)
        if self.dose:  # Gy are fractions: float32 even when DoseGridScaling is a whole number
            return px.to_float32(raw, rescales)
        return px.to_modality(raw, rescales)

    # -- result ------------------------------------------------------------------------------

    def _volume(self, voxels: np.ndarray) -> Volume:
        ref = self.reference
        lut, first = self.voi
        sources = [[self.source(k, t) for k in range(self.slice_count)]
                   for t in range(len(self.grid))]
        return Volume(
            voxels=voxels, affine=self.affine,
            modality="RTDOSE" if self.dose else str(ref.get("Modality", "")),
            photometric=self.photometric, windows=list(self.windows), voi_lut=lut,
            voi_lut_first=first, sources=sources[0],
            time_sources=sources if len(sources) > 1 else [], series=self.series,
            description=str(ref.get("SeriesDescription", "")),
            warnings=self.warnings + duplicate_uid_notes([s for t in sources for s in t]),
            has_geometry=self.has_geometry, patient_orientation=self.patient_orientation,
            spacing_known=self.spacing_known,
            frame_rate=self.frame_rate, header=dict(self.header))


def duplicate_uid_notes(sources: list[SliceSource]) -> list[str]:
    """A warning per SOPInstanceUID that several files share (a copy re-sent under new file
    names, a broken anonymiser): a DICOM SEG or SR names images by that UID, so annotations of
    such a series cannot say which image they belong to (they are refused when saved)."""
    files: dict[str, list[str]] = {}
    for source in sources:
        paths = files.setdefault(source.sop_instance_uid, [])
        if source.sop_instance_uid and source.path not in paths:
            paths.append(source.path)
    return [f"{len(paths)} files share the SOP Instance UID {uid} "
            f"({', '.join(Path(p).name for p in paths[:4])}{', ...' if len(paths) > 4 else ''})"
            ": annotations of this series cannot be saved as DICOM SEG or SR"
            for uid, paths in files.items() if len(paths) > 1]


def _table_or_note(read: Callable[..., object], ref: object, fallback: object,
                   warnings: list[str], instead: str) -> object:
    """A LUT from the header, or `fallback` and a warning saying why and what instead."""
    try:
        return read(ref)
    except DicomError as exc:
        warnings.append(f"{exc.reason[:1].upper()}{exc.reason[1:]}: {instead}.")
        return fallback


def header_facts(ref: object, first: Instance | None = None) -> dict[str, str]:
    """HEADER_KEYWORDS present in `ref` as text ("" values left out); the slice thickness
    falls back to the first image's (an enhanced file keeps it in its functional groups)."""
    facts: dict[str, str] = {}
    for keyword in HEADER_KEYWORDS:
        text = _as_text(ref.get(keyword))  # type: ignore[attr-defined]
        if text:
            facts[keyword] = text
    if "SliceThickness" not in facts and first is not None and first.slice_thickness:
        facts["SliceThickness"] = f"{first.slice_thickness:g}"
    return facts


def _as_text(value: object) -> str:
    """A header value as one line of text; multi-valued elements joined by backslashes."""
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v).strip() for v in value)  # type: ignore[union-attr]
    return str(value).strip()


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


def _guarded(path: str, decode: Callable[..., np.ndarray], *args: object) -> np.ndarray:
    """Run a decode step; a frame that does not fit its header (fewer frames than announced,
    other size) is a DicomError like any corrupt data, never a bare numpy error."""
    try:
        return decode(*args)
    except (DicomError, LoadCancelled):
        raise
    except (ValueError, IndexError, TypeError, KeyError, AttributeError, NotImplementedError,
            struct.error) as exc:  # undecodable header values read while decoding too
        raise DicomError(path, f"The image data does not match its header ({exc}).") from exc
    except MemoryError as exc:
        raise DicomError(path, "There is not enough memory to decode this image; close other "
                               "series and try again.") from exc


def _fill_lowest(images: np.ndarray, bad: list[int], count: int,
                 failures: dict[int, DicomError]) -> None:
    """Blank the failed images with the lowest value of the decoded ones (air on CT), so a
    window set on the rest shows them black. Raises when nothing decoded at all."""
    good = [s for s in range(count) if s not in failures]
    if not good:
        first = failures[min(failures)]
        raise DicomError(first.path, first.reason)
    colour = images.ndim == 4  # (images, rows, columns, 3): black
    lowest = 0 if colour else min(images[s].min() for s in good)
    for s in bad:
        images[s] = lowest


def _report_failures(volume: Volume, failures: dict[int, DicomError], count: int) -> None:
    """bad_slices per image and one warning line naming the files (first few) and reasons."""
    for slot, exc in failures.items():
        volume.bad_slices[slot] = f"{Path(exc.path or '').name}: {exc.reason}"
    files: dict[str, str] = {}
    for slot in sorted(failures):
        files.setdefault(Path(failures[slot].path or "").name, failures[slot].reason)
    named = [f"{name} ({reason.rstrip('.')})" for name, reason in list(files.items())[:3]]
    more = f", and {len(files) - 3} more files" if len(files) > 3 else ""
    volume.warnings.append(f"{len(failures)} of {count} images could not be decoded and are "
                           f"shown blank: {', '.join(named)}{more}.")


def _by_file(frames: list[plan.Frame], order: list[int]) -> list[tuple[str, list[int]]]:
    """Frame indices grouped by file, so a multi-frame file is decoded once."""
    groups: dict[str, list[int]] = {}
    for i in order:
        groups.setdefault(frames[i].instance.path, []).append(i)
    return list(groups.items())


def _strategy(inst: Instance, colour: bool, lut: object) -> str:
    """native (read at offset), rle (pylibjpeg-rle) or pydicom (everything else)."""
    simple = (not colour and lut is None and inst.pixel_data_offset is not None
              and inst.samples_per_pixel == 1
              and inst.bits_allocated in ((32, 64) if inst.float_pixels else (8, 16, 32)))
    if simple and inst.transfer_syntax_uid in px.NATIVE_LE:
        return "native"
    if simple and inst.transfer_syntax_uid == px.RLE_LOSSLESS:
        return "rle"
    return "pydicom"


