"""Synthetic DICOM: scanner-like files and anatomical phantoms whose content is known exactly.

Why: tests, benchmarks and the built-in demo study need real DICOM files with ground truth
(where the nodules are, how wide the heart is) and no patient data. Everything is deterministic
for a given seed: the same call writes the same bytes.

Writers take voxels in *modality* units (HU for CT) and store raw = (value - intercept) / slope
with the narrowest BitsStored that holds them, so a reader that applies the rescale gets the
voxels back exactly.
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
from pydicom.encaps import encapsulate
from pydicom.pixels.processing import convert_color_space
from pydicom.uid import (
    UID,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    EnhancedCTImageStorage,
    EnhancedMRImageStorage,
    EnhancedPETImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    MRImageStorage,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    NuclearMedicineImageStorage,
    PositronEmissionTomographyImageStorage,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
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
_IMAGE_TYPE = {"CT": ["ORIGINAL", "PRIMARY", "AXIAL"], "MR": ["ORIGINAL", "PRIMARY", "M", "ND"]}
_MODALITY_HEADER: dict[str, dict[str, Any]] = {
    "CT": {"KVP": 120, "XRayTubeCurrent": 250, "ConvolutionKernel": "STANDARD",
           "GantryDetectorTilt": 0, "RotationDirection": "CW", "PatientPosition": "HFS"},
    "MR": {"MagneticFieldStrength": 1.5, "RepetitionTime": 550, "EchoTime": 12,
           "ScanningSequence": "SE", "SequenceVariant": "NONE", "MRAcquisitionType": "2D",
           "ImagingFrequency": 63.87, "EchoTrainLength": 1, "PatientPosition": "HFS"},
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

    @classmethod
    def build(cls, voxels: np.ndarray, geometry: Geometry, *, modality: str, rescale: Any,
              windows: Any, photometric: str, seed: int, attributes: Mapping[str, Any],
              ) -> SeriesPlan:
        if rescale is _AUTO:
            rescale = (1.0, -1024.0) if modality == "CT" else None
        coding = plan_coding(voxels, rescale)
        windows = _default_windows(voxels, modality) if windows is None else windows
        common = base_attributes(modality, seed, **{
            **geometry.header(), **window_attributes(windows),
            **_rescale_attributes(coding, rescale, modality), **attributes})
        sop_class = _SOP_CLASS.get(modality, SecondaryCaptureImageStorage)
        return cls(geometry, coding, sop_class, common, photometric)

    def image(self, k: int, values: np.ndarray, *, instance: int, uid_parts: Sequence[object] = (),
              extra: Mapping[str, Any] | None = None) -> Dataset:
        position = self.geometry.position(k)
        uid = make_uid(self.common["SeriesInstanceUID"], k, *uid_parts)
        ds = new_dataset(self.sop_class, uid, self.common)
        ds.InstanceNumber = instance
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


# --- chest CT phantom -----------------------------------------------------------------------

CHEST_HU = {"air": -1000, "fat": -100, "soft_tissue": 40, "blood": 45, "lung": -850,
            "nodule": 50, "rib": 500, "cortical_bone": 700, "cancellous_bone": 250, "csf": 15}
CHEST_LABELS = {"background": 0, "body": 1, "lung": 2, "nodule": 3, "spine": 4}
# label, side (-1 patient right, +1 left), height u (0 lung base .. 1 apex), offset in lung
# half-axes (lateral, posterior), diameter mm
_NODULES = (("RUL 6 mm", -1, 0.72, -0.10, -0.20, 6.0), ("LUL 10 mm", 1, 0.58, 0.15, -0.35, 10.0),
            ("RLL 15 mm", -1, 0.30, -0.20, 0.35, 15.0), ("LLL 20 mm", 1, 0.22, 0.25, 0.40, 20.0))


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float
             ) -> np.ndarray:
    """Boolean disc/ellipse by broadcasting a (1, C) x row against a (R, 1) y column."""
    if ax <= 0 or ay <= 0:
        return np.zeros((y.shape[0], x.shape[1]), bool)
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0


class _Chest:
    """Chest anatomy in mm around the image centre, scaled to the in-plane field of view.

    The body fills ~88 % of the narrower field of view; lungs, heart and spine follow it, so a
    64 x 64 test series and a 512 x 512 demo look alike. Nodules keep their true size in mm.
    """

    def __init__(self, shape: Sequence[int], spacing: Sequence[float]) -> None:
        self.shape = tuple(int(v) for v in shape)
        self.spacing = tuple(float(v) for v in spacing)
        s, r, c = self.shape
        self.x = ((np.arange(c, dtype=np.float32) - (c - 1) / 2) * self.spacing[2])[None, :]
        self.y = ((np.arange(r, dtype=np.float32) - (r - 1) / 2) * self.spacing[1])[:, None]
        fov = min(c * self.spacing[2], r * self.spacing[1])
        self.a, self.b, self.fov = 0.44 * fov, 0.30 * fov, fov
        self.nodules = [n for n in map(self._nodule, _NODULES) if self._fits(n)]

    def height(self, k: float) -> float:
        """0 at the lung bases .. 1 at the apices (slice 0 is the most inferior)."""
        t = k / (self.shape[0] - 1) if self.shape[0] > 1 else 0.5
        return (t - 0.06) / 0.90

    def lung_scale(self, u: float) -> float:
        if not 0.0 <= u <= 1.0:
            return 0.0
        return float(np.sqrt(1.0 - u**3) * np.sqrt(min(1.0, u / 0.08)))

    def lung_axes(self, side: int, u: float) -> tuple[float, float, float, float]:
        f = self.lung_scale(u)
        return side * 0.48 * self.a, 0.05 * self.b, 0.36 * self.a * f, 0.70 * self.b * f

    def _nodule(self, spec: tuple) -> dict[str, Any]:
        label, side, u, fx, fy, diameter = spec
        cx, cy, ax, ay = self.lung_axes(side, u)
        k = (0.06 + 0.90 * u) * (self.shape[0] - 1)
        return {"label": label, "side": "left" if side > 0 else "right",
                "center_mm": (k * self.spacing[0], cy + fy * ay, cx + fx * ax),
                "diameter_mm": diameter}

    def _fits(self, nodule: dict[str, Any]) -> bool:
        """A nodule is kept when every voxel of it lies in lung and it covers a voxel."""
        hit = False
        for k in range(self.shape[0]):
            disc = self.nodule_disc(nodule, k)
            if disc is not None and disc.any():
                hit = True
                if not self.lungs(k)[disc].all():
                    return False
        return hit

    def nodule_disc(self, nodule: dict[str, Any], k: int) -> np.ndarray | None:
        zc, yc, xc = nodule["center_mm"]
        r2 = (nodule["diameter_mm"] / 2) ** 2 - (k * self.spacing[0] - zc) ** 2
        return None if r2 < 0 else _ellipse(self.x, self.y, xc, yc, np.sqrt(r2), np.sqrt(r2))

    def heart(self, k: int) -> np.ndarray:
        u = self.height(k)
        g = np.sqrt(max(0.0, 1.0 - ((u - 0.25) / 0.25) ** 2))
        return _ellipse(self.x, self.y, 0.18 * self.a, -0.30 * self.b,
                        0.36 * self.a * g, 0.42 * self.b * g)

    def spine(self) -> dict[str, np.ndarray]:
        fov, yb = self.fov, 0.50 * self.b
        body = _ellipse(self.x, self.y, 0, yb, 0.05 * fov, 0.05 * fov)
        inner = _ellipse(self.x, self.y, 0, yb, 0.042 * fov, 0.042 * fov)
        canal = _ellipse(self.x, self.y, 0, yb + 0.072 * fov, 0.02 * fov, 0.02 * fov)
        arch = _ellipse(self.x, self.y, 0, yb + 0.072 * fov, 0.035 * fov, 0.035 * fov)
        return {"cortical": (body & ~inner) | (arch & ~canal), "cancellous": inner,
                "canal": canal, "bone": body | (arch & ~canal)}

    def lungs(self, k: int, spine: np.ndarray | None = None) -> np.ndarray:
        u = self.height(k)
        left, right = (_ellipse(self.x, self.y, *self.lung_axes(side, u)) for side in (1, -1))
        bone = self.spine()["bone"] if spine is None else spine
        return (left | right) & ~self.heart(k) & ~bone & (np.abs(self.x) > 0.10 * self.a)

    def ribs(self, k: int) -> np.ndarray:
        """Rib arcs lateral and posterior to the lungs, one 9 mm rib every 28 mm of height."""
        if (k * self.spacing[0]) % 28.0 >= 9.0 or self.lung_scale(self.height(k)) == 0:
            return np.zeros((self.shape[1], self.shape[2]), bool)
        outer = _ellipse(self.x, self.y, 0, 0, 0.90 * self.a, 0.90 * self.b)
        inner = _ellipse(self.x, self.y, 0, 0, 0.86 * self.a, 0.86 * self.b)
        return outer & ~inner & (self.y > -0.6 * self.b)

    def masks(self, k: int, spine: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        body = _ellipse(self.x, self.y, 0, 0, self.a, self.b)
        fat_free = _ellipse(self.x, self.y, 0, 0, self.a - 0.035 * self.fov,
                            self.b - 0.035 * self.fov)
        nodule = np.zeros_like(body)
        for n in self.nodules:
            disc = self.nodule_disc(n, k)
            if disc is not None:
                nodule |= disc
        return {"body": body, "fat": body & ~fat_free, "lung": self.lungs(k, spine["bone"]),
                "heart": self.heart(k), "rib": self.ribs(k), "nodule": nodule, **spine}


def _paint_chest_slice(m: dict[str, np.ndarray]) -> np.ndarray:
    hu = np.full(m["body"].shape, CHEST_HU["air"], np.float32)
    for name, tissue in (("body", "soft_tissue"), ("fat", "fat"), ("lung", "lung"),
                         ("heart", "blood"), ("rib", "rib"), ("cortical", "cortical_bone"),
                         ("cancellous", "cancellous_bone"), ("canal", "csf"),
                         ("nodule", "nodule")):
        hu[m[name]] = CHEST_HU[tissue]
    return hu


def ct_chest_phantom(
    shape: Sequence[int] = (120, 512, 512),
    spacing: Sequence[float] = (2.5, 0.7, 0.7),
    *,
    origin: Sequence[float] | None = None,
    noise_hu: float = 8.0,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A chest CT in HU (int16, (slices, rows, columns), slice 0 inferior) and its truth.

    Truth lists every nodule (label, centre voxel (slice, row, column), centre LPS mm for the
    default axial geometry with `origin`, diameter, analytic volume and voxel count) plus the HU
    of each tissue. Nodules that would not lie entirely in lung at this size are left out.
    """
    chest = _Chest(shape, spacing)
    geometry = Geometry(chest.shape, chest.spacing, AXIAL,
                        None if origin is None else tuple(origin))
    rng = np.random.default_rng([seed, 11])
    hu = np.empty(chest.shape, np.int16)
    spine = chest.spine()
    counts = [0] * len(chest.nodules)
    for k in range(chest.shape[0]):
        masks = chest.masks(k, spine)
        image = _paint_chest_slice(masks)
        if noise_hu:
            image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(noise_hu)
        np.clip(np.rint(image), -1024, 3071, out=image)
        hu[k] = image
        for i, n in enumerate(chest.nodules):
            disc = chest.nodule_disc(n, k)
            counts[i] += 0 if disc is None else int(disc.sum())
    return hu, _chest_truth(chest, geometry, counts)


