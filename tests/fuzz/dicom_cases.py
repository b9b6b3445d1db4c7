"""Seeded hostile DICOM cases for the fuzz runner (issue 12).

    build_case(seed, index, workdir) -> Case

Case `index` of run `seed` is always the same bytes: its family is `FAMILIES[index % n]`, its
source and damage come from a generator seeded with (seed, index). Sources are pydicom's bundled
test files (only those present: nothing is downloaded) and a six-slice synthetic CT series.
`Case.expect` says what a load that succeeds must show to count as right (see runner.judge).
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement

from medviewer.core import synthetic as syn

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
BUNDLED = sorted(p.name for p in TEST_FILES.glob("*.dcm"))
SYNTH = "synthetic-ct"  # the six-slice series, a folder

# expect: "none" (any clean error or load), "shape" (a load keeps the original's shape and
# values, or says why not), "pixels" (same shape or says why), "warn" (a load must carry a
# warning: the damage cannot be right)
FAMILIES = ("truncate", "flip_header", "flip_pixels", "absurd_size", "geometry", "rescale",
            "wrong_vr", "modality_lut", "voi_lut", "deep_sequence", "duplicate_uid", "manifest")

SIZE_VALUES = {
    "Rows": [0, 1, 3, 255, 32768, 65535], "Columns": [0, 1, 7, 32768, 65535],
    "BitsAllocated": [0, 1, 7, 12, 24, 64, 65535], "BitsStored": [0, 1, 17, 33, 65535],
    "HighBit": [0, 31, 65535], "SamplesPerPixel": [0, 2, 3, 4, 65535],
    "PixelRepresentation": [2, 65535], "PlanarConfiguration": [1, 7],
    "NumberOfFrames": ["0", "-1", "-2147483648", "2147483647", "1000000", "2", "7", "inf",
                       "nan", "1.5", "abc", "99999999999999999999"],
}
GEOMETRY_VALUES = {
    "PixelSpacing": ["nan\\nan", "inf\\inf", "1e308\\1e308", "0\\0", "-1\\-1", "0\\1", "nan"],
    "ImageOrientationPatient": ["0\\0\\0\\0\\0\\0", "nan\\0\\0\\0\\1\\0", "1\\0\\0\\1\\0\\0",
                                "inf\\0\\0\\0\\1\\0", "1\\0\\0\\0.5\\0.5\\0",
                                "1e308\\0\\0\\0\\1\\0"],
    "ImagePositionPatient": ["nan\\0\\0", "0\\inf\\0", "0\\0\\1e308", "-inf\\0\\0",
                             "nan\\nan\\nan"],
}
RESCALE_VALUES = {
    "RescaleSlope": ["nan", "inf", "-inf", "0", "1e308", "1e40"],
    "RescaleIntercept": ["nan", "-inf", "inf", "1e308"],
}
OTHER_VRS = [b"US", b"UL", b"SQ", b"OB", b"UN", b"FD", b"AT", b"DS", b"IS", b"ZZ", b"\0\0"]


@dataclass
class Case:
    index: int
    family: str
    source: str  # bundled file name or SYNTH
    damage: str  # what was done, enough to rebuild it by hand
    path: Path  # file or folder handed to the entry points
    file: Path  # the damaged file (for `medviewer info`)
    expect: str


def synthetic_voxels() -> np.ndarray:
    return np.random.default_rng(0).integers(-1000, 1000, (6, 32, 32)).astype(np.int16)


def write_synthetic(folder: Path) -> list[Path]:
    return syn.write_series(folder, synthetic_voxels(), spacing=(2.0, 0.8, 0.8),
                            shuffle_names=True)


def _editable(name: str) -> bool:
    """A bundled file pydicom reads and writes back (a header edit needs both)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(TEST_FILES / name)
            ds.save_as(BytesIO())
            return "PixelData" in ds and "Rows" in ds
    except Exception:  # noqa: BLE001 - any failure just means "not a source for edits"
        return False


EDITABLE = [n for n in BUNDLED if _editable(n)]
IMAGING = [n for n in ("CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm",
                       "MR_small_bigendian.dcm") if n in BUNDLED]


def _source(rng: np.random.Generator, names: list[str], synth_share: float) -> str:
    return SYNTH if not names or rng.random() < synth_share else str(rng.choice(names))


def _place(source: str, target: Path, base: Path, rng: np.random.Generator) -> tuple[Path, Path]:
    """Copy the source under target: (path for the entry points, the file to damage)."""
    if source == SYNTH:
        shutil.copytree(base, target)
        files = sorted(target.glob("*.dcm"))
        return target, files[int(rng.integers(len(files)))]
    target.mkdir(parents=True)
    file = target / source
    shutil.copyfile(TEST_FILES / source, file)
    return file, file


