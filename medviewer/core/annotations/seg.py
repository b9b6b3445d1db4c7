"""Label maps to and from DICOM Segmentation objects (pydicom + highdicom + numpy only).

    write_seg(label_map, volume, labels, path, ...) -> Path
    read_seg(path, volume) -> (label_map, labels)                     (seg_read)
    read_seg_table(path, volume) -> (label_map, LabelTable with colours and SNOMED codes)

A label map is uint8 (slices, rows, columns) on a loaded `Volume`'s grid; value v names
`labels[v]`, and value 0 (labels[0]) is the background, never written as a segment. Each other
label becomes one BINARY segment whose number is its label value, so a SEG read back gives the
same values. highdicom leaves out frames that are empty, so `read_seg` places every frame it
finds by the source SOP Instance UID it references (or, for a SEG made elsewhere, by its
position) and leaves the rest 0.

Only labels with voxels become segments, numbered 1..n in value order (the standard wants
segment numbers from 1 without gaps), so a SEG read back names the same structures, possibly
with smaller values. Each segment says how it was made (SegmentAlgorithmType): MANUAL (drawn
by hand, no algorithm named), AUTOMATIC (a model's output, untouched) or SEMIAUTOMATIC (a
model's output a person corrected), with the model's name and version for the last two.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medviewer.core.annotations.seg_geometry import finish_seg, prepare_sources
from medviewer.core.atomic import atomic_file

Code = tuple[str, str, str]  # (coding scheme designator, code value, code meaning)
Algorithm = tuple[str, str]  # (name, version) of the algorithm (model) that made a segment
Origin = tuple[str, "Algorithm | None"]  # (SegmentAlgorithmType, the algorithm if any)
MANUAL, SEMIAUTOMATIC, AUTOMATIC = "MANUAL", "SEMIAUTOMATIC", "AUTOMATIC"
ALGORITHM_TYPES = (MANUAL, SEMIAUTOMATIC, AUTOMATIC)
# what hand-drawn segments were called before they were written as MANUAL
_OLD_MANUAL_NAME = "MedViewer manual"

# "abnormal" findings get that category; anatomy known to SNOMED gets its own code
_ABNORMAL = {"nodule", "lesion", "mass", "tumor", "tumour", "neoplasm", "cyst", "metastasis"}
DEFAULT_MANUFACTURER = "MedViewer"


class AnnotationError(Exception):
    """An annotation that cannot be saved or read, with the path and a sentence to act on."""

    def __init__(self, path: str | Path | None, reason: str) -> None:
        self.path = str(path) if path is not None else None
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


def person_name(annotator: str) -> str:
    """A name as typed ('Jane Doe', an OS login) as a one-component DICOM PN ('Jane Doe^');
    'Doe^Jane' stays as it is."""
    name = annotator.replace("\\", " ").strip()[:60] or "anonymous"
    return name if "^" in name else f"{name}^"


def property_codes(name: str) -> tuple[Any, Any]:
    """SNOMED (category, type) for a label name: lung -> Lung, nodule -> Nodule, else Tissue."""
    from pydicom.sr.codedict import codes

    keyword = "".join(part.capitalize() for part in name.replace("-", " ").split())
    try:
        kind = getattr(codes.SCT, keyword)
    except AttributeError:
        return codes.SCT.Tissue, codes.SCT.Tissue
    if name.strip().lower() in _ABNORMAL:
        return codes.SCT.MorphologicallyAbnormalStructure, kind
    return codes.SCT.AnatomicalStructure, kind


def _lab_colour(colour: str | None) -> Any:
    """'#rrggbb' -> highdicom's CIE L*a*b* display colour (None when absent or malformed)."""
    import highdicom as hd

    text = (colour or "").lstrip("#")
    if len(text) != 6:
        return None
    try:
        return hd.color.CIELabColor.from_rgb(*(int(text[i:i + 2], 16) for i in (0, 2, 4)))
    except ValueError:
        return None


def _coded(code: Code) -> Any:
    from pydicom.sr.coding import Code as DicomCode

    return DicomCode(code[1], code[0], code[2])