def _chest_truth(chest: _Chest, geometry: Geometry, counts: list[int]) -> dict[str, Any]:
    s, r, c = chest.shape
    nodules = []
    for n, count in zip(chest.nodules, counts, strict=True):
        zc, yc, xc = n["center_mm"]
        voxel = (zc / chest.spacing[0], yc / chest.spacing[1] + (r - 1) / 2,
                 xc / chest.spacing[2] + (c - 1) / 2)
        nodules.append({
            "label": n["label"], "side": n["side"], "diameter_mm": n["diameter_mm"],
            "center_voxel": [round(v, 3) for v in voxel],
            "center_lps": [round(float(v), 3) for v in geometry.to_lps(*voxel)],
            "volume_mm3": round(float(np.pi / 6 * n["diameter_mm"] ** 3), 2),
            "voxel_count": count, "hu": CHEST_HU["nodule"]})
    return {"shape": list(chest.shape), "spacing": list(chest.spacing),
            "origin": [float(v) for v in geometry.first_position], "nodules": nodules,
            "hu": dict(CHEST_HU), "labels": dict(CHEST_LABELS)}


def ct_chest_labels(shape: Sequence[int] = (120, 512, 512),
                    spacing: Sequence[float] = (2.5, 0.7, 0.7)) -> np.ndarray:
    """Segmentation ground truth of `ct_chest_phantom` on the same grid (CHEST_LABELS)."""
    chest = _Chest(shape, spacing)
    labels = np.zeros(chest.shape, np.uint8)
    spine = chest.spine()
    for k in range(chest.shape[0]):
        m = chest.masks(k, spine)
        out = labels[k]
        out[m["body"]] = CHEST_LABELS["body"]
        out[m["lung"]] = CHEST_LABELS["lung"]
        out[m["bone"] & m["body"]] = CHEST_LABELS["spine"]
        out[m["nodule"]] = CHEST_LABELS["nodule"]
    return labels


