"""Siemens mosaic: one MR image holding a grid of slices (EPI fMRI, DWI, their derived maps).

Siemens scanners (syngo VA-VE) store a 2D multi-slice acquisition as one image whose pixels are
a square grid of `per_side x per_side` tiles, slice k in tile k (row-major); ImageType holds
MOSAIC and the private CSA image header (0029,xx10, "SIEMENS CSA HEADER", format SV10) names
NumberOfImagesInMosaic and the SliceNormalVector. The mosaic's ImagePositionPatient is that of
the whole grid centred on slice 0, so the first tile lies (grid - tile) / 2 pixels further
along the rows and columns; tile k lies k slice steps further along the slice normal. That is
the geometry dcm2niix and nibabel give (nibabel's doc/theory/dicom_mosaic).

    csa_fields(data) -> {name: [values as text]}      # an SV10 CSA header
    images_in_mosaic(image_type, csa) -> int          # 0 when not a (valid) mosaic
    csa_header(ds) -> bytes | None                    # the CSA image header of a dataset
    tiles(instance, count, normal, step) -> [(tile, position)]
    tile_of(image, tile) -> the tile's pixels (a view)
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset

from medviewer.core.dicom.model import Instance

CSA_CREATOR = "SIEMENS CSA HEADER"
Tile = tuple[int, int, int, int]  # (top, left, rows, columns) in the mosaic's pixels
_TAG = struct.Struct("<64si4s3i")  # name, VM, VR, syngo data type, item count, check (77/205)
_ITEM = struct.Struct("<4i")  # item length (twice in SV10), then two checks
_MAX_COUNT = 1000  # a CSA header holds ~100 tags of a few items: more is garbage


def csa_fields(data: bytes, wanted: Sequence[str] | None = None) -> dict[str, list[str]]:
    """The tags of an SV10 CSA header as text values ({} for anything else); with `wanted`,
    only those names, and the walk stops once all are found."""
    if not data.startswith(b"SV10") or len(data) < 16:
        return {}
    count = struct.unpack_from("<I", data, 8)[0]
    pos, out = 16, {}
    try:
        for _ in range(min(count, _MAX_COUNT)):
            name, _vm, _vr, _kind, items, _check = _TAG.unpack_from(data, pos)
            pos += _TAG.size
            values = []
            for _k in range(min(items, _MAX_COUNT)):
                length = _ITEM.unpack_from(data, pos)[1]
                if length < 0 or pos + _ITEM.size + length > len(data):
                    return out
                text = data[pos + _ITEM.size:pos + _ITEM.size + length]
                values.append(text.split(b"\0", 1)[0].decode("latin-1").strip())
                pos += _ITEM.size + (length + 3) // 4 * 4
            key = name.split(b"\0", 1)[0].decode("latin-1")
            if wanted is None or key in wanted:
                out[key] = [v for v in values if v]
                if wanted is not None and len(out) == len(wanted):
                    break
    except struct.error:  # cut short: what was read so far
        pass
    return out


def images_in_mosaic(image_type: str, csa: bytes | None) -> int:
    """NumberOfImagesInMosaic of a MOSAIC image's CSA header; 0 when not a mosaic."""
    if "MOSAIC" not in image_type.upper() or not csa:
        return 0
    values = csa_fields(csa, ["NumberOfImagesInMosaic"]).get("NumberOfImagesInMosaic")
    try:
        count = int(float(values[0])) if values else 0
    except ValueError:
        return 0
    return count if count > 1 else 0


def per_side(count: int) -> int:
    """Tiles along each side of the grid: the smallest square that holds them."""
    return math.ceil(math.sqrt(count))


def fits(rows: int, columns: int, count: int) -> bool:
    """Whether an image divides into a per_side x per_side grid of whole tiles."""
    side = per_side(count) if count > 1 else 0
    return side > 0 and rows % side == 0 and columns % side == 0


def csa_header(ds: Dataset) -> bytes | None:
    """The CSA image header (0029,xx10) of the block the private creator names."""
    try:
        value = ds.private_block(0x0029, CSA_CREATOR)[0x10].value
    except (KeyError, ValueError):
        return None
    return value if isinstance(value, bytes) else None


def slice_normal(csa: bytes | None) -> np.ndarray | None:
    """The CSA SliceNormalVector (unit length), None when absent or degenerate."""
    values = csa_fields(csa or b"", ["SliceNormalVector"]).get("SliceNormalVector", [])
    try:
        normal = np.array([float(v) for v in values], float)
    except ValueError:
        return None
    length = float(np.linalg.norm(normal)) if normal.shape == (3,) else 0.0
    return normal / length if length > 1e-6 else None


def tiles(instance: Instance, count: int, normal: np.ndarray, step: float,
          orientation: np.ndarray, spacing: tuple[float, float]
          ) -> list[tuple[Tile, np.ndarray | None]]:
    """(tile, ImagePositionPatient of its first pixel) for slices 0..count-1; positions are
    None when the mosaic has none."""
    side = per_side(count)
    rows, columns = instance.rows // side, instance.columns // side
    first = None
    if instance.position is not None:
        row_spacing, column_spacing = spacing
        first = (np.array(instance.position, float)
                 + orientation[:3] * column_spacing * (instance.columns - columns) / 2
                 + orientation[3:] * row_spacing * (instance.rows - rows) / 2)
    out = []
    for k in range(count):
        top, left = divmod(k, side)
        position = None if first is None else first + k * step * normal
        out.append(((top * rows, left * columns, rows, columns), position))
    return out


def tile_of(image: np.ndarray, tile: Tile | None) -> np.ndarray:
    """The pixels of one tile of a mosaic image (the image itself when `tile` is None)."""
    if tile is None:
        return image
    top, left, rows, columns = tile
    return image[top:top + rows, left:left + columns]
