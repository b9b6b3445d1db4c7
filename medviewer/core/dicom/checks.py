"""The one place that checks what a header declares before anything is allocated or trusted.

    pixel_data(inst, file_size=None)      # DicomError unless the declared image fits the file
    affordable(nbytes, path)               # DicomError unless nbytes fit the memory available
    fit_instances(instances)               # a scanned series' files checked: one slot each bad
    drop_unreadable(ds)                    # elements pydicom cannot decode, removed and named
    frame_notes(frames)                    # the warnings for the values the frames distrusted
    usable_spacing(value), usable_orientation(value), usable_position(value), usable_step(mm)
    usable_rescale(slope, intercept, bits) -> (slope, intercept) | None

A header is data from outside: a 3 KB file may declare 2**31 frames or 65535 x 65535 pixels,
and a scanner may write NaN, 0\\0 or 1e308 where a number belongs. Sizes are checked against
the bytes actually in the file and against free memory; geometry and rescale values that cannot
be right read as "unknown", so the loader falls back to what can be trusted (pixel units,
instance order, stored values) and says so.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medviewer.core.dicom.errors import DicomError
from medviewer.core.dicom.model import Instance

if TYPE_CHECKING:  # pydicom loads on first use, not with the viewer's first paint
    from pydicom.dataset import Dataset

# Native (uncompressed) syntaxes: the Pixel Data value holds every stored bit. "" is a file
# without File Meta (ACR-NEMA style), which is native too.
NATIVE_SYNTAXES = {"", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}
DEFLATED = "1.2.840.10008.1.2.1.99"  # the whole dataset is zlib-compressed: sizes unknowable
ITEM_HEADER = 8  # every encapsulated frame needs at least one item tag + length
MEMORY_SHARE = 0.8  # of the memory available now, the most one load may take
FLOAT32_MAX = 3.4e38
MAX_SPACING_MM = 1e3  # a metre per pixel is no image a scanner makes
MIN_SPACING_MM = 1e-6  # a nanometre: below any microscope's pixel
MAX_POSITION_MM = 1e6  # a kilometre from the scanner's origin
COSINE_TOLERANCE = 1e-2  # unit length and orthogonality of ImageOrientationPatient


def memory_available() -> int:
    """Bytes of memory available now (MemAvailable; free pages where /proc is absent)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return 8 << 30


def _gib(nbytes: float) -> str:
    if nbytes >= 1 << 50:
        return f"{nbytes / (1 << 30):.3g} GiB"
    return f"{nbytes / (1 << 30):.1f} GiB" if nbytes >= 1 << 29 else f"{nbytes / (1 << 20):.0f} MiB"


def affordable(nbytes: int, path: str | Path | None) -> None:
    """Refuse a load whose pixels need more memory than the machine has free."""
    budget = int(memory_available() * MEMORY_SHARE)
    if nbytes > budget:
        raise DicomError(path, f"The images need {_gib(nbytes)} of memory, more than the "
                               f"{_gib(budget)} available: the header's image size is wrong, or "
                               "the series is too large for this computer.")


def decoded_bytes(inst: Instance) -> int:
    """Memory the decoded images of one file take (1-bit samples unpack to bytes)."""
    sample = max(1, math.ceil(max(inst.bits_allocated, 1) / 8))
    return inst.rows * inst.columns * max(1, inst.samples_per_pixel) * sample * \
        max(1, inst.number_of_frames)


def stored_bytes(inst: Instance) -> int:
    """Bytes a native Pixel Data value must hold for the declared images."""
    samples = inst.rows * inst.columns * max(1, inst.samples_per_pixel)
    if inst.photometric.startswith("YBR_FULL_422") and inst.samples_per_pixel == 3:
        samples = samples * 2 // 3  # two luminance samples share one pair of chroma samples
    bits = samples * max(inst.bits_allocated, 1) * max(1, inst.number_of_frames)
    return (bits + 7) // 8


def pixel_data(inst: Instance, file_size: int | None = None) -> None:
    """Refuse, before any allocation, an image whose declared size the file cannot hold."""
    path = inst.path
    if inst.rows <= 0 or inst.columns <= 0:
        raise DicomError(path, f"The header declares an image of {inst.rows} x {inst.columns} "
                               "pixels: the header is damaged.")
    if file_size is None:
        try:
            file_size = os.stat(path).st_size
        except OSError as exc:
            raise DicomError(path, f"The file cannot be read ({exc.strerror or exc}).") from exc
    present = max(0, file_size - (inst.pixel_data_offset or 0))
    frames = max(1, inst.number_of_frames)
    syntax = inst.transfer_syntax_uid
    if syntax in NATIVE_SYNTAXES and stored_bytes(inst) > present:
        raise DicomError(path, f"The header declares {_count(frames, 'frame')} of "
                               f"{inst.rows} x {inst.columns} pixels ({_gib(stored_bytes(inst))}) "
                               f"but the file holds only {present:,} bytes of image data: the "
                               "header is damaged or the file was cut short.")
    if syntax not in NATIVE_SYNTAXES and syntax != DEFLATED and frames * ITEM_HEADER > present:
        raise DicomError(path, f"The header declares {_count(frames, 'frame')} but the file holds "
                               f"only {present:,} bytes of compressed image data, too few for "
                               "one per frame: the header is damaged.")
    affordable(decoded_bytes(inst), path)


