"""Display mapping (a view concern): modality values -> 8-bit grey, per frame.

    Window(center, width, explanation="", function="LINEAR")
    windows_from_dataset(ds) -> list[Window]        # every listed value, with explanations
    default_window(volume_or_array, windows) -> Window
    to_display(frame, window, *, voi_lut=None, voi_lut_first=0, invert=False) -> uint8 array
        LINEAR / LINEAR_EXACT / SIGMOID per PS3.3 C.11.2.1.2; VOI LUT when given;
        invert for MONOCHROME1.
    CT_PRESETS: dict name -> Window (brain, lung, mediastinum, abdomen, bone)

Integer frames (the usual case) are mapped through a cached uint8 lookup table covering the
whole value range of their dtype, so a 512 x 512 slice costs one `np.take` (~1 ms) while the
radiologist drags the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    explanation: str = ""
    function: str = "LINEAR"  # LINEAR, LINEAR_EXACT or SIGMOID (VOILUTFunction)

    @property
    def narrowest(self) -> float:
        """The smallest width this function allows: LINEAR steps by stored values (PS3.3
        C.11.2.1.2: width >= 1); LINEAR_EXACT and SIGMOID only need a positive width."""
        return 1.0 if self.function == "LINEAR" else MIN_EXACT_WIDTH


MIN_EXACT_WIDTH = 1e-9  # LINEAR_EXACT / SIGMOID: any positive width (floats in small units)

CT_PRESETS: dict[str, Window] = {
    "brain": Window(40, 80, "Brain"),
    "subdural": Window(75, 215, "Subdural"),
    "stroke": Window(32, 8, "Stroke"),
    "lung": Window(-600, 1500, "Lung"),
    "mediastinum": Window(50, 350, "Mediastinum"),
    "abdomen": Window(50, 400, "Abdomen"),
    "liver": Window(60, 160, "Liver"),
    "bone": Window(400, 1800, "Bone"),
}


def _values(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, str | bytes | int | float):
        return [value]
    return list(value)


def _get(ds: Any, keyword: str) -> Any:
    """A header value, None when absent or undecodable (an unknown VR raises on access)."""
    try:
        return ds.get(keyword)
    except Exception:
        return None


def windows_from_dataset(ds: Any) -> list[Window]:
    """Every Window Center/Width pair of the header, with its explanation and VOI LUT Function."""
    centers = _values(_get(ds, "WindowCenter"))
    widths = _values(_get(ds, "WindowWidth"))
    notes = _values(_get(ds, "WindowCenterWidthExplanation"))
    function = str(_get(ds, "VOILUTFunction") or "LINEAR").upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        function = "LINEAR"
    windows = []
    for i, (center, width) in enumerate(zip(centers, widths, strict=False)):
        try:
            c, w = float(center), float(width)
        except (TypeError, ValueError):
            continue  # an empty or malformed value: the next pair may still be usable
        if w <= 0:
            continue
        note = str(notes[i]) if i < len(notes) else ""
        windows.append(Window(c, w, note, function))
    return windows


def default_window(volume_or_array: Any, windows: list[Window] | None = None) -> Window:
    """The header's first window, else a robust 1-99 percentile window of the middle slice."""
    if windows:
        return windows[0]
    arr = getattr(volume_or_array, "voxels", volume_or_array)
    arr = np.asarray(arr)
    if getattr(volume_or_array, "is_colour", False) or arr.dtype == np.uint8 and arr.ndim > 3:
        return Window(127.5, 256.0, "Full range")
    while arr.ndim > 2:
        arr = arr[arr.shape[0] // 2]
    sample = arr[:: max(1, arr.shape[0] // 256), :: max(1, arr.shape[-1] // 256)]
    lo, hi = (float(v) for v in np.percentile(sample, [1, 99]))
    if hi <= lo:
        lo, hi = float(arr.min()), float(arr.max())
    return _spanning(lo, hi, "Auto", arr.dtype)


def full_range_window(voxels: np.ndarray) -> Window:
    """A window spanning the value range (sampled: a 300-slice CT must not stall the GUI)."""
    step = max(1, int(round((voxels.size / 2_000_000) ** (1 / 3))))
    sample = voxels[(slice(None, None, step),) * min(voxels.ndim, 3)]
    lo, hi = float(np.min(sample)), float(np.max(sample))
    return _spanning(lo, hi, "Full range", voxels.dtype)


def _spanning(lo: float, hi: float, explanation: str, dtype: np.dtype) -> Window:
    """A window from lo to hi. LINEAR needs a width of at least 1 (a stored value step), so
    float values spanning less (a parametric map in mm2/s: 0 to 0.003) get LINEAR_EXACT."""
    if dtype.kind == "f" and hi - lo < 1.0:
        return Window((lo + hi) / 2, max(hi - lo, MIN_EXACT_WIDTH), explanation, "LINEAR_EXACT")
    return Window((lo + hi) / 2, max(hi - lo, 1.0), explanation)


def window_curve(x: np.ndarray, window: Window) -> np.ndarray:
    """PS3.3 C.11.2.1.2 output in [0, 255] (float64) for input values x."""
    c, w = float(window.center), float(window.width)
    x = np.asarray(x, dtype=np.float64)
    if window.function == "SIGMOID":
        # exp overflows past ~709; beyond +-50 the curve is 0 or 255 to double precision
        return 255.0 / (1.0 + np.exp(np.clip(-4.0 * (x - c) / w, -50.0, 50.0)))
    if window.function == "LINEAR_EXACT":
        return np.clip(((x - c) / w + 0.5) * 255.0, 0.0, 255.0)
    if w <= 1:  # LINEAR needs w >= 1: a threshold at c - 0.5
        return np.where(x > c - 0.5, 255.0, 0.0)
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0
    return np.clip(y, 0.0, 255.0)


@lru_cache(maxsize=64)
def _window_table(window: Window, dtype: str, invert: bool) -> np.ndarray:
    """uint8 table indexed by the unsigned view of an integer dtype (8 or 16 bit)."""
    dt = np.dtype(dtype)
    codes = np.arange(1 << (dt.itemsize * 8), dtype=np.uint32).astype(f"u{dt.itemsize}")
    values = codes.view(dt)
    y = np.floor(window_curve(values, window) + 0.5).astype(np.uint8)
    return 255 - y if invert else y


def _lut_to_uint8(lut: np.ndarray) -> np.ndarray:
    top = float(lut.max()) if lut.size else 1.0
    bits = max(8, int(np.ceil(np.log2(top + 1)))) if top > 0 else 8
    return np.floor(lut.astype(np.float64) * 255.0 / ((1 << bits) - 1) + 0.5).astype(np.uint8)


def to_display(
    frame: np.ndarray,
    window: Window,
    *,
    voi_lut: np.ndarray | None = None,
    voi_lut_first: int = 0,
    invert: bool = False,
) -> np.ndarray:
    """Modality values -> uint8 grey for the screen (VOI LUT if given, else the window)."""
    frame = np.asarray(frame)
    if voi_lut is not None and len(voi_lut):
        table = _lut_to_uint8(np.asarray(voi_lut))
        index = np.clip(frame.astype(np.int64) - int(voi_lut_first), 0, len(table) - 1)
        out = table[index]
        return 255 - out if invert else out
    if frame.dtype.kind in "iu" and frame.dtype.itemsize <= 2:
        table = _window_table(window, frame.dtype.str, bool(invert))
        return np.take(table, frame.view(f"u{frame.dtype.itemsize}"))
    y = np.floor(window_curve(frame, window) + 0.5).astype(np.uint8)
    return 255 - y if invert else y
