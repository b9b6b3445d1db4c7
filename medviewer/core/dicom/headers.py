"""One file's header facts -> `Instance` (+ the patient/study/series facts used for grouping).

Why not `pydicom.dcmread`: a scan reads thousands of headers and needs ~30 of their elements
and the byte offset of the pixel data. A flat walk over the first few KB of the file, decoding
only the wanted elements, is several times faster than building a pydicom Dataset, and it
never reads the pixel data. Files the walk does not handle (big endian, deflated, no File Meta
preamble, anything odd) go through pydicom instead, so the fast path can stay simple.
"""

from __future__ import annotations

import os
import struct
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pydicom
from pydicom.charset import convert_encodings, decode_bytes

from medviewer.core.dicom.errors import DicomError
from medviewer.core.dicom.model import Instance

PN_DELIMITERS = {0x5C, 0x3D, 0x5E}  # \ = ^ keep their meaning in person names
TEXT_TAGS = {"PatientName", "StudyDescription", "SeriesDescription", "BodyPartExamined"}


@dataclass
class HeaderFacts:
    """What a file says about its patient, study and series: the keys of the browser tree."""

    patient_id: str = ""
    patient_name: str = ""
    birth_date: str = ""
    sex: str = ""
    study_instance_uid: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession_number: str = ""
    series_instance_uid: str = ""
    series_number: int | None = None
    series_description: str = ""
    series_date: str = ""
    series_time: str = ""
    modality: str = ""
    body_part: str = ""
    has_pixels: bool = False


# --- the flat walk ----------------------------------------------------------------------------

# tag -> (keyword, how to decode the raw value); the only elements a scan keeps
TAGS: dict[int, tuple[str, str]] = {
    0x00020002: ("MediaStorageSOPClassUID", "str"),
    0x00020010: ("TransferSyntaxUID", "str"),
    0x00080005: ("SpecificCharacterSet", "str"),
    0x00080016: ("SOPClassUID", "str"),
    0x00080018: ("SOPInstanceUID", "str"),
    0x00080020: ("StudyDate", "str"),
    0x00080021: ("SeriesDate", "str"),
    0x00080030: ("StudyTime", "str"),
    0x00080031: ("SeriesTime", "str"),
    0x00080032: ("AcquisitionTime", "str"),
    0x00080033: ("ContentTime", "str"),
    0x00080050: ("AccessionNumber", "str"),
    0x00080060: ("Modality", "str"),
    0x00081030: ("StudyDescription", "str"),
    0x0008103E: ("SeriesDescription", "str"),
    0x00100010: ("PatientName", "str"),
    0x00100020: ("PatientID", "str"),
    0x00100030: ("PatientBirthDate", "str"),
    0x00100040: ("PatientSex", "str"),
    0x00180015: ("BodyPartExamined", "str"),
    0x00180050: ("SliceThickness", "ds"),
    0x0020000D: ("StudyInstanceUID", "str"),
    0x0020000E: ("SeriesInstanceUID", "str"),
    0x00200011: ("SeriesNumber", "is"),
    0x00200013: ("InstanceNumber", "is"),
    0x00200032: ("ImagePositionPatient", "ds"),
    0x00200037: ("ImageOrientationPatient", "ds"),
    0x00280002: ("SamplesPerPixel", "us"),
    0x00280004: ("PhotometricInterpretation", "str"),
    0x00280008: ("NumberOfFrames", "is"),
    0x00280010: ("Rows", "us"),
    0x00280011: ("Columns", "us"),
    0x00280030: ("PixelSpacing", "ds"),
    0x00280100: ("BitsAllocated", "us"),
    0x00280103: ("PixelRepresentation", "us"),
}
# Enhanced multi-frame geometry: shared groups, first per-frame item, and the macros inside
PER_FRAME = 0x52009230
DESCEND = {0x52009229, PER_FRAME, 0x00209113, 0x00209116, 0x00289110}
PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT",
            b"UV"}
SHORT_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
             b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
