"""Other file layouts: multi-frame, dynamic (4D), colour, palette and broken files."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels.processing import convert_color_space
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
)

from medviewer.core.synthetic.phantoms import ct_chest_phantom
from medviewer.core.synthetic.writer import (
    _AUTO,
    _ENHANCED_SOP_CLASS,
    AXIAL,
    Geometry,
    SeriesPlan,
    _save_in,
    base_attributes,
    make_uid,
    new_dataset,
    plan_coding,
    save,
    set_grey_pixels,
)

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

