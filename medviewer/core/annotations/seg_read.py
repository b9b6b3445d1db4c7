"""DICOM SEG files back onto a loaded series' grid: the reading half of `seg`.

    read_seg(path, volume) -> (label_map, labels)
    read_seg_table(path, volume) -> (label_map, LabelTable with colours, codes and origins)

Frames are placed by the source image (and frame) they reference, else, for a SEG made
elsewhere that references none, by their position; overlapping segments: the higher segment
number wins. Each segment's name, colour, SNOMED codes and how it was made (MANUAL, AUTOMATIC or
SEMIAUTOMATIC, and by which model) come back in the LabelTable.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medviewer.core.annotations.seg import (
    _OLD_MANUAL_NAME,
    ALGORITHM_TYPES,
    MANUAL,
    AnnotationError,
    Code,
    Origin,
    grid_shape,
    quiet_highdicom,
)

if TYPE_CHECKING:
    from medviewer.core.annotations.labelmap import LabelTable


def read_seg(path: str | Path, volume: Any) -> tuple[np.ndarray, list[str]]:
    """A SEG back on `volume`'s grid: (uint8 label map, labels with labels[0] 'background').

    Frames are placed by the SOP Instance UID of the source image they reference, else by
    their ImagePositionPatient; a frame that matches no slice of the volume is an error (the
    SEG belongs to another series). Overlapping segments: the higher segment number wins.
    """
    out, seg = _read_label_map(Path(path), volume)
    return out, _labels_of(seg)


def read_seg_table(path: str | Path, volume: Any) -> tuple[np.ndarray, LabelTable]:
    """As `read_seg`, with each segment's name, display colour and SNOMED codes in a
    LabelTable, so a reopened annotation keeps the colours it was saved with. Names another
    tool repeated ("Lesion" twice) get a number, as a table needs unique names."""
    from medviewer.core.annotations.labelmap import Label, LabelTable

    out, seg = _read_label_map(Path(path), volume)
    table = LabelTable()
    described = {int(item.SegmentNumber): item for item in seg.SegmentSequence}
    for number, name in enumerate(_labels_of(seg)[1:], start=1):
        item = described.get(number)
        unique = name if table.by_name(name) is None else f"{name} ({number})"
        how, made_by = origin_of_segment(item)
        table.labels[number] = Label(number, unique, _rgb_of(item) or _fallback_colour(number),
                                     category=_code_of(item, "SegmentedPropertyCategory"),
                                     type=_code_of(item, "SegmentedPropertyType"),
                                     algorithm_type=how, algorithm=made_by)
    return out, table


def origin_of_segment(item: Any) -> Origin:
    """How a SEG says a segment was made: (SegmentAlgorithmType, (algorithm name, version)),
    MANUAL without an algorithm; an unknown type counts as MANUAL."""
    how = str(item.get("SegmentAlgorithmType", "") if item is not None else "").upper()
    found = item.get("SegmentationAlgorithmIdentificationSequence") if item is not None else None
    made_by = (str(found[0].get("AlgorithmName", "")), str(found[0].get("AlgorithmVersion", ""))
               ) if found else None
    if how not in ALGORITHM_TYPES or how == MANUAL or \
            (made_by is not None and made_by[0] == _OLD_MANUAL_NAME):
        return MANUAL, None  # older MedViewer SEGs called hand-drawn segments this way
    return how, made_by or ("unknown", "")


def _rgb_of(item: Any) -> str | None:
    """The segment's RecommendedDisplayCIELabValue as '#rrggbb' (None when absent/odd)."""
    import highdicom as hd

    value = item.get("RecommendedDisplayCIELabValue") if item is not None else None
    if not value or len(value) != 3:
        return None
    try:
        rgb = hd.color.CIELabColor.from_dicom_value([int(v) for v in value]).to_rgb(clip=True)
    except (ValueError, TypeError):
        return None
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def _fallback_colour(number: int) -> str:
    from medviewer.core.annotations.labelmap import PALETTE

    return PALETTE[(number - 1) % len(PALETTE)]


def _code_of(item: Any, keyword: str) -> Code | None:
    codes = item.get(f"{keyword}CodeSequence") if item is not None else None
    if not codes:
        return None
    c = codes[0]
    return (str(c.get("CodingSchemeDesignator", "")), str(c.get("CodeValue", "")),
            str(c.get("CodeMeaning", "")))