def _count(n: int, word: str) -> str:
    number = f"{n:,}" if n < 10**12 else f"{n:.3g}"  # a 100-digit count helps no one
    return f"{number} {word}{'s' if n != 1 else ''}"


def fit_instances(instances: list[Instance]) -> tuple[list[Instance], list[str],
                                                 dict[str, DicomError]]:
    """Scanned instances checked against their files before anything is allocated: one whose
    declared image does not fit (cut short since the scan, a damaged header) keeps a single
    slot, to be shown blank with the reason, instead of its declared frames."""
    kept, notes, refused = [], [], {}
    for inst in instances:
        try:
            pixel_data(inst)
            notes += excess_notes(inst)
        except DicomError as exc:
            refused[inst.path] = exc
            inst = replace(inst, number_of_frames=1, mosaic_images=0)
        kept.append(inst)
    if len(refused) == len(kept):
        raise next(iter(refused.values()))
    return kept, notes[:3], refused


def excess_notes(inst: Instance) -> list[str]:
    """A warning when native Pixel Data holds more bytes than the declared images need (a
    damaged Rows, Columns or BitsAllocated makes a skewed or partial image of the same
    bytes: found by the fuzz suite). Only files with bytes to spare after the image are read
    for the element's length (elements after the pixel data are rare)."""
    offset = inst.pixel_data_offset
    if inst.transfer_syntax_uid not in NATIVE_SYNTAXES or not offset or offset < 4:
        return []
    need = stored_bytes(inst)
    try:
        if os.stat(inst.path).st_size - offset <= need + 1:
            return []
        with open(inst.path, "rb") as fh:  # a regular file: the scan or pixel_data saw it
            fh.seek(offset - 4)
            raw = fh.read(4)
    except OSError:
        return []
    order = "big" if inst.transfer_syntax_uid == "1.2.840.10008.1.2.2" else "little"
    length = int.from_bytes(raw, order) if len(raw) == 4 else 0
    if length == 0xFFFFFFFF or length <= need + 1:
        return []
    return [f"{Path(inst.path).name}: the pixel data holds {length:,} bytes, the header's "
            f"{_count(max(1, inst.number_of_frames), 'image')} of {inst.rows} x {inst.columns} "
            f"pixels need {need:,}: the header is damaged, the image may be shown wrong."]


def drop_unreadable(ds: Dataset) -> list[str]:
    """Remove the top-level elements pydicom cannot decode (an unknown VR, a damaged value,
    sequences nested past Python's recursion limit) and name them: the rest of the header
    stays usable instead of the first access to a bad element failing the load."""
    dropped = []
    for tag in list(ds.keys()):
        try:
            ds[tag]  # noqa: B018 - converting the raw element is the check
        except (Exception, RecursionError):
            dropped.append(str(tag))
            del ds[tag]
    return dropped


def frame_notes(frames: Sequence[Any]) -> list[str]:
    """One warning per distrusted header value, with how many images carry it and what the
    load used instead (ordered by instance number on the pixel grid; stored values)."""
    counts: dict[str, int] = {}
    for frame in frames:
        for doubt in frame.doubts:
            counts[doubt] = counts.get(doubt, 0) + 1
    notes = []
    for doubt, n in list(counts.items())[:3]:
        share = f" ({n} of {len(frames)} images)" if len(frames) > 1 else ""
        instead = ": stored pixel values are shown, not modality units" if doubt.startswith(
            "Rescale") else (": the images are shown on their pixel grid, ordered by instance "
                             "number, without MPR or positions in millimetres")
        notes.append(f"{doubt}{share}{instead}.")
    if len(counts) > 3:
        notes.append(f"{len(counts) - 3} more unusable header values.")
    return notes


IMAGE_NUMBERS = ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored",
                 "HighBit", "PixelRepresentation", "PlanarConfiguration")


def image_numbers(ds: Dataset, path: str | None = None) -> None:
    """Refuse a header whose Image Pixel numbers are not single whole numbers (a wrong VR made
    SamplesPerPixel a list or a text, Columns unreadable: found by the fuzz suite) before
    any code sizes an image by them."""
    for keyword in IMAGE_NUMBERS:
        try:
            value = ds.get(keyword)
            if value is None or isinstance(value, int) and not isinstance(value, bool):
                continue
            problem = f"{value!r:.40}"
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on a bad value
            problem = f"unreadable ({str(exc)[:60]})"
        raise DicomError(path, f"The header's {keyword} is not a whole number: {problem}: the "
                               "header is damaged.")


