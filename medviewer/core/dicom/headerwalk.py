"""The flat byte walk over a DICOM file's header: the fast path of a scan.

Why not `pydicom.dcmread`: a scan reads thousands of headers and needs ~30 of their elements
and the byte offset of the pixel data. Walking the first few KB of the file and keeping only
the raw bytes of the wanted elements (`TAGS`) is several times faster than building a pydicom
Dataset, and it never reads the pixel data. The walk declines (`Unsupported`) whatever it does
not handle - big endian, deflated, no File Meta preamble, anything odd - and headers.py then
reads the file with pydicom, so this path can stay simple. Decoding the kept bytes into
values is headers.py's job.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from medviewer.core.dicom.errors import DicomError
from medviewer.core.paths import open_regular

# tag -> (keyword, how to decode the raw value); the only elements a scan keeps
TAGS: dict[int, tuple[str, str]] = {
    0x00020002: ("MediaStorageSOPClassUID", "str"),
    0x00020010: ("TransferSyntaxUID", "str"),
    0x00080005: ("SpecificCharacterSet", "str"),
    0x00080008: ("ImageType", "str"),
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
    0x00200100: ("TemporalPositionIdentifier", "is"),
    0x00280002: ("SamplesPerPixel", "us"),
    0x00280004: ("PhotometricInterpretation", "str"),
    0x00280008: ("NumberOfFrames", "is"),
    0x00280010: ("Rows", "us"),
    0x00280011: ("Columns", "us"),
    0x00280030: ("PixelSpacing", "ds"),
    0x00280100: ("BitsAllocated", "us"),
    0x00280103: ("PixelRepresentation", "us"),
    0x00281052: ("RescaleIntercept", "ds"),
    0x00281053: ("RescaleSlope", "ds"),
    # Siemens mosaic: the private creator of block 0x10 and its CSA image header (mosaic.py)
    0x00290010: ("CSACreator", "str"),
    0x00291010: ("CSAImageHeader", "bytes"),
    # which pixel element the file has: Float / Double Float Pixel Data (parametric maps)
    0x7FE00008: ("FloatPixelData", "flag"),
    0x7FE00009: ("DoubleFloatPixelData", "flag"),
}
# Enhanced multi-frame: shared groups, first per-frame item, and the macros inside (plane
# position / orientation, pixel measures, pixel value transformation = rescale)
PER_FRAME = 0x52009230
DESCEND = {0x52009229, PER_FRAME, 0x00209113, 0x00209116, 0x00289110, 0x00289145}
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
                if into is not None and tag in TAGS:
                    into[tag] = b"\x01"
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
    """Wanted raw values and (pixel data offset, encapsulated); Unsupported if not walkable.
    Only regular files are opened: a FIFO, device or kernel file (/proc/kmsg blocks a read
    forever) raises paths.UnsafePath, an OSError, before anything is read."""
    with open_regular(path) as fh:
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
    with open_regular(path) as fh:
        fh.seek(value_tell)
        head = fh.read(8)
    if len(head) < 8:
        raise DicomError(path, "truncated encapsulated pixel data")
    length = int.from_bytes(head[4:8], "little" if little else "big")
    return value_tell + 8 + length
