"""Pixel decoding helpers: stored values of one frame into a caller's buffer, then rescale.

Two fast paths skip pydicom's dataset machinery because a scanned `Instance` already knows
where its pixels are: native little-endian data is read straight into the output array at its
byte offset, and RLE fragments are handed to pylibjpeg-rle's decoder. Everything else
(JPEG family, JPEG 2000, HTJ2K, deflate, big endian, colour, 1-bit) goes through pydicom.
Every failure becomes a `DicomError` with a sentence a radiologist can act on.
"""

from __future__ import annotations

import re
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import UID

from medviewer.core.dicom.errors import DicomError
from medviewer.core.paths import open_regular

NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
# Pixel Data, Float Pixel Data, Double Float Pixel Data (little endian tag bytes)
_PIXEL_TAGS = (b"\xe0\x7f\x10\x00", b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00")
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_ITEM, _SEQ_END = 0xFFFEE000, 0xFFFEE0DD


@dataclass(frozen=True)
class Rescale:
    """The linear Modality LUT of one frame: modality value = slope * stored + intercept."""

    slope: float = 1.0
    intercept: float = 0.0

    @property
    def is_integer(self) -> bool:
        """Whole numbers small enough for integer arithmetic (int64 never overflows)."""
        return float(self.slope).is_integer() and float(self.intercept).is_integer() and \
            abs(self.slope) <= 1 << 16 and abs(self.intercept) <= 1 << 31

    @property
    def is_identity(self) -> bool:
        return self.slope == 1.0 and self.intercept == 0.0


def stored_dtype(bits_allocated: int, signed: bool, floating: bool = False) -> np.dtype:
    """The numpy type holding one stored sample (little endian); `floating` for Float (32)
    and Double Float (64) Pixel Data."""
    if floating and bits_allocated in (32, 64):
        return np.dtype(f"<f{bits_allocated // 8}")
    if bits_allocated not in (8, 16, 32) or floating:
        raise ValueError(bits_allocated)
    return np.dtype(f"<{'i' if signed else 'u'}{bits_allocated // 8}")


# -- fast paths ----------------------------------------------------------------------------------


def read_native(path: str, offset: int, out: np.ndarray, skip: int = 0) -> None:
    """Read stored pixels at `offset` + `skip` (a later frame) straight into `out`.

    The bytes just before `offset` must be the Pixel Data element header, which catches an
    index older than the file."""
    try:
        with open_regular(path) as f:  # never a pipe or /proc file swapped in since the scan
            f.seek(max(0, offset - 12))
            head = f.read(min(offset, 12))
            if not any(tag in head for tag in _PIXEL_TAGS):
                raise DicomError(path, "The file changed since it was indexed; rescan the folder.")
            if skip:
                f.seek(offset + skip)
            got = f.readinto(memoryview(out).cast("B"))
    except OSError as exc:
        raise DicomError(path, f"The file cannot be read ({exc.strerror or exc}).") from exc
    if got < out.nbytes:
        raise DicomError(path, f"The image data is truncated ({got} of {out.nbytes} bytes): "
                               "the file was cut short, copy it again from the source.")


def read_fragments(path: str, offset: int) -> list[bytes]:
    """Encapsulated fragments (Basic Offset Table dropped) starting at `offset`."""
    try:
        with open_regular(path) as f:
            f.seek(max(0, offset - 12))
            head = f.read(min(offset, 12))
            data = f.read()
    except OSError as exc:
        raise DicomError(path, f"The file cannot be read ({exc.strerror or exc}).") from exc
    items, pos = [], 0
    while pos + 8 <= len(data):
        tag = struct.unpack_from("<HH", data, pos)
        length = struct.unpack_from("<I", data, pos + 4)[0]
        if (tag[0] << 16 | tag[1]) == _SEQ_END:
            break
        if (tag[0] << 16 | tag[1]) != _ITEM or pos + 8 + length > len(data):
            raise DicomError(path, "The compressed image data is truncated or corrupt.")
        items.append(data[pos + 8:pos + 8 + length])
        pos += 8 + length
    at_value = head.startswith(_PIXEL_TAGS[0]) and len(head) == 12
    return items[1:] if at_value and items else items


def decode_rle(path: str, fragment: bytes, out: np.ndarray, bits_allocated: int) -> None:
    """Decode one RLE frame (single sample per pixel) into `out`."""
    from rle.rle import decode_frame, decode_segment, parse_header

    try:
        frame = decode_frame(fragment, out.size, bits_allocated, "<")
        # the decoder takes a segment longer than Rows x Columns (a damaged header) and keeps
        # its start: a skewed image without a word (found by the fuzz suite)
        offsets = [o for o in parse_header(fragment[:64]) if o] + [len(fragment)]
        plane = len(decode_segment(fragment[offsets[0]:offsets[1]]))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the Rust decoder panics (a BaseException) on some data
        raise DicomError(path, f"The RLE image data is corrupt ({exc}).") from exc
    rle_plane_check(path, plane, out.shape[-2] * out.shape[-1])
    out.reshape(-1)[:] = np.frombuffer(frame, dtype=out.dtype)


def rle_plane_check(path: str, plane: int, expected: int) -> None:
    """Refuse RLE planes longer than the header's Rows x Columns (one padding byte allowed)."""
    if plane > expected + 1:
        raise DicomError(path, f"The RLE image data holds {plane:,} pixels per plane, the "
                               f"header's Rows x Columns {expected:,}: the header is damaged.")


# -- pydicom path --------------------------------------------------------------------------------

_DECODER_PACKAGES = {
    "JPEG-LS": "pyjpegls",
    "JPEG 2000": "pylibjpeg-openjpeg",
    "High-Throughput JPEG 2000": "pylibjpeg-openjpeg",
    "RLE": "pylibjpeg-rle",
    "JPEG": "pylibjpeg-libjpeg",
}


def missing_decoder_hint(ts: UID) -> str:
    name = ts.name if ts.is_valid else str(ts)
    package = next((p for key, p in _DECODER_PACKAGES.items() if key in name), "pylibjpeg")
    return (f"The images are compressed as {name} and no installed decoder could read them; "
            f"install '{package}' (pip install {package}) and reopen the series.")


def read_dataset(path: str, *, header_only: bool = False) -> Dataset:
    """The dataset (header only if asked), every reading failure turned into a DicomError.

    Files without the preamble and File Meta header (ACR-NEMA style, old PACS exports) are
    read with force=True and kept only when they look like a DICOM object; their transfer
    syntax is the encoding pydicom detected, so decoding works as for any other file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                with open_regular(path) as fh:
                    ds = pydicom.dcmread(fh, stop_before_pixels=header_only)
            except pydicom.errors.InvalidDicomError:
                ds = _read_without_meta(path, header_only)
    except DicomError:
        raise
    except (OSError, EOFError) as exc:
        raise DicomError(path, f"The file cannot be read ({exc}).") from exc
    except Exception as exc:  # pydicom raises many types on corrupt headers
        raise DicomError(path, f"The DICOM header is corrupt ({exc}).") from exc
    _infer_transfer_syntax(ds)
    return ds


def _read_without_meta(path: str, header_only: bool) -> Dataset:
    try:
        with open_regular(path) as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=header_only, force=True)
    except (OSError, EOFError):
        raise
    except Exception as exc:  # garbage parsed as elements: it never claimed to be DICOM
        raise DicomError(path, "This is not a DICOM file.") from exc
    if not any(k in ds for k in ("PixelData", "SOPClassUID")) and not (
            "Rows" in ds and "Columns" in ds):
        raise DicomError(path, "This is not a DICOM file.")
    return ds


def _infer_transfer_syntax(ds: Dataset) -> None:
    """A dataset read without File Meta gets the transfer syntax of its detected encoding."""
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        ds.file_meta = meta = pydicom.dataset.FileMetaDataset()
    if "TransferSyntaxUID" in meta:
        return
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None:
        implicit, little = ds.is_implicit_VR, ds.is_little_endian
    meta.TransferSyntaxUID = (pydicom.uid.ImplicitVRLittleEndian if implicit else
                              pydicom.uid.ExplicitVRLittleEndian if little else
                              pydicom.uid.ExplicitVRBigEndian)


def decode_dataset(path: str, ds: Dataset, index: int | None = None) -> np.ndarray:
    """All frames of `ds` as (frames, rows, cols[, 3]), or only frame `index` as (1, ...);
    colour converted to RGB uint8."""
    if not any(keyword in ds for keyword in PIXEL_KEYWORDS):
        # pydicom returns an empty dataset when encapsulated pixel data is cut short
        if ds.get("Rows") or not len(ds):
            raise DicomError(path, "The image data is missing: the file was cut short, copy it "
                                   "again from the source.")
        raise DicomError(path, "The file holds no image (it has no Pixel Data).")
    from medviewer.core.dicom.checks import image_numbers  # checks sizes; pixels decodes

    image_numbers(ds, path)
    check_codestreams(path, ds, index)
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            frames = int(ds.get("NumberOfFrames") or 1)
            if index is not None and frames > 1:  # one frame of a long multi-frame file
                ds.pixel_array_options(index=index)
                frames = 1
            arr = ds.pixel_array
        _padding_check(path, said)
    except DicomError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # decoders raise many types (Rust ones panic): say why
        raise DicomError(path, _decode_failure(ds, str(exc))) from exc
    arr = arr.reshape((frames, *(arr.shape[1:] if frames > 1 else arr.shape)))
    if _is_colour(ds):
        return _to_display_colour(arr, ds)
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)


_PADDING = re.compile(r"non-conformant padding - (\d+) vs\. (\d+) bytes")


def _padding_check(path: str, said: list[warnings.WarningMessage]) -> None:
    """pydicom calls an RLE segment longer than Rows x Columns 'padding' and keeps its start."""
    for message in said:
        found = _PADDING.search(str(message.message))
        if found:
            rle_plane_check(path, int(found[1]), int(found[2]))


# JPEG start-of-frame markers (baseline ... lossless, arithmetic) and JPEG-LS's SOF55
_SOF = {*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0), 0xF7}
_J2K_START = b"\xff\x4f\xff\x51"  # SOC then SIZ: the first bytes of every J2K codestream


def codestream_size(frame: bytes) -> tuple[int, int] | None:
    """(rows, columns) a JPEG, JPEG-LS or JPEG 2000 codestream declares in its own header;
    None when it names none (or is no such codestream)."""
    at = frame.find(_J2K_START, 0, 4096)  # a JP2 file wraps the codestream in boxes
    if at >= 0 and len(frame) >= at + 24:
        x, y, x0, y0 = struct.unpack_from(">IIII", frame, at + 8)
        return max(0, y - y0), max(0, x - x0)
    if not frame.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 4 <= min(len(frame), 1 << 20):  # markers before the image data
        if frame[pos] != 0xFF:
            return None
        marker = frame[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker in _SOF:
            if pos + 9 > len(frame):
                return None
            rows, columns = struct.unpack_from(">HH", frame, pos + 5)
            return (rows, columns) if rows else None  # 0: a DNL marker gives it later
        else:
            pos += 2 + struct.unpack_from(">H", frame, pos + 2)[0]
    return None


def check_codestreams(path: str, ds: Dataset, index: int | None) -> None:
    """Refuse a compressed frame whose codestream is larger than the header's Rows x Columns
    before a decoder allocates it (one flipped byte in a JPEG 2000 header asked for 7 GB)."""
    syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", ""))) if "file_meta" in ds.__dict__ \
        else None
    if syntax is None or not _codec_name(syntax) or _codec_name(syntax) == "RLE":
        return
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    try:
        frames = list(generate_frames(ds.PixelData, number_of_frames=int(
            ds.get("NumberOfFrames") or 1)))
    except Exception:  # damaged fragments: the decoder says so in its own words
        return
    for k, frame in enumerate(frames):
        if index is not None and k != index:
            continue
        size = codestream_size(frame)
        if size is not None and size[0] * size[1] > rows * columns:
            raise DicomError(path, f"The {_codec_name(syntax)} image data of frame {k + 1} is "
                                   f"{size[0]} x {size[1]} pixels but the header declares "
                                   f"{rows} x {columns}: the file is damaged.")


def _decode_failure(ds: Dataset, text: str) -> str:
    ts = ds.file_meta.get("TransferSyntaxUID") if "file_meta" in ds.__dict__ else None
    if "missing dependencies" in text or "No pixel data decoders" in text:
        return missing_decoder_hint(UID(str(ts)))
    if "less than expected" in text or "truncated" in text.lower():
        return "The image data is truncated: the file was cut short, copy it again from the source."
    detail = _first_plugin_message(text)
    codec = _codec_name(UID(str(ts))) if ts else ""
    return f"The {codec + ' ' if codec else ''}image data is corrupt and cannot be decoded " \
           f"({detail})."


def _codec_name(ts: UID) -> str:
    """'JPEG 2000', 'JPEG-LS', 'RLE', 'JPEG' for compressed syntaxes, '' for native ones."""
    name = ts.name if ts.is_valid else ""
    return next((key for key in _DECODER_PACKAGES if key in name and ts.is_compressed), "")


def _first_plugin_message(text: str) -> str:
    """pydicom lists one line per decoder plugin that failed: the first says enough."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and "plugins" in lines[0]:
        lines = lines[1:2]
    return " ".join(lines)[:120]


def _is_colour(ds: Dataset) -> bool:
    return int(ds.get("SamplesPerPixel", 1)) == 3 or ds.get("PhotometricInterpretation") == \
        "PALETTE COLOR"


def _to_display_colour(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """RGB uint8: palettes applied, YBR already converted by pydicom, 16-bit scaled down."""
    if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, _palette_little_endian(ds))
        bits = 16 if arr.dtype.itemsize > 1 else 8
    else:
        bits = int(ds.get("BitsStored", arr.dtype.itemsize * 8))
    if arr.dtype == np.uint8:
        return arr
    return (arr.astype(np.uint32) >> max(0, bits - 8)).clip(0, 255).astype(np.uint8)


def little_endian(ds: Dataset) -> bool:
    """Whether the dataset's transfer syntax is little endian (True when it names none)."""
    syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", ""))) if "file_meta" in ds.__dict__ \
        else None
    return syntax is None or not syntax.is_valid or syntax.is_little_endian


def _palette_little_endian(ds: Dataset) -> Dataset:
    """The palette elements with their (non-segmented) LUT data as little-endian words:
    pydicom's apply_color_lut reads those bytes in the machine's order whatever the file's, so
    a big-endian palette (OW words byte-swapped) comes out nearly black."""
    if little_endian(ds):
        return ds
    palette = Dataset()
    for tag in [0x00281101, 0x00281102, 0x00281103, 0x00281104]:  # descriptors
        if tag in ds:
            palette[tag] = ds[tag]
    for tag in [0x00281201, 0x00281202, 0x00281203, 0x00281204]:  # R, G, B, alpha data
        value = ds[tag].value if tag in ds else None
        if isinstance(value, bytes) and len(value) % 2 == 0:
            palette.add_new(tag, "OW", np.frombuffer(value, ">u2").astype("<u2").tobytes())
    if not any(tag in palette for tag in (0x00281201, 0x00281202, 0x00281203)):
        return ds  # segmented palettes: pydicom honours the file's byte order for those
    return palette


def modality_lut(ds: Dataset) -> tuple[int, np.ndarray] | None:
    """(first mapped value, table) of a Modality LUT Sequence, or None; DicomError with the
    reason when the table is broken (descriptor, entry size or data length)."""
    try:
        seq = ds.get("ModalityLUTSequence")
        item = seq[0] if seq else None
    except Exception as exc:  # a damaged sequence: pydicom raises many types
        raise DicomError(None, f"the Modality LUT cannot be read ({exc})") from exc
    if item is None:
        return None
    from pydicom.pixels import apply_modality_lut

    count, first = lut_descriptor(item, "Modality LUT")
    probe = np.arange(first, first + count, dtype=np.int64)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = np.asarray(apply_modality_lut(probe, ds))
    except Exception as exc:  # struct.error, TypeError, ValueError on broken LUT data
        raise DicomError(None, f"the Modality LUT data is damaged ({exc})") from exc
    if table.shape != probe.shape:
        raise DicomError(None, "the Modality LUT data does not match its descriptor")
    return first, table


def lut_descriptor(item: Dataset, name: str) -> tuple[int, int]:
    """(entries, first mapped value) of a LUT item whose descriptor and data agree."""
    try:
        descriptor = [int(v) for v in item.LUTDescriptor]
        data = item.get("LUTData")
    except Exception as exc:
        raise DicomError(None, f"the {name} cannot be read ({exc})") from exc
    if len(descriptor) != 3 or descriptor[2] not in (8, 16) or data is None:
        raise DicomError(None, f"the {name} descriptor {descriptor} is not valid")
    count, first = descriptor[0] or 65536, descriptor[1]
    # OW data: one 16-bit word per entry, 8-bit entries too (PS3.3 C.11.1.1.1); US: a list
    entries = len(data) // 2 if isinstance(data, bytes) else \
        len(data) if isinstance(data, Sequence) else 1
    if entries != count:
        raise DicomError(None, f"the {name} declares {count} entries but holds {entries}")
    return count, first


def fix_unused_bits(raw: np.ndarray, bits_stored: int) -> None:
    """Mask (unsigned) or sign-extend (signed) stored values narrower than their container."""
    spare = raw.dtype.itemsize * 8 - bits_stored
    if spare <= 0 or bits_stored <= 0:
        return
    if raw.dtype.kind == "u":
        np.bitwise_and(raw, raw.dtype.type((1 << bits_stored) - 1), out=raw)
    else:
        np.left_shift(raw, spare, out=raw)
        np.right_shift(raw, spare, out=raw)


# -- stored values -> modality values ------------------------------------------------------------


def smallest_integer_dtype(lo: float, hi: float) -> np.dtype:
    """uint8 / uint16 when non-negative, int16 otherwise, widening until the range fits."""
    candidates = ("u1", "u2", "u4") if lo >= 0 else ("i2", "i4")
    for code in candidates:
        info = np.iinfo(code)
        if info.min <= lo and hi <= info.max:
            return np.dtype(code)
    return np.dtype("i8")


def to_modality(raw: np.ndarray, rescales: list[Rescale]) -> np.ndarray:
    """Apply each frame's rescale to raw (frames, ...) in the smallest lossless dtype.

    Works in place when the output has the raw item size (typical CT: uint16/int16 stored ->
    int16 HU), else converts frame by frame so no volume-sized float64 temporary exists.
    """
    if not all(r.is_integer for r in rescales):
        return to_float32(raw, rescales)
    uniform = all(r == rescales[0] for r in rescales)
    if uniform:
        lows, highs = np.array([raw.min()]), np.array([raw.max()])
    else:
        flat = raw.reshape(len(raw), -1)
        lows, highs = flat.min(axis=1), flat.max(axis=1)
    slopes = np.array([r.slope for r in (rescales[:1] if uniform else rescales)], dtype=float)
    icepts = np.array([r.intercept for r in (rescales[:1] if uniform else rescales)], dtype=float)
    ends = np.stack([lows * slopes + icepts, highs * slopes + icepts])
    target = smallest_integer_dtype(float(ends.min()), float(ends.max()))
    if uniform and rescales[0].is_identity and target.itemsize >= raw.dtype.itemsize:
        return raw
    if uniform and _fits_in_place(raw, float(lows.min()), float(highs.max()), rescales[0], target):
        # Same item size: two's-complement arithmetic modulo 2**bits gives the true result
        # whenever that result fits the target, which `target` was chosen for; so the
        # constants are cast with wrap-around (-1024 as uint16 is 64512).
        out = raw.view(target)
        if rescales[0].slope != 1:
            out *= np.array(int(rescales[0].slope)).astype(target)
        if rescales[0].intercept != 0:
            out += np.array(int(rescales[0].intercept)).astype(target)
        return out
    out = np.empty(raw.shape, target)
    for k, r in enumerate(rescales):
        out[k] = raw[k].astype(np.int64) * int(r.slope) + int(r.intercept)
    return out


def _fits_in_place(raw: np.ndarray, lo: float, hi: float, r: Rescale, target: np.dtype) -> bool:
    if target.itemsize != raw.dtype.itemsize:
        return False
    info = np.iinfo(target)
    products = (lo * r.slope, hi * r.slope)
    return info.min <= lo and hi <= info.max and info.min <= min(products) and \
        max(products) <= info.max


def to_float32(raw: np.ndarray, rescales: list[Rescale]) -> np.ndarray:
    """Rescale into float32, frame by frame (no float64 temporaries): PET, RT Dose."""
    out = np.empty(raw.shape, np.float32)
    for k, r in enumerate(rescales):
        np.multiply(raw[k], r.slope, out=out[k], casting="unsafe")
        out[k] += np.float32(r.intercept)
    return out


def apply_lut_table(raw: np.ndarray, first: int, table: np.ndarray) -> np.ndarray:
    """Modality LUT Sequence: stored value -> table entry, clamped at both ends."""
    index = np.clip(raw.astype(np.int64) - first, 0, len(table) - 1)
    return table[index]
