"""Patient geometry for the views: LPS positions, orientation letters, MPR planes, measurements.

Pure numpy. The volume's affine maps (column, row, slice, 1) to patient LPS millimetres; the
functions here turn that into what a radiologist reads on screen.

MPR planes follow the radiological display convention: axial images have the patient's right
on the screen's left and anterior at the top; coronal images right-left and superior at the
top; sagittal images anterior on the left and superior at the top. Volumes are resliced along
their own voxel axes (no interpolation): each plane takes the voxel axis closest to the wanted
patient direction, so an oblique acquisition is shown along its own axes and the edge letters
say so (e.g. "LA").
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np

PLANES = ("axial", "coronal", "sagittal")

# For each plane: (slice patient axis, (row patient axis, sign), (column patient axis, sign)),
# patient axes x=0 (towards L), y=1 (towards P), z=2 (towards S).
_PLANE_AXES = {
    "axial": (2, (1, +1), (0, +1)),
    "coronal": (1, (2, -1), (0, +1)),
    "sagittal": (0, (2, -1), (1, +1)),
}
_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))  # (negative, positive) end of x, y, z
_OBLIQUE_MIN = 0.25  # a direction component under this cosine is left out of the label


def voxel_to_lps(affine: np.ndarray, col: float, row: float, slice_: float) -> np.ndarray:
    """Patient LPS position (mm) of a voxel index (fractional indices allowed)."""
    return (np.asarray(affine, float) @ np.array([col, row, slice_, 1.0]))[:3]


def lps_to_voxel(affine: np.ndarray, point: np.ndarray) -> np.ndarray:
    """(column, row, slice) index of an LPS point, fractional."""
    return (np.linalg.inv(np.asarray(affine, float)) @ np.append(np.asarray(point, float), 1.0))[:3]


def direction_label(vector: np.ndarray) -> str:
    """Letters of the patient direction a vector points to, strongest first ('L', 'PS', ...)."""
    v = np.asarray(vector, float)
    n = np.linalg.norm(v)
    if n == 0:
        return ""
    v = v / n
    order = np.argsort(-np.abs(v))
    return "".join(_LETTERS[a][int(v[a] > 0)] for a in order if abs(v[a]) >= _OBLIQUE_MIN)


@dataclass(frozen=True)
class PlaneView:
    """How one display plane is cut out of the voxel array.

    `axes` are the voxel-array axes (0 slice, 1 row, 2 column) that become the plane's
    (slice, row, column); `flips` says which of the plane's row / column runs backwards.
    """

    name: str
    axes: tuple[int, int, int]
    flips: tuple[bool, bool]
    shape: tuple[int, int, int]  # (count, rows, columns) of the plane stack
    spacing: tuple[float, float]  # (row mm, column mm) of the plane images
    col_direction: tuple[float, float, float]  # LPS unit vector of increasing column
    row_direction: tuple[float, float, float]  # LPS unit vector of increasing row
    slice_spacing: float = 1.0  # mm between neighbouring images of the plane

    @property
    def count(self) -> int:
        return self.shape[0]

    def image(self, voxels: np.ndarray, k: int) -> np.ndarray:
        """The k-th image of this plane: a view of `voxels` (slices, rows, cols[, 3])."""
        img = np.moveaxis(voxels, self.axes, (0, 1, 2))[k]
        if self.flips[0]:
            img = img[::-1]
        if self.flips[1]:
            img = img[:, ::-1]
        return img

    def to_voxel(self, k: int, row: int, col: int) -> tuple[int, int, int]:
        """Voxel index (column, row, slice) of the plane pixel (row, col) on image k."""
        _, nr, nc = self.shape
        row = nr - 1 - row if self.flips[0] else row
        col = nc - 1 - col if self.flips[1] else col
        plane_idx = (k, row, col)
        vox = [0, 0, 0]  # slice, row, column
        for plane_axis, array_axis in enumerate(self.axes):
            vox[array_axis] = plane_idx[plane_axis]
        return vox[2], vox[1], vox[0]

    def from_voxel(self, col: int, row: int, slice_: int) -> tuple[int, int, int]:
        """(k, row, col) of the plane that shows voxel (column, row, slice)."""
        vox = (slice_, row, col)
        k, r, c = (vox[a] for a in self.axes)
        _, nr, nc = self.shape
        return k, nr - 1 - r if self.flips[0] else r, nc - 1 - c if self.flips[1] else c

    def edge_labels(self) -> dict[str, str]:
        return edge_labels(self.col_direction, self.row_direction)


def edge_labels(col_direction: tuple[float, ...], row_direction: tuple[float, ...]
                ) -> dict[str, str]:
    """Orientation letters for the four edges of an image with these LPS directions."""
    col, row = np.array(col_direction), np.array(row_direction)
    return {
        "left": direction_label(-col),
        "right": direction_label(col),
        "top": direction_label(-row),
        "bottom": direction_label(row),
    }


def _axis_assignment(affine: np.ndarray) -> tuple[tuple[int, ...], np.ndarray]:
    """Patient axis for each voxel axis (slice, row, col), the one-to-one match of best cosines."""
    dirs = np.stack([affine[:3, 2], affine[:3, 1], affine[:3, 0]])  # slice, row, col
    norms = np.linalg.norm(dirs, axis=1, keepdims=True)
    cos = dirs / np.where(norms == 0, 1, norms)
    best = max(permutations(range(3)), key=lambda p: sum(abs(cos[i, p[i]]) for i in range(3)))
    return best, cos


def plane_view(shape: tuple[int, int, int], affine: np.ndarray, plane: str) -> PlaneView:
    """The `plane` ('axial', 'coronal', 'sagittal') of a (slices, rows, cols) voxel grid."""
    if plane not in _PLANE_AXES:
        raise ValueError(f"unknown plane {plane!r}; expected one of {PLANES}")
    patient_axis, cos = _axis_assignment(np.asarray(affine, float))
    array_axis_of = {p: a for a, p in enumerate(patient_axis)}  # patient axis -> array axis
    spacing_of = [float(np.linalg.norm(affine[:3, c])) for c in (2, 1, 0)]
    s_axis, (r_pat, r_sign), (c_pat, c_sign) = _PLANE_AXES[plane]
    axes = (array_axis_of[s_axis], array_axis_of[r_pat], array_axis_of[c_pat])
    flips = tuple(bool(np.sign(cos[axes[i], pat]) != sign)
                  for i, (pat, sign) in ((1, (r_pat, r_sign)), (2, (c_pat, c_sign))))
    row_dir = cos[axes[1]] * (-1 if flips[0] else 1)
    col_dir = cos[axes[2]] * (-1 if flips[1] else 1)
    return PlaneView(
        name=plane,
        axes=axes,
        flips=flips,
        shape=(shape[axes[0]], shape[axes[1]], shape[axes[2]]),
        spacing=(spacing_of[axes[1]], spacing_of[axes[2]]),
        col_direction=tuple(float(v) for v in col_dir),
        row_direction=tuple(float(v) for v in row_dir),
        slice_spacing=spacing_of[axes[0]],
    )


def acquisition_plane(affine: np.ndarray) -> str:
    """The plane the series was acquired in: the one whose slice axis is the voxel slice axis."""
    patient_axis, _ = _axis_assignment(np.asarray(affine, float))
    return {2: "axial", 1: "coronal", 0: "sagittal"}[patient_axis[0]]


def distance_mm(p0: tuple[float, float], p1: tuple[float, float],
                spacing: tuple[float, float]) -> float:
    """Distance between two (x=col, y=row) image points, with (row mm, column mm) spacing."""
    dx = (p1[0] - p0[0]) * spacing[1]
    dy = (p1[1] - p0[1]) * spacing[0]
    return float(np.hypot(dx, dy))


def shape_mask(shape: tuple[int, int], x0: float, y0: float, x1: float, y1: float,
               ellipse: bool = False) -> np.ndarray:
    """Boolean mask of the pixels whose centres lie in a rectangle or its inscribed ellipse."""
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    xa, xb = sorted((x0, x1))
    ya, yb = sorted((y0, y1))
    cx, cy = cols + 0.5, rows + 0.5  # pixel centres in (x, y) image coordinates
    if not ellipse:
        return (cx >= xa) & (cx < xb) & (cy >= ya) & (cy < yb)
    rx, ry = (xb - xa) / 2, (yb - ya) / 2
    if rx <= 0 or ry <= 0:
        return np.zeros(shape, bool)
    return ((cx - (xa + rx)) / rx) ** 2 + ((cy - (ya + ry)) / ry) ** 2 <= 1.0


def roi_stats(image: np.ndarray, mask: np.ndarray, spacing: tuple[float, float]) -> dict:
    """Mean, SD (sample), min, max in modality units and area in mm^2 of the masked pixels.

    The area is that of the drawn shape's pixels, so it matches the statistics exactly.
    """
    values = np.asarray(image)[mask].astype(np.float64, copy=False)
    n = int(values.size)
    area = n * spacing[0] * spacing[1]
    if n == 0:
        nan = float("nan")
        return {"n": 0, "mean": nan, "sd": nan, "min": nan, "max": nan, "area_mm2": 0.0}
    return {
        "n": n,
        "mean": float(values.mean()),
        "sd": float(values.std(ddof=1)) if n > 1 else 0.0,
        "min": float(values.min()),
        "max": float(values.max()),
        "area_mm2": float(area),
    }
