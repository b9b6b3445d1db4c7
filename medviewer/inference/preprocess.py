"""Numeric steps between a DICOM volume and a model's input tensor (numpy and scipy only).

Training uses these same functions, so what a model saw while learning is what it sees in the
viewer: the preprocessing ships as data in the manifest, the code here.
"""

from __future__ import annotations

import re

import numpy as np

from medviewer.inference.manifest import InputSpec


def slice_context(voxels: np.ndarray, k: int, count: int) -> np.ndarray:
    """`count` slices centred on slice k, (count, rows, cols); edges repeat the end slice.

    count 3 is the previous / current / next input: at the first slice the 'previous' channel
    is the first slice itself, at the last slice the 'next' channel is the last slice.
    """
    n = voxels.shape[0]
    if not 0 <= k < n:
        raise IndexError(f"slice {k} outside 0..{n - 1}")
    offsets = np.arange(count) - (count - 1) // 2
    return voxels[np.clip(k + offsets, 0, n - 1)]


def volume_samples(voxels: np.ndarray, count: int) -> np.ndarray:
    """`count` slices spread evenly over the series (nearest), (count, rows, cols)."""
    n = voxels.shape[0]
    picks = np.rint(np.linspace(0, n - 1, count)).astype(int)
    return voxels[picks]


