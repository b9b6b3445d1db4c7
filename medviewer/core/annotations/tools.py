"""Label map editing tools (no Qt): each call is one undo item and returns the box it touched.

    box = brush(labelmap, history, (k, r, c), radius_mm=5, value=1)      # 2D disc on slice k
    box = brush(labelmap, history, (k, r, c), 10, 1, sphere=True)        # 3D sphere
    box = brush(..., image=volume.voxels, value_range=(-100, 200))       # only HU -100..200
    with history.stroke("brush"):                                        # a drag: one item
        for centre in stroke_centres(points, radius_mm, labelmap.spacing): brush(...)

Positions are voxel indices (slice, row, column), floats allowed; sizes are in mm and turned
into voxels with the map's spacing, so a 5 mm disc on 0.7 x 0.7 mm pixels is 7 pixels wide each
side and a sphere on 2.5 mm slices spans 2 slices each side. The returned box (a tuple of three
slices, None when nothing could change) is what the overlay must redraw. A tool writes only
inside its box, after `history.touch(box)`, which is all the undo needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from medviewer.core.annotations.history import Box, History, clip_box, mask_box, union_box
from medviewer.core.annotations.labelmap import LabelMap
from medviewer.core.annotations.seg import AnnotationError

Point = Sequence[float]


# -- shared checks and shapes ----------------------------------------------------------------
def _checked(labelmap: LabelMap, history: History, value: int | None = None) -> None:
    if history.labelmap is not labelmap:
        raise ValueError("this History records another label map")
    if value is not None and value != 0 and value not in labelmap.table:
        raise AnnotationError(None, f"Label value {value} is not in the label table; add the "
                              "label before painting with it.")


def _in_range(mask: np.ndarray, image: np.ndarray | None, value_range: tuple[float, float]
              | None, box: Box, shape: tuple[int, ...]) -> np.ndarray:
    """`mask` limited to the voxels whose image value lies in value_range (inclusive)."""
    if value_range is None:
        return mask
    if image is None or image.shape[:3] != tuple(shape):
        raise ValueError("a value range needs the image voxels on the label map's grid")
    block = image[box]
    return mask & (block >= value_range[0]) & (block <= value_range[1])


def ball_mask(centre: Point, radius_mm: float, spacing: Sequence[float], shape: tuple[int, ...],
              sphere: bool = False) -> tuple[Box | None, np.ndarray | None]:
    """Box and boolean mask of the voxels within radius_mm of centre (mm distance per axis).

    sphere=False: a disc on slice round(centre[0]) only.
    """
    k = int(round(centre[0]))
    lo, hi = [], []
    for axis in range(3):
        if axis == 0 and not sphere:
            lo.append(k)
            hi.append(k + 1)
            continue
        reach = radius_mm / spacing[axis]
        lo.append(math.ceil(centre[axis] - reach))
        hi.append(math.floor(centre[axis] + reach) + 1)
    box = clip_box(tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)), shape)
    if box is None:
        return None, None
    grid = np.ogrid[box[0], box[1], box[2]]
    dist2 = sum(((g - (centre[a] if sphere or a else k)) * spacing[a]) ** 2
                for a, g in enumerate(grid))
    return box, dist2 <= radius_mm * radius_mm


def _write(labelmap: LabelMap, history: History, box: Box, mask: np.ndarray, value: int,
           only: int | None = None) -> Box | None:
    """Set the mask's voxels of the box to value (only those now equal to `only`, if given)."""
    target = labelmap.array[box]
    if only is not None:
        mask = mask & (target == only)
    history.touch(box)
    target[mask] = value
    return box


# -- brush and eraser ------------------------------------------------------------------------
def brush(labelmap: LabelMap, history: History, centre: Point, radius_mm: float, value: int,
          *, sphere: bool = False, image: np.ndarray | None = None,
          value_range: tuple[float, float] | None = None, overwrite: bool = True) -> Box | None:
    """Paint a disc (or sphere) of label `value`; overwrite=False paints background only."""
    _checked(labelmap, history, value)
    box, mask = ball_mask(centre, radius_mm, labelmap.spacing, labelmap.shape, sphere)
    if box is None:
        return None
    mask = _in_range(mask, image, value_range, box, labelmap.shape)
    with history.stroke("brush"):
        return _write(labelmap, history, box, mask, value, None if overwrite else 0)


def erase(labelmap: LabelMap, history: History, centre: Point, radius_mm: float, *,
          sphere: bool = False, label: int | None = None) -> Box | None:
    """Set a disc (or sphere) back to background; label=v erases only that label."""
    _checked(labelmap, history)
    box, mask = ball_mask(centre, radius_mm, labelmap.spacing, labelmap.shape, sphere)
    if box is None:
        return None
    with history.stroke("eraser"):
        return _write(labelmap, history, box, mask, 0, label)


