"""True axial, coronal and sagittal planes for oblique acquisitions, by trilinear resampling.

Why: `geometry.plane_view` cuts MPR planes along the series' own voxel axes (numpy views, no
copies). That is exact for an axial CT, but a 25 degree oblique MR then shows "coronal" images
that are really oblique, and radiologists expect true orthogonal planes. A `ResliceView` lays
an LPS-aligned grid over the bounding box of the volume's corners (spacing per patient axis
from the voxel axis best aligned with it) and samples each image with
`scipy.ndimage.map_coordinates(order=1)`. It has the same duck-typed API as `PlaneView`, so the
views, the crosshair and the measurements need not know which one they hold.

    plane_view_for(shape, affine, plane)  # PlaneView when aligned, ResliceView when oblique

The voxel coordinates of one image are precomputed per plane (the k-th image only adds a
constant offset), so a 512 x 512 image costs one `map_coordinates` call.
"""

from __future__ import annotations

import numpy as np

from medviewer.core import geometry
from medviewer.core.geometry import PlaneView

# Same display convention as geometry._PLANE_AXES: (slice patient axis, (row axis, sign),
# (column axis, sign)), patient axes x=0 (towards L), y=1 (towards P), z=2 (towards S).
_PLANE_AXES = geometry._PLANE_AXES  # noqa: SLF001 - one convention for both kinds of view


def is_oblique(affine: np.ndarray, tolerance: float = 1e-3) -> bool:
    """True when a voxel axis is not aligned with a patient axis (its direction cosines are
    not all 0 or +-1 within `tolerance`): such volumes need resampling for true planes."""
    dirs = np.asarray(affine, float)[:3, :3]
    norms = np.linalg.norm(dirs, axis=0)
    cos = np.abs(dirs / np.where(norms == 0, 1, norms))
    return bool(np.any(np.minimum(cos, 1 - cos) > tolerance))


def plane_view_for(shape: tuple[int, int, int], affine: np.ndarray,
                   plane: str) -> PlaneView | ResliceView:
    """The `plane` of a (slices, rows, cols) grid: numpy views along the voxel axes when they
    line up with the patient axes (fast, exact), a resampled true plane when oblique."""
    if plane not in _PLANE_AXES:
        raise ValueError(f"unknown plane {plane!r}; expected one of {geometry.PLANES}")
    if not is_oblique(affine):
        return geometry.plane_view(shape, affine, plane)
    return ResliceView(shape, affine, plane)


def _patient_box(shape: tuple[int, int, int], affine: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) LPS mm over the centres of the volume's eight corner voxels."""
    last = [max(n - 1, 0) for n in (shape[2], shape[1], shape[0])]  # col, row, slice
    corners = np.array([[c, r, s, 1.0] for c in (0, last[0]) for r in (0, last[1])
                        for s in (0, last[2])])
    lps = (np.asarray(affine, float) @ corners.T)[:3]
    return lps.min(axis=1), lps.max(axis=1)


def _patient_spacing(affine: np.ndarray) -> np.ndarray:
    """Grid step (mm) along L, P, S: that of the voxel axis best aligned with each."""
    patient_axis, _ = geometry._axis_assignment(affine)  # noqa: SLF001
    step_of = [float(np.linalg.norm(affine[:3, c])) for c in (2, 1, 0)]  # slice, row, col
    out = np.ones(3)
    for voxel_axis, p in enumerate(patient_axis):
        out[p] = step_of[voxel_axis] or 1.0
    return out