# --- multi-frame, 4D, colour, palette -------------------------------------------------------

def _item(**attributes: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def _enhanced_groups(plan: SeriesPlan, order: Sequence[int]) -> dict[str, Any]:
    """Shared and per-frame functional groups of an Enhanced CT / MR / PET image."""
    header, common = plan.geometry.header(), plan.common
    shared = _item(
        PixelMeasuresSequence=[_item(PixelSpacing=header["PixelSpacing"],
                                     SliceThickness=header["SliceThickness"],
                                     SpacingBetweenSlices=header["SpacingBetweenSlices"])],
        PlaneOrientationSequence=[_item(
            ImageOrientationPatient=header["ImageOrientationPatient"])])
    if "RescaleSlope" in common:
        shared.PixelValueTransformationSequence = [_item(**{
            k: common[k] for k in ("RescaleIntercept", "RescaleSlope", "RescaleType")})]
    if "WindowCenter" in common:
        shared.FrameVOILUTSequence = [_item(**{k: common[k] for k in (
            "WindowCenter", "WindowWidth", "WindowCenterWidthExplanation")})]
    per_frame = [_item(
        PlanePositionSequence=[_item(
            ImagePositionPatient=[float(v) for v in plan.geometry.position(k)])],
        FrameContentSequence=[_item(StackID="1", InStackPositionNumber=k + 1,
                                    DimensionIndexValues=[1, k + 1])]) for k in order]
    dimensions = make_uid(common["SeriesInstanceUID"], "dimensions")
    index = [_item(DimensionOrganizationUID=dimensions, DimensionIndexPointer=tag,
                   FunctionalGroupPointer=0x00209111) for tag in (0x00209056, 0x00209057)]
    return {"SharedFunctionalGroupsSequence": [shared], "PerFrameFunctionalGroupsSequence":
            per_frame, "DimensionOrganizationSequence": [_item(
                DimensionOrganizationUID=dimensions)], "DimensionIndexSequence": index}


def _enhanced_header(plan: SeriesPlan, order: list[int]) -> tuple[str, dict[str, Any]]:
    """SOP class and attributes of an Enhanced image: geometry lives in functional groups."""
    modality = plan.common["Modality"]
    if modality not in _ENHANCED_SOP_CLASS:
        raise ValueError(f"no Enhanced image storage for {modality}: use CT, MR or PT")
    common = {k: v for k, v in plan.common.items() if k not in _PER_FRAME_KEYWORDS}
    common.update(_enhanced_groups(plan, order), ContentQualification="PRODUCT",
                  ImageType=["ORIGINAL", "PRIMARY", "AXIAL", "NONE"],
                  PresentationLUTShape="IDENTITY", LossyImageCompression="00",
                  VolumetricProperties="VOLUME", PixelPresentation="MONOCHROME")
    return _ENHANCED_SOP_CLASS[modality], common


def _classic_header(plan: SeriesPlan, order: list[int]) -> tuple[str, dict[str, Any]]:
    """SOP class and attributes of a classic multi-frame SC: one position, a location vector."""
    geometry = plan.geometry
    sop_class = (MultiFrameGrayscaleByteSecondaryCaptureImageStorage
                 if plan.coding.bits_allocated == 8
                 else MultiFrameGrayscaleWordSecondaryCaptureImageStorage)
    locations = [round(float(geometry.position(k) @ geometry.normal), 4) for k in order]
    return sop_class, {**plan.common, "ConversionType": "WSD",
                       "ImagePositionPatient": [float(v) for v in geometry.position(0)],
                       "SliceLocationVector": locations, "FrameIncrementPointer": 0x00182005}


_PER_FRAME_KEYWORDS = ("ImageOrientationPatient", "PixelSpacing", "SliceThickness",
                       "SpacingBetweenSlices", "RescaleIntercept", "RescaleSlope",
                       "RescaleType", "WindowCenter", "WindowWidth",
                       "WindowCenterWidthExplanation")


def write_multiframe(
    folder: str | Path,
    voxels: np.ndarray,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    origin: Sequence[float] | None = None,
    orientation: Sequence[float] = AXIAL,
    modality: str = "CT",
    rescale: tuple[float, float] | None = _AUTO,
    windows: Sequence[tuple[float, float, str]] | None = None,
    enhanced: bool = True,
    shuffle_frames: bool = False,
    transfer_syntax: str = ExplicitVRLittleEndian,
    seed: int = 0,
    filename: str = "MF00001.dcm",
    **attributes: Any,
) -> Path:
    """Write `voxels` as one multi-frame file.

    enhanced=True: Enhanced CT / MR / PET with functional groups (geometry, rescale and
    windows per frame or shared); shuffle_frames stores the frames out of spatial order, each
    with its own PlanePositionSequence. enhanced=False: a classic Multi-frame Grayscale
    Secondary Capture with a single ImagePositionPatient and a SliceLocationVector.
    """
    voxels = np.asarray(voxels)
    geometry = Geometry(voxels.shape, tuple(spacing), tuple(orientation),
                        None if origin is None else tuple(origin))
    plan = SeriesPlan.build(voxels, geometry, modality=modality, rescale=rescale,
                            windows=windows, photometric="MONOCHROME2", seed=seed,
                            attributes=attributes)
    order = list(range(len(voxels)))
    if shuffle_frames:
        if not enhanced:
            raise ValueError("a classic multi-frame image has no per-frame positions to shuffle")
        order = [int(k) for k in np.random.default_rng([seed, 13]).permutation(order)]
    sop_class, common = (_enhanced_header if enhanced else _classic_header)(plan, order)
    ds = new_dataset(sop_class, make_uid(common["SeriesInstanceUID"], "frames"), common)
    ds.InstanceNumber, ds.NumberOfFrames = 1, len(order)
    set_grey_pixels(ds, plan.coding.stored(voxels[order]), plan.coding, "MONOCHROME2")
    return _save_in(folder, filename, ds, transfer_syntax)


def _dicom_time(hhmmss: str, offset_s: float) -> str:
    seconds = int(hhmmss[:2]) * 3600 + int(hhmmss[2:4]) * 60 + float(hhmmss[4:] or 0) + offset_s
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{int(h) % 24:02d}{int(m):02d}{s:09.6f}"


def write_4d(
    folder: str | Path,
    voxels: np.ndarray,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    origin: Sequence[float] | None = None,
    orientation: Sequence[float] = AXIAL,
    modality: str = "MR",
    rescale: tuple[float, float] | None = _AUTO,
    windows: Sequence[tuple[float, float, str]] | None = None,
    interval_s: float = 5.0,
    transfer_syntax: str = ExplicitVRLittleEndian,
    seed: int = 0,
    **attributes: Any,
) -> list[Path]:
    """A dynamic series (time, slices, rows, columns): the same positions at every time point.

    InstanceNumber runs across all files; TemporalPositionIdentifier, AcquisitionTime and
    TriggerTime (ms) tell the time points apart. Returns paths in (time, slice) order.
    """
    voxels = np.asarray(voxels)
    if voxels.ndim != 4:
        raise ValueError(f"voxels must be (time, slices, rows, columns), got {voxels.shape}")
    geometry = Geometry(voxels.shape[1:], tuple(spacing), tuple(orientation),
                        None if origin is None else tuple(origin))
    plan = SeriesPlan.build(voxels, geometry, modality=modality, rescale=rescale,
                            windows=windows, photometric="MONOCHROME2", seed=seed,
                            attributes={"NumberOfTemporalPositions": len(voxels), **attributes})
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths, slices = [], voxels.shape[1]
    for t, volume in enumerate(voxels):
        time = _dicom_time(plan.common["AcquisitionTime"], t * interval_s)
        extra = {"TemporalPositionIdentifier": t + 1, "AcquisitionTime": time,
                 "ContentTime": time, "TriggerTime": round(t * interval_s * 1000, 3)}
        for k, values in enumerate(volume):
            instance = t * slices + k + 1
            ds = plan.image(k, values, instance=instance, uid_parts=(t,), extra=extra)
            save(ds, folder / f"IM{instance:05d}.dcm", transfer_syntax)
            paths.append(folder / f"IM{instance:05d}.dcm")
    return paths


def _pack_422(ybr: np.ndarray) -> np.ndarray:
    """YBR_FULL (frames, rows, columns, 3) -> native YBR_FULL_422 samples Y1 Y2 Cb Cr."""
    f, r, c, _ = ybr.shape
    if c % 2:
        raise ValueError("YBR_FULL_422 needs an even number of columns")
    pairs = ybr.reshape(f, r, c // 2, 2, 3).astype(np.float32)
    chroma = np.rint(pairs[..., 1:].mean(axis=3)).astype(np.uint8)
    return np.concatenate([ybr[..., 0].reshape(f, r, c // 2, 2), chroma], axis=-1)


def _jpeg_frame(rgb: np.ndarray, photometric: str) -> bytes:
    """Baseline JPEG of one RGB frame by Pillow (pydicom 3 has no JPEG baseline encoder)."""
    try:
        from PIL import Image
    except ImportError as error:  # pragma: no cover - Pillow ships with torchvision
        raise RuntimeError("JPEG Baseline writing needs Pillow") from error
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="JPEG", quality=95,
                                     subsampling=1 if photometric == "YBR_FULL_422" else 0)
    return buffer.getvalue()


def _colour_sop_class(modality: str, multi: bool) -> str:
    if modality == "US":
        return UltrasoundMultiFrameImageStorage if multi else UltrasoundImageStorage
    return MultiFrameTrueColorSecondaryCaptureImageStorage if multi else \
        SecondaryCaptureImageStorage


def write_rgb(
    folder: str | Path,
    rgb: np.ndarray,
    *,
    photometric: str = "RGB",
    planar_configuration: int = 0,
    transfer_syntax: str = ExplicitVRLittleEndian,
    modality: str = "US",
    seed: int = 0,
    filename: str = "RGB00001.dcm",
    **attributes: Any,
) -> Path:
    """A colour image, uint8 RGB (rows, columns, 3) or (frames, rows, columns, 3).

    photometric RGB / YBR_FULL / YBR_FULL_422 says how the samples are stored (the input is
    always RGB). JPEG Baseline takes YBR_FULL_422 or YBR_FULL (Pillow encodes); RLE and
    JPEG 2000 take RGB or YBR_FULL; planar_configuration=1 is for native syntaxes only.
    """
    rgb = np.asarray(rgb, np.uint8)
    frames = rgb if rgb.ndim == 4 else rgb[None]
    ts = UID(transfer_syntax)
    common = base_attributes(modality, seed, **{"BodyPartExamined": "ABDOMEN", **attributes})
    ds = new_dataset(_colour_sop_class(modality, rgb.ndim == 4),
                     make_uid(common["SeriesInstanceUID"], "rgb"), common)
    ds.InstanceNumber, ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, 3, photometric
    ds.Rows, ds.Columns = frames.shape[1:3]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PlanarConfiguration = planar_configuration if not ts.is_encapsulated else 0
    if rgb.ndim == 4:
        ds.NumberOfFrames, ds.FrameTime, ds.FrameIncrementPointer = len(frames), 40.0, 0x00181063
    if ts == JPEGBaseline8Bit:
        ds.PixelData = encapsulate([_jpeg_frame(f, photometric) for f in frames])
        ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_10918_1"
        ds.file_meta.TransferSyntaxUID = ts
    else:
        ds.PixelData = _native_colour(frames, photometric, ds.PlanarConfiguration)
    ds["PixelData"].VR = "OB"
    return _save_in(folder, filename, ds, ts)


def _native_colour(frames: np.ndarray, photometric: str, planar_configuration: int) -> bytes:
    stored = frames if photometric == "RGB" else convert_color_space(frames, "RGB", "YBR_FULL")
    if photometric == "YBR_FULL_422":
        stored = _pack_422(stored)
    elif planar_configuration == 1:
        stored = stored.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(stored).tobytes()


def _save_in(folder: str | Path, filename: str, ds: Dataset, transfer_syntax: str) -> Path:
    """Create `folder` and save; an already encapsulated dataset is written as it is."""
    path = Path(folder) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        ds.save_as(path, enforce_file_format=True)
    else:
        save(ds, path, transfer_syntax)
    return path


def hot_iron_palette(entries: int = 256) -> np.ndarray:
    """A (entries, 3) uint16 black-red-yellow-white palette, as nuclear medicine uses."""
    x = np.linspace(0.0, 1.0, entries)
    channels = [np.clip(3 * x - shift, 0, 1) for shift in (0, 1, 2)]
    return np.rint(np.stack(channels, axis=1) * 65535).astype(np.uint16)


def write_palette(
    folder: str | Path,
    indices: np.ndarray | None = None,
    palette: np.ndarray | None = None,
    *,
    first_mapped: int = 0,
    transfer_syntax: str = ExplicitVRLittleEndian,
    seed: int = 0,
    filename: str = "PAL00001.dcm",
    **attributes: Any,
) -> Path:
    """A PALETTE COLOR image: uint8/uint16 indices and a (n, 3) uint16 palette (16-bit LUTs).

    Defaults: a 128 x 160 radial ramp through a hot-iron palette. Descriptors are
    [n (0 for 65536), first_mapped, 16].
    """
    if indices is None:
        yy, xx = np.mgrid[0:128, 0:160]
        indices = (np.hypot(yy - 64, xx - 80) * 2.5).clip(0, 255).astype(np.uint8)
    indices = np.asarray(indices)
    palette = hot_iron_palette() if palette is None else np.asarray(palette, np.uint16)
    coding = plan_coding(indices, None)
    common = base_attributes("OT", seed, **attributes)
    ds = new_dataset(SecondaryCaptureImageStorage, make_uid(common["SeriesInstanceUID"], "pal"),
                     common)
    ds.InstanceNumber = 1
    set_grey_pixels(ds, indices, coding, "PALETTE COLOR")
    descriptor = [len(palette) % 65536, first_mapped, 16]
    for i in range(3):  # Red, Green, Blue: descriptor (0028,110x) and data (0028,120x)
        ds.add_new(0x00281101 + i, "US", descriptor)
        ds.add_new(0x00281201 + i, "OW", np.ascontiguousarray(palette[:, i], "<u2").tobytes())
    return _save_in(folder, filename, ds, transfer_syntax)


# --- broken files ---------------------------------------------------------------------------

def _small_ct_bytes(seed: int, transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    hu, _ = ct_chest_phantom((1, 32, 32), (5.0, 12.0, 12.0), seed=seed)
    plan = SeriesPlan.build(hu, Geometry(hu.shape, (5.0, 12.0, 12.0)), modality="CT",
                            rescale=(1.0, -1024.0), windows=None, photometric="MONOCHROME2",
                            seed=seed, attributes={"SeriesDescription": "BROKEN FILES"})
    buffer = io.BytesIO()
    save(plan.image(0, hu[0], instance=1), buffer, transfer_syntax)
    return buffer.getvalue()


def write_broken(folder: str | Path, *, seed: int = 0) -> dict[str, Path]:
    """Files a reader must survive, by kind.

    truncated: valid header, Pixel Data cut short; corrupt: preamble + 'DICM' then garbage;
    undecodable: JPEG 2000 syntax whose fragment is not a codestream; empty: zero bytes;
    text and png: not DICOM at all (a viewer skips them quietly).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 17])
    good = _small_ct_bytes(seed)
    j2k = bytearray(_small_ct_bytes(seed + 1, JPEG2000Lossless))
    start = j2k.rindex(b"\xff\x4f\xff\x51") + 4  # keep the SOC/SIZ markers, garble the rest
    j2k[start:-8] = rng.integers(0, 256, len(j2k) - 8 - start, dtype=np.uint8).tobytes()
    contents = {
        "truncated": ("truncated.dcm", good[: len(good) - 32 * 32]),
        "corrupt": ("corrupt.dcm", b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00"
                    + b"\xff\xff\xff\x7f" + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()),
        "undecodable": ("undecodable.dcm", bytes(j2k)),
        "empty": ("empty.dcm", b""),
        "text": ("README.txt", b"Scanner export notes: not a DICOM file.\n"),
        "png": ("screenshot.png", b"\x89PNG\r\n\x1a\n" + rng.integers(
            0, 256, 256, dtype=np.uint8).tobytes()),
    }
    paths = {}
    for kind, (name, data) in contents.items():
        (folder / name).write_bytes(data)
        paths[kind] = folder / name
    return paths


# --- chest radiograph -----------------------------------------------------------------------

_XRAY = {"air": 150, "soft_tissue": 1500, "lung": 620, "mediastinum": 1850, "heart": 1950,
         "abdomen": 1900, "bone": 420}  # bone is added on top of what lies behind it


def _xray_body(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Neck, shoulders and trunk silhouette in unit coordinates (x, y in 0..1)."""
    half = np.where(Y < 0.08, 0.09, np.minimum(0.46, 0.09 + (Y - 0.08) * 3.5))
    return np.abs(X - 0.5) < half


def chest_xray_phantom(size: int = 1024, *, enlarged_heart: bool = False, seed: int = 0
                       ) -> tuple[np.ndarray, dict[str, Any]]:
    """A PA chest radiograph (uint16, 12-bit, high = bright as displayed MONOCHROME2).

    Truth: heart_box (x0, y0, x1, y1) in pixel edges (x1, y1 exclusive), thorax_width_px
    (inner rib cage at its widest) and the cardiothoracic ratio (~0.42, or ~0.62 enlarged).
    The heart sits to the viewer's right (patient's left), as on a PA film.
    """
    X = ((np.arange(size, dtype=np.float32) + 0.5) / size)[None, :]
    Y = ((np.arange(size, dtype=np.float32) + 0.5) / size)[:, None]
    thorax = _ellipse(X, Y, 0.5, 0.50, 0.35, 0.36) & (Y > 0.16)
    heart_width = (0.62 if enlarged_heart else 0.42) * 0.70
    heart = _ellipse(X, Y, 0.535, 0.615, heart_width / 2, 0.135)
    dome = 0.74 + 0.08 * ((X - np.where(X < 0.5, 0.32, 0.68)) / 0.2) ** 2 - np.where(
        X < 0.5, 0.015, 0.0)  # the right hemidiaphragm sits a little higher
    mediastinum = (np.abs(X - 0.5) < 0.06) & (Y > 0.10)
    image = np.full((size, size), _XRAY["air"], np.float32)
    image[_xray_body(X, Y)] = _XRAY["soft_tissue"]
    image[thorax & (Y < dome)] = _XRAY["lung"]
    image[(Y >= dome) & _xray_body(X, Y) & (Y > 0.5)] = _XRAY["abdomen"]
    image[mediastinum & (Y < dome)] = _XRAY["mediastinum"]
    image[heart] = _XRAY["heart"]
    image += _XRAY["bone"] * _xray_bones(X, Y, thorax)
    image = _box_blur(_box_blur(image, max(1, size // 256)), max(1, size // 256))
    image += np.random.default_rng([seed, 19]).normal(0, 18, image.shape).astype(np.float32)
    pixels = np.clip(np.rint(image), 0, 4095).astype(np.uint16)
    return pixels, _xray_truth(heart, thorax)


def _box_blur(image: np.ndarray, radius: int) -> np.ndarray:
    """Separable moving average (edges clamped): softens the cartoon edges like a real film."""
    for axis in (0, 1):
        padded = np.pad(image, [(radius + 1, radius) if a == axis else (0, 0) for a in (0, 1)],
                        mode="edge")
        total = np.cumsum(padded, axis=axis, dtype=np.float32)
        upper = np.take(total, range(2 * radius + 1, total.shape[axis]), axis=axis)
        lower = np.take(total, range(0, total.shape[axis] - 2 * radius - 1), axis=axis)
        image = (upper - lower) / np.float32(2 * radius + 1)
    return image


def _xray_bones(X: np.ndarray, Y: np.ndarray, thorax: np.ndarray) -> np.ndarray:
    """Spine, posterior ribs and clavicles as a 0/1 float layer."""
    bone = np.zeros(thorax.shape, np.float32)
    bone[(np.abs(X - 0.5) < 0.035) & np.ones_like(Y, bool)] = 1.0
    lateral = np.abs(X - 0.5)
    for i in range(10):
        arc = 0.19 + 0.052 * i + 0.10 * (lateral / 0.35) ** 2
        bone[thorax & (np.abs(Y - arc) < 0.009) & (lateral > 0.04)] = 1.0
    for side in (-1, 1):
        line = 0.16 - 0.13 * (side * (X - 0.5) - 0.05)
        span = (side * (X - 0.5) > 0.05) & (side * (X - 0.5) < 0.30)
        bone[span & (np.abs(Y - line) < 0.011)] = 1.3
    return bone


def _xray_truth(heart: np.ndarray, thorax: np.ndarray) -> dict[str, Any]:
    rows, cols = np.nonzero(heart)
    box = [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]
    thorax_cols = np.nonzero(thorax.any(axis=0))[0]
    width = int(thorax_cols.max() - thorax_cols.min() + 1)
    return {"heart_box": box, "thorax_width_px": width,
            "ctr": round((box[2] - box[0]) / width, 4)}


def write_chest_xray(
    folder: str | Path,
    *,
    enlarged_heart: bool = False,
    size: int = 1024,
    photometric: str = "MONOCHROME2",
    transfer_syntax: str = ExplicitVRLittleEndian,
    seed: int = 0,
    filename: str = "DX00001.dcm",
    **attributes: Any,
) -> tuple[Path, dict[str, Any]]:
    """A DX For Presentation PA chest film and its truth (see chest_xray_phantom).

    MONOCHROME1 stores 4095 - value (and the mirrored window), so both look alike displayed.
    """
    pixels, truth = chest_xray_phantom(size, enlarged_heart=enlarged_heart, seed=seed)
    centre, width = 1300.0, 2600.0
    if photometric == "MONOCHROME1":
        pixels, centre = (4095 - pixels).astype(np.uint16), 4095 - centre
    spacing = round(358.4 / size, 4)
    common = base_attributes("DX", seed, **{
        "ImageType": ["ORIGINAL", "PRIMARY"], "PresentationIntentType": "FOR PRESENTATION",
        "ViewPosition": "PA", "PatientOrientation": ["L", "F"], "KVP": 120,
        "ImagerPixelSpacing": [spacing, spacing], "PixelSpacing": [spacing, spacing],
        "DistanceSourceToDetector": 1800, "DistanceSourceToPatient": 1650,
        "RescaleIntercept": 0, "RescaleSlope": 1, "RescaleType": "US",
        "PresentationLUTShape": "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY",
        "PixelIntensityRelationship": "LOG", "PixelIntensityRelationshipSign": 1,
        "DetectorType": "SCINTILLATOR", "SeriesDescription": "CHEST PA",
        "StudyDescription": "XR CHEST PA", **window_attributes([(centre, width, "DEFAULT")]),
        **attributes})
    ds = new_dataset(DigitalXRayImageStorageForPresentation,
                     make_uid(common["SeriesInstanceUID"], "dx"), common)
    ds.InstanceNumber = 1
    set_grey_pixels(ds, pixels, PixelCoding(1.0, 0.0, 16, 12, False), photometric)
    truth = {**truth, "sop_instance_uid": ds.SOPInstanceUID,
             "series_instance_uid": common["SeriesInstanceUID"],
             "study_instance_uid": common["StudyInstanceUID"], "pixel_spacing_mm": spacing}
    return _save_in(folder, filename, ds, transfer_syntax), truth


# --- MR head --------------------------------------------------------------------------------

# (centre x, y, z mm, semi-axes mm, T1-like signal), painted in order: later wins
_HEAD = (((0, 0, 0), (76, 96, 86), 900), ((0, 0, 0), (71, 91, 81), 90),
         ((0, 0, 0), (67, 87, 77), 240), ((0, 0, 2), (64, 84, 74), 560),
         ((0, 2, 10), (52, 70, 56), 780), ((-8, -4, 12), (6, 22, 12), 240),
         ((8, -4, 12), (6, 22, 12), 240))


def mr_head_phantom(geometry: Geometry, *, noise: float = 10.0, seed: int = 0) -> np.ndarray:
    """T1-like head (scalp fat bright, skull dark, CSF dark, white > grey matter), uint16.

    Evaluated at each voxel's LPS position, so any orientation of `geometry` cuts it right.
    """
    s, r, c = geometry.shape
    out = np.empty(geometry.shape, np.uint16)
    cols = np.arange(c)[None, :, None] * geometry.spacing[2] * geometry.row_direction
    rows = np.arange(r)[:, None, None] * geometry.spacing[1] * geometry.column_direction
    rng = np.random.default_rng([seed, 23])
    for k in range(s):
        p = (geometry.first_position + k * geometry.spacing[0] * geometry.normal
             + cols + rows).astype(np.float32)
        image = np.zeros((r, c), np.float32)
        for centre, axes, signal in _HEAD:
            inside = (((p - np.asarray(centre, np.float32)) / np.asarray(axes, np.float32))
                      ** 2).sum(axis=-1) <= 1.0
            image[inside] = signal
        image += rng.standard_normal((r, c), dtype=np.float32) * np.float32(noise)
        out[k] = np.clip(np.rint(image), 0, 4095)
    return out


def write_mr_series(
    folder: str | Path,
    *,
    shape: Sequence[int] = (24, 256, 256),
    spacing: Sequence[float] = (5.0, 0.9375, 0.9375),
    orientation: Sequence[float] = AXIAL,
    transfer_syntax: str = ExplicitVRLittleEndian,
    seed: int = 0,
    **attributes: Any,
) -> list[Path]:
    """A T1-like head MR series: uint16, no RescaleSlope, window in the header."""
    geometry = Geometry(tuple(shape), tuple(spacing), tuple(orientation))
    voxels = mr_head_phantom(geometry, seed=seed)
    plane = {AXIAL: "AX", SAGITTAL: "SAG", CORONAL: "COR"}.get(tuple(orientation), "OBL")
    defaults = {"BodyPartExamined": "HEAD", "StudyDescription": "MR BRAIN WO CONTRAST",
                "SeriesDescription": f"T1 SE {plane}", "ProtocolName": f"T1_SE_{plane}"}
    return write_series(folder, voxels, spacing=spacing, orientation=orientation,
                        modality="MR", rescale=None, windows=[(500.0, 1000.0, "T1")],
                        transfer_syntax=transfer_syntax, seed=seed,
                        **{**defaults, **attributes})