def _pixel_offset(data: bytes) -> int:
    at = max(data.rfind(b"\xe0\x7f\x10\x00"), data.rfind(b"\x7f\xe0\x00\x10"))
    return at if at > 0 else len(data) // 2


def _set_raw(file: Path, values: dict[str, object], everywhere: list[Path] | None = None) -> None:
    for path in everywhere or [file]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
            for keyword, value in values.items():
                ds[tag_for_keyword(keyword)] = _element(keyword, value)
            ds.save_as(path)


def _element(keyword: str, value: object) -> DataElement:
    """The element as a damaged file holds it: text pydicom would refuse to convert ("nan" in
    an IS) is written as it stands."""
    tag = tag_for_keyword(keyword)
    try:
        return DataElement(tag, dictionary_VR(tag), value)
    except (ValueError, TypeError, OverflowError):
        elem = DataElement(tag, dictionary_VR(tag), "0")
        elem._value = value  # written back verbatim by pydicom's number-string writer
        return elem


def _truncate(file: Path, rng: np.random.Generator) -> str:
    data = file.read_bytes()
    cut = int(rng.integers(1, len(data)))
    file.write_bytes(data[:cut])
    return f"cut at {cut} of {len(data)}"


def _flip(file: Path, rng: np.random.Generator, pixels: bool) -> str:
    data = bytearray(file.read_bytes())
    start = _pixel_offset(bytes(data))
    lo, hi = (start + 12, len(data)) if pixels else (128, start)
    if hi <= lo:
        lo, hi = 0, len(data)
    offsets = rng.integers(lo, hi, int(rng.integers(1, 9)))
    for at in offsets:
        data[at] ^= int(rng.integers(1, 256))
    file.write_bytes(bytes(data))
    return f"xor at {sorted(int(o) for o in offsets)}"


