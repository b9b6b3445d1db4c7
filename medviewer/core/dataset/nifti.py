"""Loaded series and label maps as NIfTI-1 (.nii.gz), on the grid the viewer shows.

    ras_affine(volume.affine)                  # (i, j, k) = (column, row, slice) -> RAS mm
    write_nifti(path, volume.voxels, volume.affine)
    contiguous_labels(label_map, names, wanted) -> label map with the dataset's values
    box_record(box, volume)                    # one box in pixels and in patient mm

The viewer's affine maps (column, row, slice, 1) to LPS millimetres (DESIGN.md); NIfTI's
(i, j, k) are the same three axes, so the data is the voxel array transposed to
(column, row, slice) and the affine is the LPS one with x and y negated (LPS -> RAS). Both the
qform and the sform carry it with code 1 (scanner), which nnU-Net, MONAI and ITK read.

Files are written atomically, gzip'd with no time stamp in the header: the same data gives the
same bytes, so a second export of the same series is byte-identical.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medviewer.core.atomic import atomic_file

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
SCANNER = 1  # NIfTI xform code: scanner-based anatomical coordinates


class NiftiError(Exception):
    """A series or label map that cannot be written as NIfTI, with a sentence saying why."""


def ras_affine(lps_affine: np.ndarray) -> np.ndarray:
    """The NIfTI (RAS) affine of a viewer (LPS) affine: x and y change sign."""
    return LPS_TO_RAS @ np.asarray(lps_affine, dtype=np.float64)


def nifti_bytes(voxels: np.ndarray, lps_affine: np.ndarray) -> bytes:
    """A (slices, rows, columns) array as an uncompressed NIfTI-1 file's bytes."""
    import nibabel as nib

    voxels = np.asarray(voxels)
    if voxels.ndim != 3:
        raise NiftiError(f"Only a grey-level volume (slices, rows, columns) can be written as "
                         f"NIfTI; this one has shape {voxels.shape}.")
    data = np.ascontiguousarray(voxels.transpose(2, 1, 0))  # (column, row, slice) = (i, j, k)
    affine = ras_affine(lps_affine)
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=SCANNER)
    image.set_sform(affine, code=SCANNER)
    image.header.set_xyzt_units("mm")
    return image.to_bytes()


def write_nifti(path: str | Path, voxels: np.ndarray, lps_affine: np.ndarray) -> Path:
    """`voxels` on the grid of `lps_affine` as a .nii.gz file, written atomically."""
    packed = gzip.compress(nifti_bytes(voxels, lps_affine), compresslevel=1, mtime=0)
    with atomic_file(path, "wb") as f:
        f.write(packed)
    return Path(path)


def label_dtype(count: int) -> np.dtype:
    """uint8 for up to 255 labels, uint16 beyond."""
    return np.dtype(np.uint8 if count < 256 else np.uint16)


def contiguous_labels(label_map: np.ndarray, names: Sequence[str],
                      wanted: Mapping[str, int]) -> np.ndarray:
    """A SEG's label map (value v is `names[v]`, 0 background) with each value replaced by
    the dataset's value of its name (`wanted`: name -> 1..K); a name not in `wanted` is 0."""
    table = np.zeros(max(len(names), int(label_map.max(initial=0)) + 1), dtype=np.int64)
    for value, name in enumerate(names):
        if value:
            table[value] = wanted.get(name, 0)
    out = table[np.asarray(label_map, dtype=np.int64)]
    return out.astype(label_dtype(max(wanted.values(), default=0) + 1))


def patient_mm(volume: Any, column: float, row: float, slice_: float) -> list[float]:
    """LPS mm of a (fractional) voxel index, rounded to a micrometre."""
    point = np.asarray(volume.affine, float) @ np.array([column, row, slice_, 1.0])
    return [round(float(v), 3) for v in point[:3]]


def box_record(box: Any, volume: Any) -> dict[str, Any]:
    """One box: pixel edges as the SR has them ((0, 0) is the top-left corner of the first
    pixel, so a pixel's centre is at +0.5) and its corners in patient LPS and RAS mm."""
    k = int(box.slice_index)
    corners = [patient_mm(volume, x - 0.5, y - 0.5, k)
               for x, y in ((box.x0, box.y0), (box.x1, box.y1))]
    return {"label": box.label, "slice": k,
            "pixel_xyxy": [float(box.x0), float(box.y0), float(box.x1), float(box.y1)],
            "lps_mm": corners, "ras_mm": [[0.0 - x, 0.0 - y, z] for x, y, z in corners],
            "score": box.score, "state": box.state, "source": box.source}