def segment_descriptions(labels: Sequence[str], colours: Sequence[str] | None,
                         algorithm: Algorithm | None = None, *,
                         codes_of: Mapping[int, tuple[Code, Code]] | None = None,
                         origins: Mapping[int, Origin] | None = None,
                         values: Sequence[int] | None = None) -> list[Any]:
    """One highdicom SegmentDescription per label value in `values` (default 1..n-1), numbered
    1, 2, ... in that order. `origins`: value -> (SegmentAlgorithmType, algorithm); a value
    without one is AUTOMATIC by `algorithm` when given, else MANUAL. `codes_of`: value ->
    (category, type) chosen in the label table (else from the name)."""
    import highdicom as hd

    chosen = list(range(1, len(labels))) if values is None else [int(v) for v in values]
    out = []
    for number, value in enumerate(chosen, start=1):
        name = labels[value]
        picked = (codes_of or {}).get(value)
        category, kind = (_coded(picked[0]), _coded(picked[1])) if picked else \
            property_codes(name)
        colour = _lab_colour(colours[value]) if colours and value < len(colours) else None
        how, made_by = _origin_of(value, name, origins, algorithm)
        out.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=name[:64] or f"label {value}",
            segmented_property_category=category, segmented_property_type=kind,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues[how],
            algorithm_identification=_identification(made_by) if how != MANUAL else None,
            display_color=colour))
    return out


def _origin_of(value: int, name: str, origins: Mapping[int, Origin] | None,
               algorithm: Algorithm | None) -> Origin:
    how, made_by = (origins or {}).get(value) or \
        ((AUTOMATIC, algorithm) if algorithm else (MANUAL, None))
    if how not in ALGORITHM_TYPES:
        raise AnnotationError(None, f"Label {name!r} says it was made {how!r}; a segment is "
                              f"one of {', '.join(ALGORITHM_TYPES)}.")
    if how != MANUAL and not made_by:
        raise AnnotationError(None, f"Label {name!r} is {how} but names no model; a SEG must "
                              "say which algorithm made it.")
    return how, made_by


def _identification(algorithm: Algorithm) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.AlgorithmIdentificationSequence(
        name=str(algorithm[0])[:64], family=codes.cid7162.ArtificialIntelligence,
        version=str(algorithm[1])[:64])


def quiet_highdicom() -> None:
    """highdicom logs an INFO line per module it copies, on every SEG and SR it writes: keep
    them off the reader's console, unless someone chose a level for highdicom's logger."""
    logger = logging.getLogger("highdicom")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)


def _source_datasets(volume: Any, slices: list[int]) -> tuple[list[Any], list[int]]:
    """Headers of the source images of `slices` (no pixel data: highdicom does not need it)
    and, per slice, the frame of the SEG pixel array it maps to."""
    import pydicom

    sources = list(getattr(volume, "sources", []) or [])
    if len(sources) < max(slices, default=-1) + 1:
        raise AnnotationError(None, "The series does not list its source files; reload it "
                              "from disk before saving a segmentation.")
    paths = [sources[k].path for k in slices]
    if any(getattr(sources[k], "tile", None) for k in slices):
        raise AnnotationError(paths[0], "This is a Siemens mosaic (one image holds all the "
                              "slices as tiles): a DICOM SEG references whole images, so it "
                              "cannot say which slice a segment lies on. The segmentation "
                              "cannot be saved as DICOM SEG.")
    if len(set(paths)) == len(paths):  # one file per slice: the common case
        return [_read_header(pydicom, p) for p in paths], list(range(len(slices)))
    if len(set(paths)) == 1:  # one multi-frame file: the SEG frames follow its frame numbers
        header = _read_header(pydicom, paths[0])
        if "SharedFunctionalGroupsSequence" not in header:
            kind = f"{header.get('Modality', '')} image".strip()
            raise AnnotationError(paths[0], f"This is a legacy multi-frame {kind} (no "
                                  "functional groups): a DICOM SEG can reference single-frame "
                                  "or enhanced multi-frame images only. Convert the series to "
                                  "single frames to save a segmentation of it.")
        return [header], [sources[k].frame for k in slices]
    raise AnnotationError(paths[0], "This series mixes multi-frame and single-frame files; a "
                          "segmentation of it cannot be saved as one DICOM SEG.")


