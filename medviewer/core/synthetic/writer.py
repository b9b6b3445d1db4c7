"""The shared writer core: UIDs, geometry, pixel coding, attributes and classic series.

Writers take voxels in *modality* units (HU for CT) and store raw = (value - intercept) / slope
with the narrowest BitsStored that holds them, so a reader that applies the rescale gets the
voxels back exactly. Everything is deterministic for a given seed.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    EnhancedCTImageStorage,
    EnhancedMRImageStorage,
    EnhancedPETImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    NuclearMedicineImageStorage,
    PositronEmissionTomographyImageStorage,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
)

IMPLEMENTATION_UID = "2.25.227059309619587934021509260218371895934"  # make_uid("implementation")
AXIAL: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL: tuple[float, ...] = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
CT_WINDOWS: tuple[tuple[float, float, str], ...] = ((40.0, 400.0, "MEDIASTINUM"),
                                                    (-600.0, 1500.0, "LUNG"))
GENERATOR_VERSION = "1"
_AUTO: Any = "auto"
_SOP_CLASS = {"CT": CTImageStorage, "MR": MRImageStorage, "NM": NuclearMedicineImageStorage,
              "PT": PositronEmissionTomographyImageStorage, "US": UltrasoundImageStorage,
              "DX": DigitalXRayImageStorageForPresentation}
_ENHANCED_SOP_CLASS = {"CT": EnhancedCTImageStorage, "MR": EnhancedMRImageStorage,
                       "PT": EnhancedPETImageStorage}
# MR value 3 as GE writes it: Siemens' M\ND is not a defined term (dciodvfy warns)
_IMAGE_TYPE = {"CT": ["ORIGINAL", "PRIMARY", "AXIAL"], "MR": ["ORIGINAL", "PRIMARY", "OTHER"]}
_MODALITY_HEADER: dict[str, dict[str, Any]] = {
    "CT": {"KVP": 120, "XRayTubeCurrent": 250, "ConvolutionKernel": "STANDARD",
           "GantryDetectorTilt": 0, "RotationDirection": "CW", "PatientPosition": "HFS"},
    "MR": {"MagneticFieldStrength": 1.5, "RepetitionTime": 550, "EchoTime": 12,
           "ScanningSequence": "SE", "SequenceVariant": "NONE", "MRAcquisitionType": "2D",
           "ImagingFrequency": 63.87, "EchoTrainLength": 1, "PatientPosition": "HFS",
           "ScanOptions": ""},  # Type 2: empty when no option (saturation, gating) was used
}


def make_uid(*parts: object) -> str:
    """A UID that depends only on `parts`: the same study gets the same UIDs on every run.

    A 2.25 UID from a name-based (SHA-1) UUID; pydicom's generate_uid(prefix=None) would
    ignore its entropy sources and return a random one.
    """
    name = "/".join(["medviewer-synthetic", *map(str, parts)])
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, name).int}"


def oblique(degrees: float, base: Sequence[float] = AXIAL) -> tuple[float, ...]:
    """`base` orientation tilted about the patient's left-right axis (a gantry-tilted CT)."""
    a = np.deg2rad(degrees)
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    row, col = rot @ np.asarray(base[:3], float), rot @ np.asarray(base[3:], float)
    return tuple(round(float(v), 6) for v in (*row, *col))


