"""Lesions of a segmentation: one row per 3D connected component of each lesion-like label.

    lesions = find_lesions(label_map, volume, labels)   # [Lesion], largest first per label
    lesions = keep_tracking(lesions, previous)          # same lesion -> same tracking UID

What a radiologist reports for each lesion (RECIST-style): its volume (voxel count x the
voxel's volume from the affine, so anisotropic and sheared grids count right), the longest
axial diameter (the largest Feret diameter of the lesion's outline on the axial slice where it
is longest, in mm with the pixel spacing) and the longest diameter perpendicular to it on that
slice, its centre (centroid: slice and LPS mm), and the mean of the source voxels (HU on CT).

The outline is taken through the midpoints of the pixels' outer edges, so a disc of diameter D
measures D (pixel centres would give about one pixel less). Components are 26-connected: a
slice-by-slice segmentation of a round nodule is one lesion, not one per slice.

Which labels are lesions: the model's manifest may list them (`options.lesion_labels`);
without that list (older manifests), a label is a lesion when its name says so (nodule,
lesion, tumour, mass, metastasis, ...). Body, lung, spine and other anatomy get no table.

numpy + scipy only (no Qt, no torch).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from medviewer.core.geometry import voxel_to_lps

LESION_WORDS = ("nodule", "lesion", "tumour", "tumor", "mass", "metasta", "cyst", "polyp",
                "cancer", "carcinoma", "neoplasm", "aneurysm", "haemorrhage", "hemorrhage",
                "infarct", "abscess")
_FULL = np.ones((3, 3, 3), bool)  # 26-connectivity


@dataclass(frozen=True)
class Lesion:
    """One connected component of a lesion label; lengths in mm, volume in mL.

    slice_index: the axial slice of the longest diameter (where a reader measures it);
    key_point: (row, column) of the lesion's centroid on that slice (where a view centres);
    long_axis / short_axis: end points ((row, col), (row, col)) on that slice, fractional."""

    label: str
    value: int
    number: int  # 1, 2, ... per label, largest first
    voxels: int
    volume_ml: float
    long_axis_mm: float
    short_axis_mm: float
    slice_index: int
    key_point: tuple[float, float]
    centre_voxel: tuple[float, float, float]  # (slice, row, column), fractional centroid
    centre_lps: tuple[float, float, float]
    mean_value: float | None  # HU on CT; None when the voxels do not match the label map
    long_axis: tuple[tuple[float, float], tuple[float, float]]
    short_axis: tuple[tuple[float, float], tuple[float, float]]
    site: str = ""  # the label around it (e.g. "lung"): its finding site
    tracking_uid: str = ""
    tracking_id: str = ""

    @property
    def name(self) -> str:
        return f"{self.label} {self.number}"

    def as_row(self) -> dict[str, Any]:
        """The lesion as flat CSV / JSON columns (slice: 0-based index in the volume)."""
        return {"lesion": self.name, "label": self.label, "voxels": self.voxels,
                "volume_ml": round(self.volume_ml, 4),
                "long_axis_mm": round(self.long_axis_mm, 2),
                "short_axis_mm": round(self.short_axis_mm, 2), "slice": self.slice_index,
                "centre_slice": round(self.centre_voxel[0], 2),
                "centre_x_mm": round(self.centre_lps[0], 2),
                "centre_y_mm": round(self.centre_lps[1], 2),
                "centre_z_mm": round(self.centre_lps[2], 2),
                "mean_value": None if self.mean_value is None else round(self.mean_value, 1),
                "site": self.site, "tracking_uid": self.tracking_uid}


def is_lesion_label(name: str) -> bool:
    text = name.strip().lower()
    return any(word in text for word in LESION_WORDS)


def lesion_labels(labels: Sequence[str], declared: Iterable[str] | None = None) -> list[int]:
    """Label values that get a lesion table: those `declared` (a manifest's list), else those
    whose name says lesion. Value 0 (background) never does."""
    if declared is not None:
        names = [declared] if isinstance(declared, str) else declared
        wanted = {str(n).strip().lower() for n in names}
        return [v for v, n in enumerate(labels) if v and n.strip().lower() in wanted]
    return [v for v, n in enumerate(labels) if v and is_lesion_label(n)]


def find_lesions(label_map: np.ndarray, volume: Any, labels: Sequence[str],
                 declared: Iterable[str] | None = None) -> list[Lesion]:
    """Every lesion of the lesion-like labels of `label_map` (slices, rows, cols), which lies
    on `volume`'s grid (its affine; its voxels give the mean value when shapes match)."""
    from scipy import ndimage
    affine = np.asarray(volume.affine, float)
    voxels = getattr(volume, "voxels", None)
    values = voxels if voxels is not None and voxels.shape == label_map.shape else None
    out: list[Lesion] = []
    for value in lesion_labels(labels, declared):
        components, count = ndimage.label(label_map == value, structure=_FULL)
        if not count:
            continue
        found = [replace(_measure(components, i + 1, box, affine, values, labels[value], value),
                         site=_site(label_map, components, i + 1, box, labels, value))
                 for i, box in enumerate(ndimage.find_objects(components))]
        found.sort(key=lambda lesion: -lesion.voxels)
        out += [replace(lesion, number=n + 1) for n, lesion in enumerate(found)]
    return out


def _measure(components: np.ndarray, index: int, box: tuple[slice, ...], affine: np.ndarray,
             values: np.ndarray | None, label: str, value: int) -> Lesion:
    from scipy import ndimage
    mask = components[box] == index
    z0, r0, c0 = (s.start for s in box)
    count = int(mask.sum())
    centre = np.add(ndimage.center_of_mass(mask), (z0, r0, c0))
    best = max(((k, *axial_diameters(mask[k], affine, (r0, c0))) for k in range(len(mask))
                if mask[k].any()), key=lambda m: m[1])
    k, long_mm, short_mm, long_axis, short_axis = best
    rows, cols = np.nonzero(mask[k])
    mean = float(values[box][mask].mean(dtype=np.float64)) if values is not None else None
    return Lesion(
        label=label, value=value, number=0, voxels=count,
        volume_ml=count * abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0,
        long_axis_mm=long_mm, short_axis_mm=short_mm, slice_index=int(z0 + k),
        key_point=(float(rows.mean() + r0), float(cols.mean() + c0)),
        centre_voxel=tuple(float(v) for v in centre),
        centre_lps=tuple(float(v) for v in voxel_to_lps(affine, centre[2], centre[1],
                                                        centre[0])),
        mean_value=mean, long_axis=long_axis, short_axis=short_axis)


def _site(label_map: np.ndarray, components: np.ndarray, index: int, box: tuple[slice, ...],
          labels: Sequence[str], value: int) -> str:
    """The most common other label touching the lesion ('' when only background does)."""
    from scipy import ndimage
    around = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
    inside = components[around] == index
    shell = ndimage.binary_dilation(inside, structure=_FULL) & ~inside
    counts = np.bincount(label_map[around][shell], minlength=len(labels))[:len(labels)]
    counts[[0, value]] = 0
    return labels[int(counts.argmax())] if counts.any() else ""


def _outline_points(mask: np.ndarray) -> np.ndarray:
    """(n, 2) (row, col) edge midpoints of a 2D mask's border pixels (the inner ones cannot
    be an end of a diameter)."""
    from scipy import ndimage
    border = mask & ~ndimage.binary_erosion(mask, border_value=0)
    rows, cols = np.nonzero(border)
    steps = np.array([[-0.5, 0], [0.5, 0], [0, -0.5], [0, 0.5]])
    return (np.stack([rows, cols], 1)[:, None, :] + steps).reshape(-1, 2)


def axial_diameters(mask: np.ndarray, affine: np.ndarray, offset: tuple[int, int] = (0, 0)
                    ) -> tuple[float, float, tuple, tuple]:
    """(longest diameter mm, longest perpendicular diameter mm, long axis end points, short
    axis end points) of a 2D mask on a slice of a volume with `affine`; end points are
    (row, col) pixel coordinates (plus `offset`)."""
    points = _outline_points(mask)
    # in-plane mm: the column and row directions of the affine (anisotropic, even sheared)
    to_mm = affine[:3, :2]  # columns: mm per column step, mm per row step
    mm = points[:, ::-1] @ to_mm.T  # (n, 3): (col, row) -> LPS offsets
    u = to_mm[:, 0] / np.linalg.norm(to_mm[:, 0])
    v = to_mm[:, 1] - (to_mm[:, 1] @ u) * u
    v /= np.linalg.norm(v)
    flat = np.stack([mm @ u, mm @ v], 1)
    hull = _hull(flat)
    gaps = np.linalg.norm(flat[hull][:, None] - flat[hull][None], axis=-1)
    i, j = np.unravel_index(int(np.argmax(gaps)), gaps.shape)
    a, b = hull[i], hull[j]
    long_mm = float(gaps[i, j])
    short_mm, (c, d) = _perpendicular(flat, flat[b] - flat[a], max(np.linalg.norm(
        to_mm, axis=0)))
    shift = np.asarray(offset, float)

    def ends(p: int, q: int) -> tuple:
        return tuple(tuple(float(x) for x in points[n] + shift) for n in (p, q))

    return long_mm, short_mm, ends(a, b), ends(c, d)


def _hull(flat: np.ndarray) -> np.ndarray:
    """Indices of the convex hull's vertices (all points when they are too few or in line)."""
    from scipy.spatial import ConvexHull, QhullError
    if len(flat) > 8:
        try:
            return ConvexHull(flat).vertices
        except QhullError:
            pass
    return np.arange(len(flat))


def _perpendicular(flat: np.ndarray, direction: np.ndarray, step: float
                   ) -> tuple[float, tuple[int, int]]:
    """Longest chord perpendicular to `direction`: the points are cut into strips one pixel
    (`step` mm) wide across the long axis; the widest strip's extent along the normal."""
    along = direction / (np.linalg.norm(direction) or 1.0)
    normal = np.array([-along[1], along[0]])
    s, t = flat @ along, flat @ normal
    strip = np.floor((s - s.min()) / step).astype(np.intp)
    order = np.argsort(strip, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(strip[order]) > 0])
    widths = np.maximum.reduceat(t[order], starts) - np.minimum.reduceat(t[order], starts)
    k = int(np.argmax(widths))
    members = order[starts[k]:starts[k + 1] if k + 1 < len(starts) else None]
    ends = (int(members[np.argmin(t[members])]), int(members[np.argmax(t[members])]))
    return float(widths[k]), ends


