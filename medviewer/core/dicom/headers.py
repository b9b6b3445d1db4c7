"""One file's header facts -> `Instance` (+ the patient/study/series facts used for grouping).

The raw bytes of the wanted elements come from the flat walk (headerwalk.py), several times
faster than `pydicom.dcmread`; this module decodes them (text in the file's character set,
numbers) into an `Instance` and the grouping facts. Files the walk declines (big endian,
deflated, no File Meta preamble, anything odd) are read with pydicom instead.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pydicom
from pydicom.charset import convert_encodings, decode_bytes

from medviewer.core.dicom import mosaic
from medviewer.core.dicom.errors import DicomError
from medviewer.core.dicom.headerwalk import TAGS, Unsupported, first_fragment_offset, walk_file
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
        try:
            return convert_encodings(charset.split("\\"))
        except ValueError:  # a NUL byte in the term: codecs.lookup refuses it (fuzz suite)
            return convert_encodings(None)


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
    except (ValueError, OverflowError):  # "inf" is no count, number or size
        return None


def _ushort(raw: bytes) -> int | None:
    return int.from_bytes(raw[:2], "little") if len(raw) >= 2 else None


_NUMBER_DECODERS = {"ds": _numbers, "is": _integer, "us": _ushort, "flag": bool, "bytes": bytes}


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
        slice_thickness=_first(v.get("SliceThickness")),
        acquisition_time=v.get("AcquisitionTime") or v.get("ContentTime", ""),
        transfer_syntax_uid=v.get("TransferSyntaxUID", ""),
        photometric=v.get("PhotometricInterpretation", ""),
        samples_per_pixel=v.get("SamplesPerPixel") or 1,
        bits_allocated=v.get("BitsAllocated") or 0,
        pixel_representation=v.get("PixelRepresentation") or 0,
        pixel_data_offset=pixel[0] if pixel else None,
        rescale_slope=_first(v.get("RescaleSlope")),
        rescale_intercept=_first(v.get("RescaleIntercept")),
        temporal_position=v.get("TemporalPositionIdentifier"),
        float_pixels=bool(v.get("FloatPixelData") or v.get("DoubleFloatPixelData")),
        mosaic_images=_mosaic_images(v),
    )


def _mosaic_images(v: dict[str, Any]) -> int:
    """NumberOfImagesInMosaic of a Siemens mosaic whose grid divides into whole tiles, else 0."""
    csa = v.get("CSAImageHeader") if v.get("CSACreator") == mosaic.CSA_CREATOR else None
    count = mosaic.images_in_mosaic(str(v.get("ImageType", "")), csa)
    return count if mosaic.fits(v.get("Rows") or 0, v.get("Columns") or 0, count) else 0


def _first(numbers: tuple[float, ...] | None) -> float | None:
    """The first of a DS value's numbers; None when absent or unparsable."""
    return numbers[0] if numbers else None


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
        if kind == "flag":  # present is all it says; the (deferred) value stays unread
            values[tag] = True
            continue
        value = ds[tag].value
        if value is None or value == "":
            continue
        values[tag] = _python_value(value, kind)


def _python_value(value: Any, kind: str) -> Any:
    if kind == "bytes":
        return bytes(value) if isinstance(value, bytes | bytearray) else b""
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