def check_unique_images(volume: Any, path: str | Path | None) -> None:
    """AnnotationError when two files of the series share one SOPInstanceUID: a SEG or SR
    names its images by that UID, so what it says could not be put back on the right slice
    (a SEG on six such files read back with five slices empty). Nothing is written."""
    first: dict[str, str] = {}
    for source in getattr(volume, "sources", None) or []:
        uid = str(getattr(source, "sop_instance_uid", "") or "")
        other = first.setdefault(uid, source.path)
        if uid and other != source.path:
            raise AnnotationError(path, f"The files {Path(other).name} and "
                                  f"{Path(source.path).name} share the SOP Instance UID "
                                  f"{uid}, so saved annotations could not say which image "
                                  "they belong to. Nothing was saved: give each file its own "
                                  "UID (or remove the duplicate copies) and reopen the series.")


def _read_header(pydicom: Any, path: str) -> Any:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (OSError, ValueError, EOFError) as exc:
        raise AnnotationError(path, f"The source image cannot be read ({exc}); the SEG must "
                              "reference it, so restore the series first.") from exc


def write_seg(label_map: np.ndarray, volume: Any, labels: Sequence[str], path: str | Path, *,
              series_description: str = "Segmentation", algorithm: Algorithm | None = None,
              origins: Mapping[int, Origin] | None = None,
              colours: Sequence[str] | None = None, slices: Sequence[int] | None = None,
              series_number: int = 900, manufacturer: str = DEFAULT_MANUFACTURER,
              annotator: str | None = None,
              codes: Mapping[int, tuple[Code, Code]] | None = None) -> Path:
    """Save `label_map` as a multi-segment BINARY DICOM SEG referencing the volume's images.

    labels[v] names label value v (labels[0] is the background); colours are '#rrggbb' in the
    same order. Labels without voxels are left out (`labels_without_voxels` names them);
    AnnotationError when no label has any. `slices` limits the SEG to the slices that were
    segmented (default: all). `origins`: value -> (SegmentAlgorithmType, (model, version));
    a value without one is AUTOMATIC by `algorithm` when given, else MANUAL. `annotator`: the
    person who drew or corrected it (ContentCreatorName). `codes`: value -> SNOMED (category,
    type) from the label table (default: from the name).
    Written atomically: a temporary file in the target folder, fsync, rename.
    """
    quiet_highdicom()
    label_map = _checked_label_map(label_map, volume, labels)
    chosen = list(range(label_map.shape[0])) if slices is None else [int(k) for k in slices]
    values = _values_with_voxels(label_map, chosen, len(labels))
    if not values:
        raise AnnotationError(path, "No label has any voxels, so there is no segmentation to "
                              "save.")
    check_unique_images(volume, path)
    datasets, frames = _source_datasets(volume, chosen)
    try:
        prepare_sources(datasets, float(getattr(volume, "spacing", (1.0,))[0]))
    except ValueError as exc:
        raise AnnotationError(path, str(exc)) from exc
    pixels = _numbered(_pixels_for_sources(label_map, chosen, frames, datasets), values)
    seg = _segmentation(datasets, pixels, segment_descriptions(
        labels, colours, algorithm, codes_of=codes, origins=origins, values=values), path,
        series_description=series_description, algorithm=algorithm,
        series_number=series_number, manufacturer=manufacturer, annotator=annotator)
    finish_seg(seg, datasets)
    return _save_atomically(seg, Path(path))


def voxel_counts(label_map: np.ndarray) -> np.ndarray:
    """Voxels per label value (256 counts) of a uint8 map, slice by slice: one bincount over
    the whole raveled map converts it to 8-byte indices first (10x slower on a CT)."""
    counts = np.zeros(256, np.int64)
    for plane in np.asarray(label_map, np.uint8).reshape(-1, *label_map.shape[-2:]):
        counts += np.bincount(plane.ravel(), minlength=256)
    return counts