@dataclass(frozen=True)
class Geometry:
    """Where a stack of slices sits in the patient (LPS mm), in the DESIGN.md convention.

    shape (slices, rows, columns); spacing (slice, row, column) mm; origin = position of voxel
    (0, 0, 0), centred on the LPS origin when None; slice k lies k * spacing[0] along the normal.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    orientation: tuple[float, ...] = AXIAL
    origin: tuple[float, float, float] | None = None

    @property
    def row_direction(self) -> np.ndarray:
        """Direction in which the column index grows (IOP[0:3])."""
        return np.asarray(self.orientation[:3], float)

    @property
    def column_direction(self) -> np.ndarray:
        """Direction in which the row index grows (IOP[3:6])."""
        return np.asarray(self.orientation[3:6], float)

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_direction, self.column_direction)

    @property
    def first_position(self) -> np.ndarray:
        if self.origin is not None:
            return np.round(np.asarray(self.origin, float), 4)
        (s, r, c), (ds, dr, dc) = self.shape, self.spacing
        centre = ((c - 1) / 2 * dc * self.row_direction + (r - 1) / 2 * dr * self.column_direction
                  + (s - 1) / 2 * ds * self.normal)
        return np.round(-centre, 4) + 0.0  # + 0.0 turns -0.0 into 0.0

    def position(self, k: int) -> np.ndarray:
        """ImagePositionPatient of slice k."""
        return np.round(self.first_position + k * self.spacing[0] * self.normal, 4) + 0.0

    def to_lps(self, k: float, r: float, c: float) -> np.ndarray:
        """Patient LPS mm of the voxel centre (slice k, row r, column c)."""
        return (self.affine @ np.array([c, r, k, 1.0]))[:3]

    @property
    def affine(self) -> np.ndarray:
        """4x4 mapping (column, row, slice, 1) to LPS mm, as Volume.affine."""
        out = np.eye(4)
        out[:3, 0] = self.row_direction * self.spacing[2]
        out[:3, 1] = self.column_direction * self.spacing[1]
        out[:3, 2] = self.normal * self.spacing[0]
        out[:3, 3] = self.first_position
        return out

    def header(self) -> dict[str, Any]:
        return {"ImageOrientationPatient": [round(float(v), 6) for v in self.orientation],
                "PixelSpacing": [float(self.spacing[1]), float(self.spacing[2])],
                "SliceThickness": float(self.spacing[0]),
                "SpacingBetweenSlices": float(self.spacing[0])}


@dataclass(frozen=True)
class PixelCoding:
    """How modality values become stored values: rescale and the Image Pixel bit layout."""

    slope: float = 1.0
    intercept: float = 0.0
    bits_allocated: int = 16
    bits_stored: int = 16
    signed: bool = False

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(f"<{'i' if self.signed else 'u'}{self.bits_allocated // 8}")

    def stored(self, values: np.ndarray) -> np.ndarray:
        """Raw stored values for `values` in modality units."""
        if self.slope == 1 and float(self.intercept).is_integer() and values.dtype.kind in "iub":
            return (values.astype(np.int32) - int(self.intercept)).astype(self.dtype)
        raw = np.rint((values.astype(np.float64) - self.intercept) / self.slope)
        return raw.astype(self.dtype)

    def header(self) -> dict[str, Any]:
        return {"BitsAllocated": self.bits_allocated, "BitsStored": self.bits_stored,
                "HighBit": self.bits_stored - 1, "PixelRepresentation": int(self.signed)}


def plan_coding(voxels: np.ndarray, rescale: tuple[float, float] | None) -> PixelCoding:
    """The narrowest scanner-like layout (8, 12 or 16 bits) that stores `voxels` losslessly."""
    slope, intercept = rescale if rescale is not None else (1.0, 0.0)
    if slope == 0:
        raise ValueError("RescaleSlope must not be 0")
    lo, hi = sorted(((float(voxels.min()) - intercept) / slope,
                     (float(voxels.max()) - intercept) / slope))
    lo, hi, signed = round(lo), round(hi), round(lo) < 0
    allocated = 8 if rescale is None and voxels.dtype.itemsize == 1 else 16
    for bits in ((8,) if allocated == 8 else (12, 16)):
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        if low <= lo and hi <= high:
            return PixelCoding(float(slope), float(intercept), allocated, bits, signed)
    raise ValueError(f"values {lo}..{hi} (stored units) do not fit in 16 bits; pass a rescale")


def _check_keywords(attributes: Mapping[str, Any]) -> None:
    unknown = [k for k in attributes if tag_for_keyword(k) is None]
    if unknown:
        raise ValueError(f"not DICOM keywords: {', '.join(unknown)}")


def base_attributes(modality: str, seed: int, **attributes: Any) -> dict[str, Any]:
    """Patient / study / series attributes a scanner would write, overridden by `attributes`.

    Study, series and frame-of-reference UIDs derive from the seed and the series number and
    description, so two series written with one seed share a study but not a series.
    """
    _check_keywords(attributes)
    out: dict[str, Any] = {
        "SpecificCharacterSet": "ISO_IR 100", "PatientName": "SYNTHETIC^PHANTOM",
        "PatientID": f"SYN{seed:05d}", "PatientBirthDate": "19640521", "PatientSex": "F",
        "PatientAge": "060Y", "StudyDate": "20240612", "StudyTime": "101500",
        "StudyID": "1", "AccessionNumber": f"ACC{seed:07d}", "ReferringPhysicianName": "",
        "StudyDescription": f"{modality} SYNTHETIC", "SeriesNumber": 1,
        "SeriesDescription": f"{modality} SYNTHETIC PHANTOM", "Modality": modality,
        "Manufacturer": "MedViewer", "ManufacturerModelName": "Synthetic Phantom",
        "InstitutionName": "MedViewer Demo Hospital", "SoftwareVersions": "synthetic "
        + GENERATOR_VERSION, "BodyPartExamined": "CHEST", "ConversionType": "SYN",
        "ImageType": _IMAGE_TYPE.get(modality, ["ORIGINAL", "PRIMARY"]),
        "BurnedInAnnotation": "NO", "AcquisitionNumber": 1,
    }
    if modality in _SOP_CLASS:
        del out["ConversionType"]  # only Secondary Capture carries it
        # Frame of Reference, Type 2: empty, as scanners write it when no landmark was set
        out["PositionReferenceIndicator"] = ""
    out.update(_MODALITY_HEADER.get(modality, {}))
    out.update(attributes)
    for key in ("Series", "Content", "Acquisition", "InstanceCreation"):
        out.setdefault(f"{key}Date", out["StudyDate"])
        out.setdefault(f"{key}Time", out["StudyTime"])
    out.setdefault("StudyInstanceUID", make_uid(seed, "study"))
    out.setdefault("SeriesInstanceUID", make_uid(
        seed, out["StudyInstanceUID"], out["SeriesNumber"], out["SeriesDescription"]))
    out.setdefault("FrameOfReferenceUID", make_uid(seed, "frame", out["StudyInstanceUID"]))
    return out


def window_attributes(windows: Iterable[tuple[float, float, str]]) -> dict[str, Any]:
    """WindowCenter / WindowWidth / explanations, every listed value in header order."""
    windows = list(windows)
    if not windows:
        return {}
    return {"WindowCenter": [float(w[0]) for w in windows],
            "WindowWidth": [float(w[1]) for w in windows],
            "WindowCenterWidthExplanation": [w[2] for w in windows]}


def _default_windows(voxels: np.ndarray, modality: str) -> list[tuple[float, float, str]]:
    if modality == "CT":
        return list(CT_WINDOWS)
    lo, hi = float(voxels.min()), float(voxels.max())
    return [(round((lo + hi) / 2, 2), round(max(hi - lo, 1.0), 2), "FULL RANGE")]


def _rescale_attributes(coding: PixelCoding, rescale: object, modality: str) -> dict[str, Any]:
    if rescale is None:
        return {}
    return {"RescaleIntercept": coding.intercept, "RescaleSlope": coding.slope,
            "RescaleType": "HU" if modality == "CT" else "US"}


def new_dataset(sop_class: str, sop_instance: str, attributes: Mapping[str, Any]) -> Dataset:
    """A dataset with file meta, ready for pixels: Explicit VR Little Endian until saved."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_instance
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = "MEDVIEWER_SYN_" + GENERATOR_VERSION
    ds.preamble = b"\x00" * 128
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_instance
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def set_grey_pixels(ds: Dataset, stored: np.ndarray, coding: PixelCoding, photometric: str) -> None:
    """Native grey Pixel Data (one frame or (frames, rows, columns)) and its Image Pixel module."""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.Rows, ds.Columns = int(stored.shape[-2]), int(stored.shape[-1])
    for keyword, value in coding.header().items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(stored, dtype=coding.dtype).tobytes()
    ds["PixelData"].VR = "OB" if coding.bits_allocated == 8 else "OW"