def _read_label_map(path: Path, volume: Any) -> tuple[np.ndarray, Any]:
    """The SEG's frames placed on `volume`'s grid, and the dataset (for its descriptions)."""
    seg = _read_seg_dataset(path)
    grid = grid_shape(volume)
    out = np.zeros(grid, np.uint8)
    frames = _frame_pixels(seg, Path(path))
    slice_of = _slice_lookup(volume)
    shared = seg.get("SharedFunctionalGroupsSequence", [{}])[0]
    for i, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        item = _FrameGroups(item, shared)
        segment = item.get("SegmentIdentificationSequence")
        if not segment:
            raise AnnotationError(path, f"Frame {i + 1} of the SEG names no segment.")
        number = int(segment[0].ReferencedSegmentNumber)
        k = _slice_for_frame(item, slice_of, volume, grid[0])
        if k is None:
            raise AnnotationError(path, f"Frame {i + 1} of the SEG lies on no slice of this "
                                  "series: the segmentation belongs to another series.")
        if frames[i].shape != grid[1:]:
            raise AnnotationError(path, f"The SEG frames are {frames[i].shape}, the series "
                                  f"slices {grid[1:]}: it belongs to another series.")
        mask = frames[i] > 0
        out[k][mask & (out[k] < number)] = number
    return out, seg


class _FrameGroups:
    """A frame's functional groups: its own, else the shared ones (highdicom shares e.g. the
    segment number when there is a single segment)."""

    def __init__(self, item: Any, shared: Any) -> None:
        self.item, self.shared = item, shared

    def get(self, keyword: str, default: Any = None) -> Any:
        value = self.item.get(keyword)
        if value is None and self.shared:
            value = self.shared.get(keyword)
        return default if value is None else value


def _read_seg_dataset(path: Path) -> Any:
    import highdicom as hd

    quiet_highdicom()
    try:
        return hd.seg.segread(path)
    except (OSError, ValueError, AttributeError, KeyError, EOFError) as exc:
        raise AnnotationError(path, f"This file is not a readable DICOM SEG ({exc}).") from exc


def _labels_of(seg: Any) -> list[str]:
    named = {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}
    top = max(named, default=0)
    return ["background"] + [named.get(n, f"segment {n}") for n in range(1, top + 1)]


def _frame_pixels(seg: Any, path: Path) -> np.ndarray:
    """(frames, rows, cols): pydicom unpacks BINARY bits, FRACTIONAL > 0 counts as inside."""
    try:
        pixels = seg.pixel_array
    except Exception as exc:  # noqa: BLE001 - pixel decoders raise many types
        raise AnnotationError(path, f"The SEG's pixel data cannot be decoded ({exc}).") from exc
    return pixels[None] if pixels.ndim == 2 else pixels


def _slice_lookup(volume: Any) -> dict[tuple[str, int], int]:
    """(SOP Instance UID, frame number from 1) -> slice index."""
    return {(s.sop_instance_uid, s.frame + 1): k
            for k, s in enumerate(getattr(volume, "sources", []) or [])}


def _slice_for_frame(item: Any, slice_of: dict[tuple[str, int], int], volume: Any,
                     count: int) -> int | None:
    """The slice a frame lies on: by the source image it references; by its position only
    when it references none (a frame naming other images belongs to another series, even
    one acquired at the same positions)."""
    referenced = False
    for derivation in item.get("DerivationImageSequence", []):
        for source in derivation.get("SourceImageSequence", []):
            referenced = True
            frames = source.get("ReferencedFrameNumber") or [1]
            frame = int(frames[0] if isinstance(frames, Sequence) else frames)
            k = slice_of.get((str(source.ReferencedSOPInstanceUID), frame))
            if k is not None:
                return k
    return None if referenced else _slice_by_position(item, volume, count)


def _slice_by_position(item: Any, volume: Any, count: int) -> int | None:
    """Index along the slice axis of the frame's ImagePositionPatient (within half a slice)."""
    planes = item.get("PlanePositionSequence")
    affine = getattr(volume, "affine", None)
    if not planes or affine is None:
        return None
    position = np.array([float(v) for v in planes[0].ImagePositionPatient] + [1.0])
    index = np.linalg.solve(np.asarray(affine, float), position)
    k = int(round(index[2]))
    inside = abs(index[0]) < 0.5 and abs(index[1]) < 0.5 and abs(index[2] - k) < 0.5
    return k if inside and 0 <= k < count else None