# --- tracking across saves -------------------------------------------------------------------

def keep_tracking(lesions: Sequence[Lesion], previous: Sequence[Lesion],
                  new_uid: Any = None) -> list[Lesion]:
    """`lesions` with tracking identifiers: a lesion whose centre lies within a previous
    lesion of the same label (half its long axis, at least 5 mm) keeps that lesion's tracking
    UID and identifier (nearest first, each used once); the others keep theirs, or get new
    ones."""
    if new_uid is None:
        from pydicom.uid import generate_uid as new_uid
    free = [p for p in previous if p.tracking_uid]
    out = []
    for lesion in lesions:
        near = [(np.linalg.norm(np.subtract(lesion.centre_lps, p.centre_lps)), n)
                for n, p in enumerate(free) if p.label == lesion.label]
        near = [(d, n) for d, n in near if d <= max(free[n].long_axis_mm / 2, 5.0)]
        if near:
            match = free.pop(min(near)[1])
            out.append(replace(lesion, tracking_uid=match.tracking_uid,
                               tracking_id=match.tracking_id or lesion.name))
        else:  # a new lesion (keeping identifiers it was given, e.g. in the results table)
            out.append(replace(lesion, tracking_uid=lesion.tracking_uid or str(new_uid()),
                               tracking_id=lesion.tracking_id or lesion.name))
    return out
