"""The RGBA a SliceView draws is the window's grey (core.display.to_display) in R, G and B,
opaque, whichever path makes it (one lookup for 8 and 16-bit integers, else window then grey)."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.core.display import Window, to_display
from medviewer.ui.viewing.screen_pixels import screen_rgba


@pytest.mark.parametrize("dtype", ["int16", "uint16", "uint8", "int8", "int32", "float32"])
@pytest.mark.parametrize("invert", [False, True])
@pytest.mark.parametrize("window", [Window(40, 400), Window(0.5, 3, function="SIGMOID")])
def test_screen_rgba_is_the_window_grey(dtype, invert, window):
    info = np.iinfo(dtype) if dtype != "float32" else np.finfo(dtype)
    low, high = max(float(info.min), -3000.0), min(float(info.max), 3000.0)
    rng = np.random.default_rng(1)
    frame = rng.uniform(low, high, (37, 29)).astype(dtype)[::-1, ::2]  # not contiguous
    frame[0, :4] = np.array([low, high, 0, 1]).astype(dtype)
    grey = to_display(frame, window, invert=invert)
    rgba = screen_rgba(frame, window, invert=invert)
    assert rgba.shape == (*frame.shape, 4) and rgba.dtype == np.uint8
    for channel in range(3):
        assert (rgba[..., channel] == grey).all()
    assert (rgba[..., 3] == 255).all()


def test_voi_lut_and_colour_frames():
    frame = np.array([[0, 1, 2, 3]], np.uint16)
    lut = np.array([0, 100, 200, 255], np.uint16)
    rgba = screen_rgba(frame, Window(1, 2), voi_lut=lut)
    assert (rgba[..., 0] == to_display(frame, Window(1, 2), voi_lut=lut)).all()
    colour = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    assert (screen_rgba(colour, Window(1, 2)) == colour).all()
    assert (screen_rgba(colour, Window(1, 2), invert=True) == 255 - colour).all()


@pytest.mark.parametrize("dtype", ["int16", "uint8"])
def test_screen_rgba_renders_into_the_buffer_it_is_lent(dtype):
    """A view's own buffer is filled in place (no new array per slice), with the same pixels;
    one of the wrong shape is left alone."""
    frame = np.random.default_rng(2).integers(-200, 200, (23, 17)).astype(dtype)[:, ::-1]
    out = np.zeros((23, 17, 4), np.uint8)
    rgba = screen_rgba(frame, Window(40, 400), invert=True, out=out)
    assert rgba is out
    assert (out == screen_rgba(frame, Window(40, 400), invert=True)).all()
    wrong = np.zeros((5, 5, 4), np.uint8)
    assert screen_rgba(frame, Window(40, 400), out=wrong).shape == (23, 17, 4)
    assert not wrong.any()