def _wrong_vr(file: Path, rng: np.random.Generator) -> str:
    """Replace one explicit VR code (found as tag + VR bytes) by another code."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(file, force=True)
    data = file.read_bytes()
    spots = []
    for elem in ds.iterall():
        if elem.tag.group == 0x7FE0 or len(elem.VR) != 2:
            continue
        key = elem.tag.group.to_bytes(2, "little") + elem.tag.element.to_bytes(2, "little")
        at = data.find(key + elem.VR.encode())
        if at >= 0:
            spots.append((at, str(elem.tag)))
    if not spots:
        return _flip(file, rng, pixels=False)
    at, tag = spots[int(rng.integers(len(spots)))]
    vr = OTHER_VRS[int(rng.integers(len(OTHER_VRS)))]
    file.write_bytes(data[:at + 4] + vr + data[at + 6:])
    return f"{tag} VR -> {vr!r}"


def _lut_item(rng: np.random.Generator, modality: bool) -> tuple[pydicom.Dataset, str]:
    """A LUT item damaged one way out of several; each is surely wrong (a VOI LUT may have 8
    to 16 bits per entry, a Modality LUT 8 or 16)."""
    item = pydicom.Dataset()
    count = int(rng.integers(2, 300))
    damages = ["short data", "no entries", "2-value descriptor", "0-bit", "40-bit",
               "empty descriptor"] + (["12-bit"] if modality else [])
    damage = str(rng.choice(damages))
    descriptor = {"2-value descriptor": [count, 0], "12-bit": [count, 0, 12],
                  "0-bit": [count, 0, 0], "40-bit": [count, 0, 40], "empty descriptor": []}
    item.LUTDescriptor = descriptor.get(damage, [count, 0, 16])
    entries = (np.arange(count) * 7 % 4096).astype("<u2").tobytes()
    payload = {"short data": entries[: count], "no entries": b""}.get(damage, entries)
    item.add_new(0x00283006, "OW", payload)
    return item, damage


def _lut(files: list[Path], rng: np.random.Generator, sequence: str) -> str:
    """The same broken LUT in every file of the series (the loader reads the first file's)."""
    item, damage = _lut_item(rng, sequence == "ModalityLUTSequence")
    if sequence == "ModalityLUTSequence":
        item.ModalityLUTType = "HU"
    for file in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(file)
            if sequence == "ModalityLUTSequence":
                for keyword in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
                    if keyword in ds:
                        delattr(ds, keyword)
            setattr(ds, sequence, [item])
            ds.save_as(file)
    return f"{sequence} {damage} in every file"


def _deep(file: Path, rng: np.random.Generator) -> str:
    """Sequences nested `depth` deep (undefined lengths) inserted before the pixel data."""
    depth = int(rng.choice([9, 50, 500, 3000, 20000]))
    opening = b"\x40\x00\x30\xa7SQ\0\0\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    closing = b"\xfe\xff\x0d\xe0\0\0\0\0" + b"\xfe\xff\xdd\xe0\0\0\0\0"
    data = file.read_bytes()
    at = _pixel_offset(data)
    file.write_bytes(data[:at] + opening * depth + closing * depth + data[at:])
    return f"ContentSequence nested {depth} deep"


def _hostile_models() -> object:
    """tests/fuzz/test_hostile_models.py (no package: loaded by its path), for its helpers."""
    import importlib.util
    import sys

    if "test_hostile_models" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "test_hostile_models", Path(__file__).with_name("test_hostile_models.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules["test_hostile_models"] = module
        spec.loader.exec_module(module)
    return sys.modules["test_hostile_models"]


def _manifest(target: Path, rng: np.random.Generator) -> str:
    """Lab 1's shipped model folder, one manifest field set to a hostile value (the pool and
    helpers of test_hostile_models), sealed with a matching checksum or as format 1."""
    import json

    hm = _hostile_models()
    folder = hm._copy(target.parent, target.name)
    d = hm._shipped()
    paths = hm._leaf_paths(d)
    field = paths[int(rng.integers(len(paths)))]
    value = hm.POOL[int(rng.integers(len(hm.POOL)))]
    hm._set(d, field, json.loads(json.dumps(value)))
    seal = bool(rng.random() < 0.5)
    hm._write(folder, d, seal=seal)
    return f"{'.'.join(field)} = {json.dumps(value)[:40]} ({'sealed' if seal else 'format 1'})"


def build_case(seed: int, index: int, workdir: Path, synth_base: Path) -> Case:
    rng = np.random.default_rng([seed, index])
    family = FAMILIES[index % len(FAMILIES)]
    target = workdir / f"case-{index}"
    if family == "manifest":
        damage = _manifest(target, rng)
        return Case(index, family, "lab1 manifest", damage, target, target, "sane")
    choices = {"truncate": (BUNDLED, 0.3), "flip_header": (BUNDLED, 0.3),
               "flip_pixels": (BUNDLED, 0.3), "absurd_size": (EDITABLE, 0.3),
               "geometry": (IMAGING, 0.6), "rescale": (IMAGING[:1], 0.6),
               "wrong_vr": (EDITABLE, 0.3)}
    names, share = choices.get(family, ([], 1.0))
    source = _source(rng, names, share)
    path, file = _place(source, target, synth_base, rng)
    expect = {"truncate": "shape", "flip_pixels": "pixels", "absurd_size": "pixels",
              "geometry": "warn", "rescale": "warn", "modality_lut": "warn", "voi_lut": "warn",
              "duplicate_uid": "warn"}.get(family, "none")
    if family == "truncate":
        damage = _truncate(file, rng)
        if source == SYNTH and int(damage.split()[2]) < 132:
            expect = "none"  # no DICM marker left: a stray file, ignored in a folder
    elif family in ("flip_header", "flip_pixels"):
        damage = _flip(file, rng, pixels=family == "flip_pixels")
    elif family == "absurd_size":
        keyword = str(rng.choice(list(SIZE_VALUES)))
        value = SIZE_VALUES[keyword][int(rng.integers(len(SIZE_VALUES[keyword])))]
        _set_raw(file, {keyword: value})
        damage = f"{keyword} = {value}"
    elif family in ("geometry", "rescale"):
        table = GEOMETRY_VALUES if family == "geometry" else RESCALE_VALUES
        keyword = str(rng.choice(list(table)))
        value = str(rng.choice(table[keyword]))
        every = sorted(target.glob("*.dcm")) if source == SYNTH and rng.random() < 0.5 else None
        _set_raw(file, {keyword: value}, every)
        damage = f"{keyword} = {value!r} in {'every file' if every else file.name}"
    elif family == "wrong_vr":
        damage = _wrong_vr(file, rng)
    elif family in ("modality_lut", "voi_lut"):
        sequence = "ModalityLUTSequence" if family == "modality_lut" else "VOILUTSequence"
        damage = _lut(sorted(target.glob("*.dcm")), rng, sequence)
    elif family == "deep_sequence":
        damage = _deep(file, rng)
    else:  # duplicate_uid: another file of the series takes this one's SOPInstanceUID
        other = next(p for p in sorted(target.glob("*.dcm")) if p != file)
        uid = pydicom.dcmread(file, stop_before_pixels=True).SOPInstanceUID
        _set_raw(other, {"SOPInstanceUID": uid})
        damage = f"{other.name} takes the SOPInstanceUID of {file.name}"
    return Case(index, family, source, damage, path, file, expect)


__all__ = ["BUNDLED", "FAMILIES", "SYNTH", "Case", "build_case", "synthetic_voxels",
           "write_synthetic"]