class ResliceView:
    """One true (LPS-aligned) display plane resampled out of an oblique voxel grid.

    Plane index (k, row, col) maps to LPS as origin + k * slice_step + row * row_step +
    col * col_step; `axes` are the voxel axes nearest the plane's (slice, row, column), and
    `flips` are none: the grid is built in display order.
    """

    flips = (False, False)

    def __init__(self, shape: tuple[int, int, int], affine: np.ndarray, plane: str) -> None:
        affine = np.asarray(affine, float)
        self.name, self.volume_shape = plane, tuple(int(n) for n in shape)
        self.affine, self._inverse = affine, np.linalg.inv(affine)
        self.axes = geometry.plane_view(shape, affine, plane).axes
        lo, hi = _patient_box(shape, affine)
        step = _patient_spacing(affine)
        counts = np.ceil((hi - lo) / step - 1e-6).astype(int) + 1  # the grid covers the box
        s_axis, (r_axis, r_sign), (c_axis, c_sign) = _PLANE_AXES[plane]
        self.shape = (int(counts[s_axis]), int(counts[r_axis]), int(counts[c_axis]))
        self.spacing = (float(step[r_axis]), float(step[c_axis]))
        self.slice_spacing = float(step[s_axis])
        unit = np.eye(3)
        self.row_direction = tuple(float(v) for v in unit[r_axis] * r_sign)
        self.col_direction = tuple(float(v) for v in unit[c_axis] * c_sign)
        origin = lo.copy()  # LPS of plane pixel (0, 0) on image 0
        for axis, sign in ((r_axis, r_sign), (c_axis, c_sign)):
            if sign < 0:
                origin[axis] = lo[axis] + (counts[axis] - 1) * step[axis]
        self.origin = origin
        self._steps = np.stack([unit[s_axis] * step[s_axis],  # LPS mm per k, row, col
                                unit[r_axis] * r_sign * step[r_axis],
                                unit[c_axis] * c_sign * step[c_axis]])
        self._base = self._voxel_grid()
        self._fill: tuple[tuple, float] | None = None

    @property
    def count(self) -> int:
        return self.shape[0]

    def _voxel_grid(self) -> np.ndarray:
        """(slice, row, col) voxel coordinates of every pixel of image 0, shape (3, rows, cols):
        the part of the resampling that does not depend on k, computed once."""
        _, rows, cols = self.shape
        lin = self._inverse[:3, :3]
        start = lin @ self.origin + self._inverse[:3, 3]  # (col, row, slice) of pixel (0, 0)
        per_row, per_col = lin @ self._steps[1], lin @ self._steps[2]
        r = np.arange(rows, dtype=np.float64)[:, None]
        c = np.arange(cols, dtype=np.float64)[None, :]
        grid = [start[i] + r * per_row[i] + c * per_col[i] for i in (2, 1, 0)]
        return np.stack(grid)

    def _slice_offset(self, k: float) -> np.ndarray:
        """(slice, row, col) voxel shift from image 0 to image k."""
        shift = self._inverse[:3, :3] @ (k * self._steps[0])
        return shift[::-1].reshape(3, 1, 1)

    def _fill_value(self, voxels: np.ndarray) -> float:
        """The volume's minimum (air, background) for pixels outside it; cached per array."""
        key = (voxels.__array_interface__["data"][0], voxels.shape, voxels.dtype.str)
        if self._fill is None or self._fill[0] != key:
            self._fill = (key, float(np.min(voxels)))
        return self._fill[1]

    def image(self, voxels: np.ndarray, k: int) -> np.ndarray:
        """The k-th image of this plane, resampled (trilinear) from `voxels`
        (slices, rows, cols[, 3]); integer data stays in its dtype (rounded), else float32."""
        coords = self._base + self._slice_offset(k)
        fill = self._fill_value(voxels)
        if voxels.ndim == 4:
            channels = [self._sample(voxels[..., ch], coords, fill)
                        for ch in range(voxels.shape[-1])]
            return np.stack(channels, axis=-1)
        return self._sample(voxels, coords, fill)

    @staticmethod
    def _sample(voxels: np.ndarray, coords: np.ndarray, fill: float) -> np.ndarray:
        from scipy import ndimage  # on first use: scipy costs 0.2 s of the viewer's start

        integer = np.issubdtype(voxels.dtype, np.integer)
        out = ndimage.map_coordinates(voxels, coords, output=np.float32, order=1,
                                      mode="constant", cval=fill, prefilter=False)
        if not integer:
            return out
        info = np.iinfo(voxels.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(voxels.dtype)

    def to_lps(self, k: float, row: float, col: float) -> np.ndarray:
        """Patient LPS mm of plane pixel (row, col) on image k."""
        return self.origin + np.array([k, row, col], float) @ self._steps

    def from_lps(self, point: np.ndarray) -> np.ndarray:
        """Fractional (k, row, col) of an LPS point on this plane's grid."""
        return np.linalg.solve(self._steps.T, np.asarray(point, float) - self.origin)

    def to_voxel(self, k: int, row: int, col: int) -> tuple[int, int, int]:
        """Nearest voxel (column, row, slice) to plane pixel (row, col) of image k, clamped."""
        vox = geometry.lps_to_voxel(self.affine, self.to_lps(k, row, col))
        limits = (self.volume_shape[2], self.volume_shape[1], self.volume_shape[0])
        return tuple(int(np.clip(np.rint(v), 0, n - 1)) for v, n in zip(vox, limits, strict=True))

    def from_voxel(self, col: int, row: int, slice_: int) -> tuple[int, int, int]:
        """(k, row, col) of the plane pixel nearest to voxel (column, row, slice), clamped."""
        index = self.from_lps(geometry.voxel_to_lps(self.affine, col, row, slice_))
        return tuple(int(np.clip(np.rint(v), 0, n - 1))
                     for v, n in zip(index, self.shape, strict=True))

    def edge_labels(self) -> dict[str, str]:
        """Single letters: the grid is a true plane."""
        return geometry.edge_labels(self.col_direction, self.row_direction)