def frame_count_notes(ref: Dataset) -> list[str]:
    """A warning when NumberOfFrames is there but no count (0, -1, text): the load reads one
    frame, and a multi-frame file must not lose the rest without a word (fuzz suite)."""
    try:
        elem = ref.get_item(0x00280008)  # raw: the text as the file holds it
    except Exception:  # noqa: BLE001 - drop_unreadable names an element that cannot be read
        return []
    if elem is None or elem.value is None:
        return []
    value = elem.value
    text = (value.decode("latin-1") if isinstance(value, bytes) else str(value)).strip(" \0")
    if not text or (text.isdigit() and int(text) > 0):
        return []
    return [f"NumberOfFrames {text[:20]!r} is not a frame count: only the first frame is shown."]


def spacing_mismatch_notes(instances: Sequence[Instance]) -> list[str]:
    """A warning when images of the stack state another (or an unusable) PixelSpacing than
    the first one's, which the load uses for every slice (found by the fuzz suite: one image
    with PixelSpacing NaN loaded without a word)."""
    first = usable_spacing(instances[0].pixel_spacing) if instances else None
    if first is None:
        return []  # spacing_notes says the first image's is not usable

    def same(value: object) -> bool:
        pair = usable_spacing(value)
        return pair is not None and all(math.isclose(a, b, rel_tol=1e-4)
                                        for a, b in zip(pair, first, strict=True))

    odd = [i for i in instances[1:] if not same(i.pixel_spacing)]
    if not odd:
        return []
    names = ", ".join(Path(i.path).name for i in odd[:3]) + (", ..." if len(odd) > 3 else "")
    return [f"PixelSpacing of {len(odd)} image(s) ({names}) differs from the first image's "
            f"{first[0]:g}\\{first[1]:g} mm or is not usable: the first image's is used."]


# -- values that read as "unknown" when they cannot be right ---------------------------------


def floats(value: object, n: int) -> tuple[float, ...] | None:
    """n numbers from a multi-valued element, None when it is not exactly n numbers."""
    if value is None or isinstance(value, str | bytes):
        return None
    try:
        out = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError, OverflowError):
        return None
    return out if len(out) == n else None


def usable_spacing(value: object) -> tuple[float, float] | None:
    """(row, column) mm of a PixelSpacing-like value; None unless both are finite and
    plausible: scanners write 0\\0 (and worse: NaN, 1e308) for "unknown", which must read as
    pixels, not as a zero-sized or planet-sized image."""
    pair = floats(value, 2)
    if pair is None or not all(MIN_SPACING_MM <= v <= MAX_SPACING_MM for v in pair):
        return None  # NaN fails every comparison
    return pair  # type: ignore[return-value]


def usable_step(value: float | None) -> float | None:
    """A slice thickness or spacing (mm) that is finite, not zero and under a metre; else
    None (1 mm is assumed then, as for a header without one)."""
    if value is None or not math.isfinite(value) or not 0 < abs(value) <= MAX_SPACING_MM:
        return None
    return value


def usable_orientation(value: Sequence[float] | None) -> tuple[float, ...] | None:
    """Six direction cosines that are two finite, unit-length, perpendicular vectors; None
    otherwise (all zeros, NaN, parallel rows and columns)."""
    cosines = floats(value, 6)
    if cosines is None or not all(math.isfinite(v) for v in cosines):
        return None
    row, col = cosines[:3], cosines[3:]
    dot = sum(r * c for r, c in zip(row, col, strict=True))
    unit = all(abs(math.sqrt(sum(v * v for v in vec)) - 1) <= COSINE_TOLERANCE
               for vec in (row, col))
    return cosines if unit and abs(dot) <= COSINE_TOLERANCE else None


def usable_position(value: Sequence[float] | None) -> tuple[float, float, float] | None:
    """ImagePositionPatient when it is three finite numbers within a kilometre; else None."""
    xyz = floats(value, 3)
    if xyz is None or not all(abs(v) <= MAX_POSITION_MM for v in xyz):
        return None
    return xyz  # type: ignore[return-value]


def usable_rescale(slope: float, intercept: float, bits: int) -> tuple[float, float] | None:
    """(slope, intercept) when both are finite, the slope is not zero and every stored value of
    `bits` bits maps into float32 range; None otherwise (show the stored values instead)."""
    if not (math.isfinite(slope) and math.isfinite(intercept)) or slope == 0:
        return None
    largest = abs(slope) * 2.0 ** min(max(bits, 1), 64) + abs(intercept)
    return (slope, intercept) if largest < FLOAT32_MAX else None


def text(value: Sequence[float] | object) -> str:
    """A header value as DICOM writes it (backslashes), for a sentence."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "\\".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)