IMPLICIT_LITTLE = "1.2.840.10008.1.2"
NOT_WALKED = {"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}  # big endian, deflated
FIRST_CHUNK = 8192  # bytes read first: a CT header is 2-4 KB; more is read when needed
MAX_DEPTH = 16  # sequences nest 3-4 deep in practice
_HEAD, _LONG = struct.Struct("<HHI"), struct.Struct("<I")


class Unsupported(Exception):
    """The flat walk declines this file; pydicom reads it instead."""


class Truncated(Exception):
    """An element runs past the end of the file."""


class _Walk:
    """Walks a file's elements from a growing prefix of its bytes, keeping only `TAGS`."""

    def __init__(self, fh: Any, size: int) -> None:
        self.fh, self.size, self.explicit = fh, size, True
        self.buf = fh.read(FIRST_CHUNK)
        self.pixel: tuple[int, bool] | None = None
        self.start = 132  # of the dataset, after the File Meta
        self.depth = 0  # of nested sequences

    def need(self, end: int) -> None:
        if end <= len(self.buf):
            return
        if end > self.size:
            raise Truncated(f"the header runs past the end of the file (byte {end} of {self.size})")
        self.fh.seek(len(self.buf))
        want = min(self.size, max(end, 4 * len(self.buf)))
        self.buf += self.fh.read(want - len(self.buf))
        if end > len(self.buf):
            raise Truncated("the file shrank while it was being read")

    def header(self, pos: int) -> tuple[int, int, int]:
        """(tag, value length, value position) of the element at `pos`. The hot loop of a scan:
        `need` is called only near the end of what has been read."""
        buf = self.buf
        if pos + 12 > len(buf):
            self.need(pos + 8)
            buf = self.buf
        group, element, length = _HEAD.unpack_from(buf, pos)
        if group == 0xFFFE or not self.explicit:
            return group << 16 | element, length, pos + 8
        vr = buf[pos + 4 : pos + 6]
        if vr in SHORT_VRS:
            return group << 16 | element, length >> 16, pos + 8
        if vr not in LONG_VRS:
            raise Unsupported(f"VR {vr!r}")  # implicit data under an explicit syntax, garbage
        if pos + 12 > len(buf):
            self.need(pos + 12)
            buf = self.buf
        length = _LONG.unpack_from(buf, pos + 8)[0]
        if vr == b"UN" and length == UNDEFINED:
            raise Unsupported("UN of undefined length")  # its items are implicit VR
        return group << 16 | element, length, pos + 12

    def meta(self) -> dict[int, bytes]:
        """File Meta (always explicit little endian), then switch to the dataset's encoding."""
        found, pos = {}, 132
        while True:
            self.need(pos + 8)
            if self.buf[pos : pos + 2] != b"\x02\x00":
                break
            tag, length, vpos = self.header(pos)
            if tag in TAGS:
                self.need(vpos + length)
                found[tag] = self.buf[vpos : vpos + length]
            pos = vpos + length
        syntax = found.get(0x00020010, b"").decode("latin-1").strip("\0 ")
        if not syntax or syntax in NOT_WALKED:
            raise Unsupported(syntax or "no transfer syntax")
        self.explicit = syntax != IMPLICIT_LITTLE
        self.start = pos
        return found

    def dataset(self, pos: int, end: int | None, into: dict | None, top: bool = False) -> int:
        """Walk elements from `pos` to `end` (None: up to an item delimiter). Short-VR elements
        are decoded inline (most of a header); `header` handles the rest."""
        buf, explicit = self.buf, self.explicit
        while end is None or pos < end:
            if pos + 12 > len(buf):
                tag, length, vpos = self.header(pos)
                buf = self.buf
            else:
                group, element, length = _HEAD.unpack_from(buf, pos)
                tag, vpos = group << 16 | element, pos + 8
                if explicit and group != 0xFFFE:
                    if buf[pos + 4 : pos + 6] in SHORT_VRS:
                        length >>= 16
                    else:
                        tag, length, vpos = self.header(pos)
            if tag == ITEM_END and end is None:
                return vpos
            if top and tag in PIXEL_TAGS:
                self.pixel = self.pixel_location(length, vpos)
                return vpos
            if length == UNDEFINED:
                pos = self.sequence(vpos, None, into if tag in DESCEND else None, tag == PER_FRAME)
                buf = self.buf
                continue
            if into is not None and tag in TAGS:
                if vpos + length > len(buf):
                    self.need(vpos + length)
                    buf = self.buf
                into.setdefault(tag, buf[vpos : vpos + length])
            elif into is not None and tag in DESCEND:
                self.sequence(vpos, vpos + length, into, tag == PER_FRAME)
                buf = self.buf
            pos = vpos + length
        if end is not None and pos > end:
            raise Truncated(f"an element runs past its container (byte {pos} > {end})")
        return pos

    def sequence(self, pos: int, end: int | None, into: dict | None, first_only: bool) -> int:
        """Walk the items of a sequence; with `first_only` only item 0 is kept."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Unsupported("sequences nested too deep")  # pydicom decides what it is
        try:
            return self._items(pos, end, into, first_only)
        finally:
            self.depth -= 1

    def _items(self, pos: int, end: int | None, into: dict | None, first_only: bool) -> int:
        index = 0
        while end is None or pos < end:
            tag, length, vpos = self.header(pos)
            if tag == SEQUENCE_END:
                return vpos
            if tag != ITEM:
                raise Unsupported(f"element {tag:08X} where a sequence item was expected")
            keep = into if index == 0 or not first_only else None
            if length == UNDEFINED:
                pos = self.dataset(vpos, None, keep)
            else:
                pos = self.dataset(vpos, vpos + length, keep) if keep is not None else vpos + length
            index += 1
        return pos

    def pixel_location(self, length: int, vpos: int) -> tuple[int, bool]:
        if length != UNDEFINED:
            if vpos + length > self.size:
                raise Truncated(f"pixel data needs {length} bytes, the file has "
                                f"{max(0, self.size - vpos)}")
            return vpos, False
        tag, table_length, item_pos = self.header(vpos)
        if tag != ITEM or item_pos + table_length + 8 > self.size:
            raise Truncated("encapsulated pixel data without offset table item or fragments")
        return item_pos + table_length, True


def walk_file(path: str) -> tuple[dict[int, bytes], tuple[int, bool] | None]:
    """Wanted raw values and (pixel data offset, encapsulated); Unsupported if not walkable."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        walk = _Walk(fh, size)
        if walk.buf[128:132] != b"DICM":
            raise Unsupported("no DICM preamble")
        try:
            values = walk.meta()
            walk.dataset(walk.start, size, values, top=True)
        except Truncated as exc:
            raise DicomError(path, f"truncated or corrupt header: {exc}") from exc
        except struct.error as exc:
            raise Unsupported(str(exc)) from exc
    return values, walk.pixel


def first_fragment_offset(path: str, value_tell: int, little: bool) -> int:
    """Offset of the first fragment item after the Basic Offset Table at `value_tell`."""
    with open(path, "rb") as fh:
        fh.seek(value_tell)
        head = fh.read(8)
    if len(head) < 8:
        raise DicomError(path, "truncated encapsulated pixel data")
    length = int.from_bytes(head[4:8], "little" if little else "big")
    return value_tell + 8 + length


def read_header(path: str | Path) -> tuple[Instance, HeaderFacts] | None:
    """Header facts of one file; None when it is not DICOM; DicomError when it is but is broken."""
    path = str(path)
    try:
        values, pixel = walk_file(path)
    except Unsupported:
        return _read_with_pydicom(path)
    except OSError as exc:
        raise DicomError(path, f"cannot read the file: {exc.strerror or exc}") from exc
    return _build(path, values, pixel)


def read_instance(path: str | Path) -> Instance | None:
    """The per-file record only (see `read_header` for the grouping facts)."""
    header = read_header(path)
    return None if header is None else header[0]


def _decode(values: dict[int, bytes | Any]) -> dict[str, Any]:
    """Raw element bytes -> Python values by keyword, decoding text in the file's character set."""
    charset = values.get(0x00080005)
    fast = isinstance(charset, bytes) and charset.strip()  # pydicom values arrive decoded
    encodings = _encodings(_text(charset)) if fast else None
    out: dict[str, Any] = {}
    for tag, raw in values.items():
        keyword, kind = TAGS[tag]
        if not isinstance(raw, bytes | bytearray):
            out[keyword] = raw  # already decoded (pydicom path)
        elif kind == "str":
            out[keyword] = _decode_text(keyword, raw, encodings)
        else:
            out[keyword] = _NUMBER_DECODERS[kind](raw)
    return out


@lru_cache(maxsize=64)
def _encodings(charset: str) -> list[str]:
    """Python codecs for a SpecificCharacterSet value; unknown terms fall back to the default
    quietly (the scan reports problems, it does not print warnings)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_encodings(charset.split("\\"))


def _decode_text(keyword: str, raw: bytes, encodings: list[str] | None) -> str:
    if encodings and keyword in TEXT_TAGS and not (raw.isascii() and b"\x1b" not in raw):
        delimiters = PN_DELIMITERS if keyword == "PatientName" else {0x5C}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # undecodable bytes are replaced, not reported
            return decode_bytes(raw, encodings, delimiters).strip("\0 ")
    return raw.decode("latin-1").strip("\0 ")  # ASCII, in every DICOM character set


def _text(raw: bytes) -> str:
    return raw.decode("latin-1").strip("\0 ")


def _numbers(raw: bytes) -> tuple[float, ...] | None:
    try:
        return tuple(float(v) for v in _text(raw).split("\\") if v.strip())
    except ValueError:
        return None


def _integer(raw: bytes) -> int | None:
    text = _text(raw).split("\\")[0].strip()
    try:
        return int(float(text)) if text else None
    except ValueError:
        return None


def _ushort(raw: bytes) -> int | None:
    return int.from_bytes(raw[:2], "little") if len(raw) >= 2 else None


_NUMBER_DECODERS = {"ds": _numbers, "is": _integer, "us": _ushort}


def _build(path: str, values: dict[int, Any], pixel: tuple[int, bool] | None,
           claimed: bool = True) -> tuple[Instance, HeaderFacts] | None:
    """Decoded header -> (Instance, HeaderFacts). A file with neither SOP class nor pixel data
    is None when it never `claimed` to be DICOM (no DICM marker), else a DicomError."""
    v = _decode(values)
    v.setdefault("SOPClassUID", v.get("MediaStorageSOPClassUID", ""))
    if not v["SOPClassUID"] and pixel is None:
        if not claimed:
            return None
        raise DicomError(path, "no SOP Class UID and no pixel data: not a usable DICOM object")
    return _instance(path, v, pixel), _facts(v, pixel is not None)


def _instance(path: str, v: dict[str, Any], pixel: tuple[int, bool] | None) -> Instance:
    return Instance(
        path=path,
        sop_instance_uid=v.get("SOPInstanceUID", ""),
        sop_class_uid=v.get("SOPClassUID", ""),
        instance_number=v.get("InstanceNumber"),
        rows=v.get("Rows") or 0,
        columns=v.get("Columns") or 0,
        number_of_frames=max(1, v.get("NumberOfFrames") or 1),
        position=_exactly(v.get("ImagePositionPatient"), 3),
        orientation=_exactly(v.get("ImageOrientationPatient"), 6),
        pixel_spacing=_exactly(v.get("PixelSpacing"), 2),
        slice_thickness=(v.get("SliceThickness") or (None,))[0],
        acquisition_time=v.get("AcquisitionTime") or v.get("ContentTime", ""),
        transfer_syntax_uid=v.get("TransferSyntaxUID", ""),
        photometric=v.get("PhotometricInterpretation", ""),
        samples_per_pixel=v.get("SamplesPerPixel") or 1,
        bits_allocated=v.get("BitsAllocated") or 0,
        pixel_representation=v.get("PixelRepresentation") or 0,
        pixel_data_offset=pixel[0] if pixel else None,
    )


def _exactly(numbers: tuple[float, ...] | None, count: int) -> tuple[float, ...] | None:
    return tuple(numbers) if numbers and len(numbers) == count else None


def _facts(v: dict[str, Any], has_pixels: bool) -> HeaderFacts:
    return HeaderFacts(
        patient_id=v.get("PatientID", ""),
        patient_name=v.get("PatientName", ""),
        birth_date=v.get("PatientBirthDate", ""),
        sex=v.get("PatientSex", ""),
        study_instance_uid=v.get("StudyInstanceUID", ""),
        study_date=v.get("StudyDate", ""),
        study_time=v.get("StudyTime", ""),
        study_description=v.get("StudyDescription", ""),
        accession_number=v.get("AccessionNumber", ""),
        series_instance_uid=v.get("SeriesInstanceUID", ""),
        series_number=v.get("SeriesNumber"),
        series_description=v.get("SeriesDescription", ""),
        series_date=v.get("SeriesDate", ""),
        series_time=v.get("SeriesTime", ""),
        modality=v.get("Modality", ""),
        body_part=v.get("BodyPartExamined", ""),
        has_pixels=has_pixels,
    )


# --- the slow, general path -------------------------------------------------------------------


def _read_with_pydicom(path: str) -> tuple[Instance, HeaderFacts] | None:
    """pydicom for what the flat walk declines; pixel value bytes stay deferred (not read)."""
    has_preamble = _has_preamble(path)
    if not has_preamble and not _plausible_raw_dataset(path):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # odd files are expected here; problems are reported
            ds = pydicom.dcmread(path, defer_size=256, force=not has_preamble)
            values = _values_from_dataset(ds)
            pixel = _pixel_location(path, ds)
    except Exception as exc:  # pydicom raises many types on garbage; none may escape a scan
        if not has_preamble:
            return None  # it never claimed to be DICOM: skip it quietly
        raise DicomError(path, f"unreadable DICOM header: {exc}") from exc
    return _build(path, values, pixel, claimed=has_preamble)


def _has_preamble(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(132)[128:132] == b"DICM"


def _plausible_raw_dataset(path: str) -> bool:
    """An old file without preamble starts with a low even group (0002..0010), either endian."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if len(head) < 8:
        return False
    little, big = int.from_bytes(head[:2], "little"), int.from_bytes(head[:2], "big")
    return any(g in (0x0002, 0x0004, 0x0008, 0x0010) for g in (little, big))


def _values_from_dataset(ds: pydicom.Dataset) -> dict[int, Any]:
    """The wanted elements as decoded Python values, descending into functional groups."""
    values: dict[int, Any] = {}
    _collect(ds, values)
    meta = getattr(ds, "file_meta", None) or {}
    values[0x00020010] = str(meta.get("TransferSyntaxUID", ""))
    values[0x00020002] = str(meta.get("MediaStorageSOPClassUID", ""))
    for seq_tag in (0x52009229, 0x52009230):
        items = ds.get(seq_tag)
        if items is not None and items.value:
            for group in items.value[0]:
                if group.VR == "SQ" and group.value:
                    _collect(group.value[0], values)
    return values


def _collect(ds: pydicom.Dataset, values: dict[int, Any]) -> None:
    for tag, (_keyword, kind) in TAGS.items():
        if tag in values or tag >> 16 == 0x0002 or tag not in ds:
            continue
        value = ds[tag].value
        if value is None or value == "":
            continue
        values[tag] = _python_value(value, kind)


def _python_value(value: Any, kind: str) -> Any:
    if kind == "str":
        return str(value).strip("\0 ")
    if kind == "ds":
        items = value if isinstance(value, list | tuple | pydicom.multival.MultiValue) else [value]
        return tuple(float(x) for x in items)
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        value = value[0]
    return int(value)


def _pixel_location(path: str, ds: pydicom.Dataset) -> tuple[int, bool] | None:
    """(offset of the value or of the first fragment, encapsulated) from pydicom's raw element."""
    for tag in (0x7FE00010, 0x7FE00008, 0x7FE00009):
        if tag in ds:
            raw = ds.get_item(tag, keep_deferred=True)
            tell = getattr(raw, "value_tell", None)
            if tell is None:
                return None
            if raw.length == 0xFFFFFFFF:
                return first_fragment_offset(path, tell, ds.is_little_endian), True
            return tell, False
    return None