def to_unit(image: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """Map modality values to float32 0..1 through a window (centre, width), else min-max."""
    x = np.array(image, np.float32)  # a copy: scaled in place below
    if window is None:
        lo, hi = float(x.min()), float(x.max())
    else:
        lo, hi = window[0] - window[1] / 2, window[0] + window[1] / 2
    if hi <= lo:
        return np.zeros_like(x)
    x -= np.float32(lo)
    x /= np.float32(hi - lo)
    return np.clip(x, 0.0, 1.0, out=x)


def resize(image: np.ndarray, size: tuple[int, int], *, order: int = 1) -> np.ndarray:
    """Resize the last two axes to `size` (rows, cols).

    Integer shrink factors average blocks (no aliasing of thin structures); other factors
    interpolate (order 1 bilinear, order 0 nearest for label maps).
    """
    rows, cols = image.shape[-2:]
    if (rows, cols) == tuple(size):
        return image
    fr, fc = rows / size[0], cols / size[1]
    if order == 1 and fr == int(fr) and fc == int(fc) and fr >= 1 and fc >= 1:
        fr, fc = int(fr), int(fc)
        lead = image.shape[:-2]  # rows then columns, each a sum over a contiguous axis: 3x
        x = image.reshape(*lead, size[0], fr, cols).sum(axis=-2, dtype=np.float32)
        x = x.reshape(*lead, size[0], size[1], fc).sum(axis=-1)
        x *= np.float32(1.0 / (fr * fc))
        return x
    if order == 0 and size[0] % rows == 0 and size[1] % cols == 0:
        # a label map back onto its slice: nearest on a whole-number grid is a repeat, exactly
        # what zoom gives (no ties on an integer factor), 20x faster per slice
        return np.repeat(np.repeat(image, size[0] // rows, axis=-2), size[1] // cols, axis=-1)
    zoom = (1,) * (image.ndim - 2) + (size[0] / rows, size[1] / cols)
    if order != 0:  # interpolated values are fractions, as the block mean's are: float32
        image = np.asarray(image, np.float32)
    from scipy import ndimage  # on first use: scipy costs 0.2 s of the viewer's start

    return ndimage.zoom(image, zoom, order=order, mode="nearest", grid_mode=True)


def normalise(x: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Subtract the manifest's mean and divide by its std, per channel (axis -3)."""
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    if mean.size > 1:
        mean, std = mean[:, None, None], std[:, None, None]
    return (x - mean) / std


def prepare_slices(voxels: np.ndarray, indices: list[int], spec: InputSpec) -> np.ndarray:
    """The (batch, channels, rows, cols) float32 image input for `indices`, as `spec` says.

    With a window, each distinct slice of the batch is windowed and resized once and the
    previous / current / next channels are gathered from those (3x less work than per
    sample); min-max scaling stays per sample, so a result never depends on its batch.
    """
    if spec.context.startswith("volume:"):
        raise ValueError(f"context {spec.context!r} describes a whole series, not slices: "
                         "a series-level pipeline builds that sample")
    count = spec.context_slices
    if spec.window is None:
        frames = [resize(to_unit(slice_context(voxels, k, count), None), spec.size)
                  for k in indices]
        x = np.stack(frames) if frames else np.empty((0, count, *spec.size), np.float32)
    else:
        offsets = np.arange(count) - (count - 1) // 2
        picks = np.clip(np.asarray(indices, int)[:, None] + offsets, 0, voxels.shape[0] - 1)
        unique, inverse = np.unique(picks, return_inverse=True)
        frames = resize(to_unit(voxels[unique], spec.window), spec.size)
        x = frames[inverse.reshape(picks.shape)]
    if count != spec.channels:  # one grey slice fed to a 3-channel network
        x = np.broadcast_to(x[:, :1], (len(indices), spec.channels, *spec.size))
    return np.ascontiguousarray(normalise(x, spec), np.float32)


_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY]?)\s*$", re.IGNORECASE)
_AGE_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0, "": 1.0}


def parse_age(text: str | None) -> float | None:
    """DICOM PatientAge ('045Y', '006M', '010W', '003D') in years; None when absent or odd."""
    if not text:
        return None
    m = _AGE.match(str(text))
    if m is None:
        return None
    return int(m.group(1)) * _AGE_UNIT_YEARS[m.group(2).upper()]


def sex_code(text: str | None) -> float:
    """PatientSex as the models' input: M 1, F 0, anything else (O, missing) 0.5."""
    return {"M": 1.0, "F": 0.0}.get(str(text or "").strip().upper(), 0.5)


MISSING_AGE_YEARS = 50.0  # what a model gets when PatientAge is missing: mid-range, not 0


def extras_vector(header: dict[str, str], extras: tuple[str, ...]) -> np.ndarray:
    """The extra inputs a manifest asks for: age in decades, sex code, float32 (len(extras),)."""
    values = []
    for name in extras:
        if name == "age":
            age = parse_age(header.get("PatientAge"))
            values.append((MISSING_AGE_YEARS if age is None else age) / 100.0)
        elif name == "sex":
            values.append(sex_code(header.get("PatientSex")))
        else:
            raise ValueError(f"unknown extra input {name!r}")
    return np.asarray(values, np.float32)


def log_transform(image: np.ndarray) -> np.ndarray:
    """c * log(1 + r) over the image's range, scaled to 0..1 (lab 5's contrast step)."""
    x = np.asarray(image, np.float32)
    x = x - x.min()
    top = float(x.max())
    if top <= 0:
        return np.zeros_like(x)
    return np.log1p(x) / np.float32(np.log1p(top))


def simplest_color_balance(image: np.ndarray, percent: float = 1.0) -> np.ndarray:
    """Limare's simplest colour balance: clip `percent`/2 % at each end, stretch to 0..1."""
    x = np.asarray(image, np.float32)
    lo, hi = np.percentile(x, [percent / 2, 100 - percent / 2])
    if hi <= lo:
        return np.zeros_like(x)
    return np.clip((x - lo) / np.float32(hi - lo), 0.0, 1.0)


def log_balance(image: np.ndarray, percent: float = 1.0) -> np.ndarray:
    """`simplest_color_balance(log_transform(image), percent)`, 5x faster on stored pixels.

    For integer images (a radiograph's 12-16 bit values) both steps are monotone maps of the
    value, so they become one lookup table, and the percentiles come exactly from a histogram
    of the values (the same order statistics, interpolated the way np.percentile does).
    """
    x = np.asarray(image)
    if x.dtype.kind not in "iu" or x.size == 0:
        return simplest_color_balance(log_transform(x), percent)
    low = int(x.min())
    span = int(x.max()) - low
    if span > 1 << 20:
        return simplest_color_balance(log_transform(x), percent)
    lut = log_transform(np.arange(span + 1, dtype=np.float32))
    shifted = (x - low).astype(np.intp, copy=False).ravel()
    ranks = np.cumsum(np.bincount(shifted, minlength=span + 1))
    limits = []
    for q in (percent / 2, 100 - percent / 2):
        position = q / 100 * (shifted.size - 1)
        k = int(np.floor(position))
        a, b = np.searchsorted(ranks, [k + 1, min(k + 2, shifted.size)])
        limits.append(lut[a] + (position - k) * (lut[b] - lut[a]))
    lo, hi = limits
    if hi <= lo:
        return np.zeros(x.shape, np.float32)
    table = np.clip((lut - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)
    return table[shifted].reshape(x.shape)


def scale_boxes(boxes: np.ndarray, model_size: tuple[int, int],
                image_size: tuple[int, int]) -> np.ndarray:
    """(n, 4) x0 y0 x1 y1 from the model's (rows, cols) grid back to the image's pixels."""
    sy = image_size[0] / model_size[0]
    sx = image_size[1] / model_size[1]
    out = np.asarray(boxes, np.float64).reshape(-1, 4) * np.array([sx, sy, sx, sy])
    out[:, 0::2] = out[:, 0::2].clip(0, image_size[1])
    out[:, 1::2] = out[:, 1::2].clip(0, image_size[0])
    return out


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)