def stroke_centres(points: Iterable[Point], radius_mm: float,
                   spacing: Sequence[float]) -> list[tuple[float, float, float]]:
    """Dab centres along a drag's points, at most radius/2 mm apart so the stroke has no gaps."""
    pts = [np.asarray(p, float) for p in points]
    out = [tuple(pts[0])] if pts else []
    step = max(radius_mm / 2.0, 1e-6)
    for a, b in zip(pts, pts[1:], strict=False):
        length = float(np.linalg.norm((b - a) * np.asarray(spacing)))
        n = max(1, math.ceil(length / step))
        out += [tuple(a + (b - a) * (i / n)) for i in range(1, n + 1)]
    return out  # type: ignore[return-value]


def brush_stroke(labelmap: LabelMap, history: History, centres: Iterable[Point],
                 radius_mm: float, value: int, **options) -> Box | None:
    """Many dabs as ONE undo item; value 0 erases (options as brush / erase take them)."""
    box = None
    with history.stroke("brush" if value else "eraser"):
        for centre in centres:
            dab = (brush(labelmap, history, centre, radius_mm, value, **options) if value
                   else erase(labelmap, history, centre, radius_mm, **options))
            box = union_box(box, dab)
    return box


# -- fills -----------------------------------------------------------------------------------
def flood_fill(labelmap: LabelMap, history: History, seed: Point, value: int, *,
               image: np.ndarray | None = None, value_range: tuple[float, float] | None = None,
               diagonal: bool = False) -> Box | None:
    """Fill, on the seed's slice, the region connected to the seed.

    With a value range: the image voxels within it (e.g. fill the lung by HU -1000..-400).
    Without: the voxels of the seed's current label (fill a hole, or relabel a structure).
    """
    from scipy import ndimage
    _checked(labelmap, history, value)
    k, r, c = (int(round(x)) for x in seed)
    if clip_box((slice(k, k + 1), slice(r, r + 1), slice(c, c + 1)), labelmap.shape) is None:
        return None
    if value_range is None:
        region = labelmap.array[k] == labelmap.array[k, r, c]
    else:
        plane = (slice(k, k + 1), slice(0, labelmap.shape[1]), slice(0, labelmap.shape[2]))
        region = _in_range(True, image, value_range, plane, labelmap.shape)[0]
    if not region[r, c]:
        return None
    parts, _ = ndimage.label(region, ndimage.generate_binary_structure(2, 2 if diagonal else 1))
    rows, cols = ndimage.find_objects(parts)[parts[r, c] - 1]
    mask = parts[rows, cols] == parts[r, c]
    with history.stroke("fill"):
        return _write(labelmap, history, (slice(k, k + 1), rows, cols), mask[None], value)


def polygon_mask(shape: tuple[int, int], vertices: Sequence[Point]
                 ) -> tuple[tuple[slice, slice] | None, np.ndarray | None]:
    """Even-odd fill of a closed polygon given as (row, column) vertices; pixel centres count.

    Scanlines through the pixel centres, all at once: for every row and edge the column where
    the edge crosses it; a pixel is inside when an odd number of crossings lies at or left of
    it. Edges are half-open in rows, so a square with integer corners (r0, c0)-(r1, c1) holds
    exactly rows r0..r1-1 and columns c0..c1-1, its area.
    """
    v = np.asarray(vertices, float).reshape(-1, 2)
    if len(v) < 3:
        return None, None
    r0, r1 = max(0, math.ceil(v[:, 0].min())), min(shape[0] - 1, math.floor(v[:, 0].max()))
    c0, c1 = max(0, math.ceil(v[:, 1].min())), min(shape[1] - 1, math.floor(v[:, 1].max()))
    if r1 < r0 or c1 < c0:
        return None, None
    w = np.roll(v, -1, axis=0)
    rows = np.arange(r0, r1 + 1, dtype=float)[:, None]
    crosses = (v[:, 0] <= rows) != (w[:, 0] <= rows)
    hit_row, hit_edge = np.nonzero(crosses)
    a, b = v[hit_edge], w[hit_edge]
    x = a[:, 1] + (rows[hit_row, 0] - a[:, 0]) * (b[:, 1] - a[:, 1]) / (b[:, 0] - a[:, 0])
    width = c1 - c0 + 1
    col = np.clip(np.ceil(x) - c0, 0, width).astype(np.intp)
    toggles = np.zeros((r1 - r0 + 1, width + 1), np.int32)
    np.add.at(toggles, (hit_row, col), 1)
    inside = (np.cumsum(toggles, axis=1)[:, :width] & 1).astype(bool)
    return (slice(r0, r1 + 1), slice(c0, c1 + 1)), inside