def save(ds: Dataset, path: str | Path | io.BytesIO, transfer_syntax: str) -> None:
    """Encode the native pixel data into `transfer_syntax` (pydicom 3 encoders) and write."""
    ts = UID(transfer_syntax)
    if ts.is_encapsulated:
        if "2000" in ts.name and min(ds.Rows, ds.Columns) < 32:
            # openjpeg always uses 6 wavelet resolutions, which need 32 pixels a side
            raise ValueError("JPEG 2000 encoding needs images of at least 32 x 32 pixels")
        ds.compress(ts, generate_instance_uid=False)
    else:
        if not ts.is_little_endian and ds.get("BitsAllocated", 8) > 8:
            # pydicom writes Pixel Data bytes as given: swap them for big endian
            ds.PixelData = np.frombuffer(ds.PixelData, "<u2").astype(">u2").tobytes()
        ds.file_meta.TransferSyntaxUID = ts
    ds.save_as(path, enforce_file_format=True)


def _save_in(folder: str | Path, filename: str, ds: Dataset, transfer_syntax: str) -> Path:
    """Create `folder` and save; an already encapsulated dataset is written as it is."""
    path = Path(folder) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        ds.save_as(path, enforce_file_format=True)
    else:
        save(ds, path, transfer_syntax)
    return path


