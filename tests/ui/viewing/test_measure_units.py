"""Measurements on images without a pixel size read in pixels, never in invented millimetres."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import medviewer.core.synthetic as syn
from medviewer.core.dicom import load_series
from medviewer.core.display import Window
from medviewer.ui.document.study import StudyDocument
from medviewer.ui.viewing.slice_view import SliceView


def _show(qtbot, volume) -> SliceView:
    doc = StudyDocument()
    doc.set_volume(volume, window=Window(128, 256))
    view = SliceView(doc)
    qtbot.addWidget(view)
    view.resize(300, 300)
    view.show()
    qtbot.waitExposed(view)
    return view


def _capture(folder: Path, **attributes) -> Path:
    grey = np.tile(np.arange(48, dtype=np.uint8) * 5, (32, 1))
    return syn.write_rgb(folder, np.stack([grey] * 3, axis=-1), **attributes)


def test_no_pixel_spacing_gives_pixels(qtbot, tmp_path):
    view = _show(qtbot, load_series(_capture(tmp_path)))
    ruler = view.measurements.add_distance((2, 2), (12, 2))
    assert ruler.label.toPlainText() == "10.0 px"
    roi = view.measurements.add_area("rect", (0, 0), (4, 5))
    assert "area 20.0 px²" in roi.label.toPlainText()


def test_known_spacing_gives_millimetres(qtbot, tmp_path):
    volume = load_series(_capture(tmp_path, PixelSpacing=[0.5, 0.25]))
    assert volume.spacing_known
    view = _show(qtbot, volume)
    ruler = view.measurements.add_distance((2, 2), (12, 2))
    assert ruler.label.toPlainText() == f"{10 * 0.25:.1f} mm"
    assert ruler.length_mm == pytest.approx(2.5)