def labels_without_voxels(label_map: np.ndarray, labels: Sequence[str]) -> list[str]:
    """Names of the labels (values 1..) that have no voxel in the map: write_seg skips them."""
    counts = voxel_counts(label_map)
    return [name for value, name in enumerate(labels) if value and not counts[value]]


def _values_with_voxels(label_map: np.ndarray, chosen: list[int], count: int) -> list[int]:
    part = label_map if chosen == list(range(label_map.shape[0])) else label_map[chosen]
    counts = voxel_counts(part)
    return [v for v in range(1, count) if counts[v]]


def _numbered(pixels: np.ndarray, values: list[int]) -> np.ndarray:
    """Label values -> segment numbers 1..n (unchanged when they already are)."""
    if values == list(range(1, len(values) + 1)):
        return pixels
    lut = np.zeros(256, np.uint8)
    lut[values] = np.arange(1, len(values) + 1)
    return lut[pixels]


def _segmentation(datasets: list[Any], pixels: np.ndarray, descriptions: list[Any],
                  path: str | Path, *, series_description: str, algorithm: Algorithm | None,
                  series_number: int, manufacturer: str, annotator: str | None) -> Any:
    import highdicom as hd

    from medviewer import __version__

    made_by = f"{algorithm[0]} {algorithm[1]}" if algorithm else "MedViewer"
    try:
        return hd.seg.Segmentation(
            source_images=datasets, pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            content_creator_name=person_name(annotator) if annotator else None,
            series_instance_uid=hd.UID(), series_number=series_number,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer=manufacturer,
            manufacturer_model_name=(algorithm[0] if algorithm else "MedViewer")[:64],
            software_versions=__version__, device_serial_number="none",
            series_description=series_description[:64], content_label="SEGMENTATION",
            content_description=made_by[:64])
    except (ValueError, TypeError, AttributeError) as exc:
        raise AnnotationError(path, f"The segmentation cannot be encoded as DICOM SEG ({exc})."
                              ) from exc


def _checked_label_map(label_map: np.ndarray, volume: Any, labels: Sequence[str]) -> np.ndarray:
    label_map = np.asarray(label_map)
    grid = grid_shape(volume)
    if label_map.shape != grid:
        raise AnnotationError(None, f"The label map is {label_map.shape} but the series is "
                              f"{grid}; it was made on another series.")
    top = int(label_map.max(initial=0))
    if top >= len(labels):
        raise AnnotationError(None, f"The label map holds value {top} but only "
                              f"{len(labels)} labels are named.")
    return label_map.astype(np.uint8, copy=False)


def grid_shape(volume: Any) -> tuple[int, int, int]:
    """(slices, rows, columns) of a volume's grey-level voxel grid (time point 0 of a 4D)."""
    v = volume.voxels
    if getattr(volume, "is_colour", False):
        v = v[..., 0]
    if v.ndim == 4:
        v = v[0]
    return tuple(v.shape[-3:]) if v.ndim >= 3 else (1, *v.shape)


def _pixels_for_sources(label_map: np.ndarray, slices: list[int], frames: list[int],
                        datasets: list[Any]) -> np.ndarray:
    """The label map in the order highdicom pairs with the sources: slice order for single-frame
    files, the file's frame order for one multi-frame file (frames not chosen stay 0)."""
    if len(datasets) == len(slices):
        if slices == list(range(label_map.shape[0])):  # the whole map: no 75 MB copy
            return np.ascontiguousarray(label_map)
        return np.ascontiguousarray(label_map[slices])
    count = int(getattr(datasets[0], "NumberOfFrames", 1) or 1)
    out = np.zeros((count, *label_map.shape[1:]), np.uint8)
    for k, frame in zip(slices, frames, strict=True):
        out[frame] = label_map[k]
    return out


def _save_atomically(seg: Any, path: Path) -> Path:
    with atomic_file(path) as f:
        seg.save_as(f, enforce_file_format=True)
    return path