def _file_names(count: int, *, shuffle: bool, seed: int, suffix: str) -> list[str]:
    numbers = np.arange(1, count + 1)
    if shuffle:
        numbers = np.random.default_rng([seed, 7]).permutation(numbers)
    return [f"IM{n:05d}{suffix}" for n in numbers]


@dataclass
class SeriesPlan:
    """Everything one series shares; `image(k, values)` builds the dataset of slice k."""

    geometry: Geometry
    coding: PixelCoding
    sop_class: str
    common: dict[str, Any]
    photometric: str = "MONOCHROME2"
    plane: bool = True  # Image Plane attributes; Secondary Capture has no patient geometry

    @classmethod
    def build(cls, voxels: np.ndarray, geometry: Geometry, *, modality: str, rescale: Any,
              windows: Any, photometric: str, seed: int, attributes: Mapping[str, Any],
              ) -> SeriesPlan:
        if rescale is _AUTO:
            rescale = (1.0, -1024.0) if modality == "CT" else None
        coding = plan_coding(voxels, rescale)
        windows = _default_windows(voxels, modality) if windows is None else windows
        sop_class = _SOP_CLASS.get(modality, SecondaryCaptureImageStorage)
        plane = sop_class != SecondaryCaptureImageStorage
        # the SC IOD has no Frame of Reference or Image Plane module: no position, orientation
        # or slice thickness; PatientOrientation (Type 2C) stands in for them, empty
        space = geometry.header() if plane else {
            "PixelSpacing": geometry.header()["PixelSpacing"], "PatientOrientation": ""}
        common = base_attributes(modality, seed, **{
            **space, **window_attributes(windows),
            **_rescale_attributes(coding, rescale, modality), **attributes})
        if not plane:
            common.pop("FrameOfReferenceUID", None)
        return cls(geometry, coding, sop_class, common, photometric, plane)

    def image(self, k: int, values: np.ndarray, *, instance: int, uid_parts: Sequence[object] = (),
              extra: Mapping[str, Any] | None = None) -> Dataset:
        position = self.geometry.position(k)
        uid = make_uid(self.common["SeriesInstanceUID"], k, *uid_parts)
        ds = new_dataset(self.sop_class, uid, self.common)
        ds.InstanceNumber = instance
        if self.plane:
            ds.ImagePositionPatient = [float(v) for v in position]
            ds.SliceLocation = round(float(position @ self.geometry.normal), 4) + 0.0
        for keyword, value in (extra or {}).items():
            setattr(ds, keyword, value)
        set_grey_pixels(ds, self.coding.stored(values), self.coding, self.photometric)
        return ds


def write_series(
    folder: str | Path,
    voxels: np.ndarray,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    origin: Sequence[float] | None = None,
    orientation: Sequence[float] = AXIAL,
    modality: str = "CT",
    rescale: tuple[float, float] | None = _AUTO,
    windows: Sequence[tuple[float, float, str]] | None = None,
    photometric: str = "MONOCHROME2",
    transfer_syntax: str = ExplicitVRLittleEndian,
    shuffle_names: bool = False,
    skip_slices: Iterable[int] = (),
    seed: int = 0,
    suffix: str = ".dcm",
    **attributes: Any,
) -> list[Path]:
    """Write `voxels` (slices, rows, columns; modality units) as one file per slice.

    rescale: (slope, intercept); default (1, -1024) for CT, none otherwise. windows: default
    MEDIASTINUM / LUNG for CT, the data range otherwise; [] for none. skip_slices leaves those
    files out (a gap in the positions); shuffle_names scrambles the file names against the
    slice order. `attributes` are DICOM keywords overriding the defaults (PatientName=...).
    Returns the written paths in slice order.
    """
    voxels = np.asarray(voxels)
    if voxels.ndim != 3:
        raise ValueError(f"voxels must be (slices, rows, columns), got shape {voxels.shape}")
    geometry = Geometry(voxels.shape, tuple(spacing), tuple(orientation),
                        None if origin is None else tuple(origin))
    plan = SeriesPlan.build(voxels, geometry, modality=modality, rescale=rescale,
                            windows=windows, photometric=photometric, seed=seed,
                            attributes=attributes)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = _file_names(len(voxels), shuffle=shuffle_names, seed=seed, suffix=suffix)
    skipped, paths = set(skip_slices), []
    for k, values in enumerate(voxels):
        if k not in skipped:
            save(plan.image(k, values, instance=k + 1), folder / names[k], transfer_syntax)
            paths.append(folder / names[k])
    return paths