def polygon_fill(labelmap: LabelMap, history: History, slice_index: int,
                 vertices: Sequence[Point], value: int, *, image: np.ndarray | None = None,
                 value_range: tuple[float, float] | None = None,
                 overwrite: bool = True) -> Box | None:
    """Fill a polygon or lasso (vertices (row, column) on one slice), even-odd rule."""
    _checked(labelmap, history, value)
    if not 0 <= slice_index < labelmap.shape[0]:
        return None
    area, mask = polygon_mask(labelmap.shape[1:], vertices)
    if area is None:
        return None
    box = (slice(slice_index, slice_index + 1), *area)
    mask = _in_range(mask[None], image, value_range, box, labelmap.shape)
    with history.stroke("polygon"):
        return _write(labelmap, history, box, mask, value, None if overwrite else 0)


# -- connected components and morphology -----------------------------------------------------
def _label_block(labelmap: LabelMap, value: int, slice_index: int | None,
                 pad: Sequence[int] = (0, 0, 0)) -> Box | None:
    """Box of label `value` (on one slice, or the volume), grown by `pad` voxels per axis."""
    ks = slice(None) if slice_index is None else slice(slice_index, slice_index + 1)
    origin = (0 if slice_index is None else slice_index, 0, 0)
    box = mask_box(labelmap.array[ks] == value, origin)
    if box is None:
        return None
    grown = tuple(slice(s.start - p, s.stop + p) for s, p in zip(box, pad, strict=True))
    if slice_index is not None:
        grown = (box[0], *grown[1:])
    return clip_box(grown, labelmap.shape)  # type: ignore[arg-type]


def _components(mask: np.ndarray, fully_connected: bool) -> tuple[np.ndarray, np.ndarray]:
    """Component index per voxel and voxel count per component (index 0: outside)."""
    from scipy import ndimage
    structure = ndimage.generate_binary_structure(3, 3 if fully_connected else 1)
    parts, _ = ndimage.label(mask, structure)
    return parts, np.bincount(parts.ravel())


def remove_islands(labelmap: LabelMap, history: History, value: int, *,
                   min_voxels: int | None = None, min_mm3: float | None = None,
                   slice_index: int | None = None, fully_connected: bool = False) -> Box | None:
    """Erase the parts of a label smaller than min_voxels (or min_mm3) voxels."""
    _checked(labelmap, history, value)
    if min_voxels is None:
        if min_mm3 is None:
            raise ValueError("give min_voxels or min_mm3")
        min_voxels = math.ceil(min_mm3 / float(np.prod(labelmap.spacing)) - 1e-9)
    box = _label_block(labelmap, value, slice_index)
    if box is None:
        return None
    parts, sizes = _components(labelmap.array[box] == value, fully_connected)
    small = sizes < min_voxels
    small[0] = False
    with history.stroke("islands"):
        return _write(labelmap, history, box, small[parts], 0)


def keep_largest(labelmap: LabelMap, history: History, value: int, *,
                 slice_index: int | None = None, fully_connected: bool = False) -> Box | None:
    """Erase every part of a label but its largest connected one."""
    _checked(labelmap, history, value)
    box = _label_block(labelmap, value, slice_index)
    if box is None:
        return None
    parts, sizes = _components(labelmap.array[box] == value, fully_connected)
    sizes[0] = 0
    drop = (parts != int(np.argmax(sizes))) & (parts > 0)
    with history.stroke("keep largest"):
        return _write(labelmap, history, box, drop, 0)


