"""Anatomical phantoms with known truth: CT chest, PA chest radiograph, MR head."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian

from medviewer.core.synthetic.writer import (
    AXIAL,
    CORONAL,
    SAGITTAL,
    Geometry,
    PixelCoding,
    _save_in,
    base_attributes,
    make_uid,
    new_dataset,
    set_grey_pixels,
    window_attributes,
    write_series,
)

# --- chest CT phantom -----------------------------------------------------------------------

CHEST_HU = {"air": -1000, "fat": -100, "soft_tissue": 40, "blood": 45, "lung": -850,
            "nodule": 50, "rib": 500, "cortical_bone": 700, "cancellous_bone": 250, "csf": 15}
CHEST_LABELS = {"background": 0, "body": 1, "lung": 2, "nodule": 3, "spine": 4}
# label, side (-1 patient right, +1 left), height u (0 lung base .. 1 apex), offset in lung
# half-axes (lateral, posterior), diameter mm
DEMO_NODULES = (("RUL 6 mm", -1, 0.72, -0.10, -0.20, 6.0),
                ("LUL 10 mm", 1, 0.58, 0.15, -0.35, 10.0),
                ("RLL 15 mm", -1, 0.30, -0.20, 0.35, 15.0),
                ("LLL 20 mm", 1, 0.22, 0.25, 0.40, 20.0))


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

    def __init__(self, shape: Sequence[int], spacing: Sequence[float],
                 nodules: Sequence[tuple] = DEMO_NODULES) -> None:
        self.shape = tuple(int(v) for v in shape)
        self.spacing = tuple(float(v) for v in spacing)
        s, r, c = self.shape
        self.x = ((np.arange(c, dtype=np.float32) - (c - 1) / 2) * self.spacing[2])[None, :]
        self.y = ((np.arange(r, dtype=np.float32) - (r - 1) / 2) * self.spacing[1])[:, None]
        fov = min(c * self.spacing[2], r * self.spacing[1])
        self.a, self.b, self.fov = 0.44 * fov, 0.30 * fov, fov
        self.nodules = [n for n in map(self._nodule, nodules) if self._fits(n)]

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
    nodules: Sequence[tuple] = DEMO_NODULES,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A chest CT in HU (int16, (slices, rows, columns), slice 0 inferior) and its truth.

    Truth lists every nodule (label, centre voxel (slice, row, column), centre LPS mm for the
    default axial geometry with `origin`, diameter, analytic volume and voxel count) plus the HU
    of each tissue. Nodules that would not lie entirely in lung at this size are left out.
    `nodules` are (label, side -1 right / +1 left, height 0 base..1 apex, lateral and posterior
    offsets in lung half-axes, diameter mm); training-data generators vary them.
    """
    chest = _Chest(shape, spacing, nodules)
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
                    spacing: Sequence[float] = (2.5, 0.7, 0.7),
                    nodules: Sequence[tuple] = DEMO_NODULES) -> np.ndarray:
    """Segmentation ground truth of `ct_chest_phantom` on the same grid (CHEST_LABELS)."""
    chest = _Chest(shape, spacing, nodules)
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


# --- chest radiograph -----------------------------------------------------------------------

_XRAY = {"air": 150, "soft_tissue": 1500, "lung": 620, "mediastinum": 1850, "heart": 1950,
         "abdomen": 1900, "bone": 420}  # bone is added on top of what lies behind it


def _xray_body(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Neck, shoulders and trunk silhouette in unit coordinates (x, y in 0..1)."""
    half = np.where(Y < 0.08, 0.09, np.minimum(0.46, 0.09 + (Y - 0.08) * 3.5))
    return np.abs(X - 0.5) < half


def chest_xray_phantom(size: int = 1024, *, enlarged_heart: bool = False, seed: int = 0,
                       ctr: float | None = None, heart_shift: tuple[float, float] = (0.0, 0.0)
                       ) -> tuple[np.ndarray, dict[str, Any]]:
    """A PA chest radiograph (uint16, 12-bit, high = bright as displayed MONOCHROME2).

    Truth: heart_box (x0, y0, x1, y1) in pixel edges (x1, y1 exclusive), thorax_width_px
    (inner rib cage at its widest) and the cardiothoracic ratio (~0.42, or ~0.62 enlarged).
    The heart sits to the viewer's right (patient's left), as on a PA film. `ctr` sets the
    heart width directly and `heart_shift` moves it (unit coordinates): for training data.
    """
    X = ((np.arange(size, dtype=np.float32) + 0.5) / size)[None, :]
    Y = ((np.arange(size, dtype=np.float32) + 0.5) / size)[:, None]
    thorax = _ellipse(X, Y, 0.5, 0.50, 0.35, 0.36) & (Y > 0.16)
    heart_width = (ctr or (0.62 if enlarged_heart else 0.42)) * 0.70
    heart = _ellipse(X, Y, 0.535 + heart_shift[0], 0.615 + heart_shift[1], heart_width / 2,
                     0.135)
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


def _code(value: str, scheme: str, meaning: str, **more: Any) -> Dataset:
    """One coded item (Code Sequence macro), plus any `more` attributes."""
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    for keyword, v in more.items():
        setattr(item, keyword, v)
    return item


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
        # what a DX chest unit writes besides (DX IOD): the chest is unpaired, the film is
        # stored as acquired, the view and region as SNOMED CT codes; positioner type and
        # acquisition context Type 2, empty
        "ImageLaterality": "U", "LossyImageCompression": "00", "PositionerType": "",
        "AcquisitionContextSequence": [], "BodyPartExamined": "CHEST",
        "AnatomicRegionSequence": [_code("51185008", "SCT", "Chest")],
        "ViewCodeSequence": [_code("399348003", "SCT", "postero-anterior",
                                   ViewModifierCodeSequence=[])],
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