def ball_structure(radius_mm: float, spacing: Sequence[float], flat: bool) -> np.ndarray:
    """Ellipsoid structuring element of radius_mm on this spacing (one slice thick if flat)."""
    half = [0 if (flat and a == 0) else int(radius_mm // spacing[a]) for a in range(3)]
    grid = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    return sum((g * s) ** 2 for g, s in zip(grid, spacing, strict=True)) <= radius_mm ** 2


def smooth(labelmap: LabelMap, history: History, value: int, *, radius_mm: float = 1.0,
           operation: str = "closing", slice_index: int | None = None) -> Box | None:
    """Morphological smoothing of one label with a ball of radius_mm.

    "opening" removes spurs and specks thinner than the ball; "closing" fills gaps and dents
    narrower than it, onto background only (other labels are never overwritten).
    """
    from scipy import ndimage
    _checked(labelmap, history, value)
    if operation not in ("opening", "closing"):
        raise ValueError(f"operation is 'opening' or 'closing', not {operation!r}")
    ball = ball_structure(radius_mm, labelmap.spacing, slice_index is not None)
    pad = [h // 2 + 1 for h in ball.shape]
    box = _label_block(labelmap, value, slice_index, pad)
    if box is None:
        return None
    block = labelmap.array[box]
    mask = np.pad(block == value, [(p, p) for p in pad])  # room at the volume's edges too
    morph = ndimage.binary_opening if operation == "opening" else ndimage.binary_closing
    result = morph(mask, ball)[tuple(slice(p, -p) for p in pad)]
    with history.stroke("smooth"):
        if operation == "opening":
            return _write(labelmap, history, box, (block == value) & ~result, 0)
        return _write(labelmap, history, box, result, value, only=0)


# -- fill between slices ---------------------------------------------------------------------
def _signed_distance(mask: np.ndarray, sampling: Sequence[float]) -> np.ndarray:
    """mm to the outline: negative inside the structure, positive outside."""
    from scipy import ndimage
    outside = ndimage.distance_transform_edt(~mask, sampling=sampling)
    inside = ndimage.distance_transform_edt(mask, sampling=sampling)
    return outside - inside


def fill_between_slices(labelmap: LabelMap, history: History, value: int, *,
                        slices: Sequence[int] | None = None) -> Box | None:
    """Interpolate a label drawn on some slices onto the slices between them.

    Shape-based interpolation: on each pair of neighbouring drawn slices the signed distance
    maps are blended linearly by position, and the blend's negative part is the shape. Only
    the slices strictly between drawn ones change, and only their background voxels.
    `slices` picks the drawn slices to use (default: every slice holding the label).
    """
    _checked(labelmap, history, value)
    drawn = np.flatnonzero((labelmap.array == value).any(axis=(1, 2)))
    if slices is not None:
        drawn = np.intersect1d(drawn, np.asarray(slices, int))
    changed = None
    with history.stroke("fill between slices"):
        for k1, k2 in zip(drawn, drawn[1:], strict=False):
            if k2 - k1 > 1:
                changed = union_box(changed, _interpolate_pair(labelmap, history, value,
                                                               int(k1), int(k2)))
    return changed


def _interpolate_pair(labelmap: LabelMap, history: History, value: int, k1: int,
                      k2: int) -> Box | None:
    ends = labelmap.array[[k1, k2]] == value
    area = mask_box(ends.any(axis=0)[None])
    _, rows, cols = area
    sampling = labelmap.spacing[1:]
    ends = np.pad(ends[:, rows, cols], ((0, 0), (1, 1), (1, 1)))  # outside on every side
    first, last = (_signed_distance(m, sampling) for m in ends)
    t = (np.arange(k1 + 1, k2) - k1)[:, None, None] / (k2 - k1)
    inside = ((1 - t) * first + t * last)[:, 1:-1, 1:-1] < 0
    return _write(labelmap, history, (slice(k1 + 1, k2), rows, cols), inside, value, only=0)


# -- a model's result as an edit -------------------------------------------------------------
def accept_prediction(labelmap: LabelMap, history: History, label_map_from_model: np.ndarray,
                      label_names: Sequence[str],
                      algorithm: tuple[str, str] | None = None) -> Box | None:
    """Make a model's label map the editable map, as ONE undo step (undo brings back the old).

    Model value v is label_names[v] ([0] the background); labels are matched by name
    (case-insensitive) and the ones the table lacks are added. `algorithm`: the (model id,
    version) that predicted it; its labels become AUTOMATIC by it (None, e.g. a SEG imported
    from elsewhere: the labels keep how they say they were made). Not a correction.
    """
    _checked(labelmap, history)
    predicted = np.asarray(label_map_from_model)
    if predicted.shape != labelmap.shape:
        raise AnnotationError(None, f"The prediction's grid {predicted.shape} is not the "
                              f"series' {labelmap.shape}; run the model on this series.")
    if predicted.size and (predicted.min() < 0 or predicted.max() >= len(label_names)):
        raise AnnotationError(None, "The prediction holds values that its label names do "
                              "not name; check the model's manifest labels.")
    with history.stroke("accept prediction", keeps_provenance=True):
        lut = np.zeros(len(label_names), np.uint8)
        for v, name in enumerate(label_names[1:], start=1):
            label = labelmap.table.by_name(name) or labelmap.table.add(name)
            if algorithm is not None:
                labelmap.table.labels[label.value] = label = label.made_by(algorithm)
            lut[v] = label.value
        new = lut[predicted]
        box = mask_box(new != labelmap.array)
        if box is not None:
            history.touch(box)
            labelmap.array[box] = new[box]
    return box
