"""Projection X-rays (CR, DX) as a reader meets them from real scanners: a spacing of 0\\0, a
negative or missing one, or only ImagerPixelSpacing; letters from PatientOrientation; a cursor
readout in pixels and image-plane millimetres, never invented patient coordinates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ComputedRadiographyImageStorage
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

import medviewer.core.synthetic as syn
from medviewer.ui.viewing.screen_pixels import display_frame
from tests.ui.gui import _open, _screen, _window

SIZE = 64


def write_cr(folder: Path, *, pixel_spacing: list | None, imager_spacing: list | None = None,
             name: str = "XRAY^CARL") -> Path:
    """A CR chest film (PatientOrientation L\\F) with the pixel spacing a scanner gave it."""
    path, _ = syn.write_chest_xray(folder, size=SIZE, seed=7, filename="CR00001.dcm")
    ds = pydicom.dcmread(path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    ds.Modality, ds.PatientName, ds.PatientID = "CR", name, "CR0001"
    for keyword, value in (("PixelSpacing", pixel_spacing),
                           ("ImagerPixelSpacing", imager_spacing)):
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)
    return folder


def hover(view, col: float, row: float) -> None:
    """The mouse comes to rest over image pixel (col, row) of a view."""
    viewport, pos = view.graphics.viewport(), _screen(view, col, row)
    QApplication.sendEvent(viewport, QMouseEvent(
        QMouseEvent.Type.MouseMove, QPointF(pos), QPointF(viewport.mapToGlobal(pos)),
        Qt.MouseButton.NoButton, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier))
    QApplication.processEvents()


BAD_SPACINGS = {"zero": ["0", "0"], "negative": [-0.2, -0.2], "missing": None}


@pytest.mark.parametrize("kind", list(BAD_SPACINGS))
def test_cr_without_a_usable_spacing_opens_in_pixels_after_another_series(
        make_main_window, qtbot, dicom_folder, tmp_path, kind):
    win = _window(make_main_window, qtbot, dicom_folder)
    view = win.viewer.single_view
    assert win.document.modality in ("CT", "MR") and view.overlays["left"].text()
    _open(win, qtbot, write_cr(tmp_path / "cr", pixel_spacing=BAD_SPACINGS[kind]))
    QApplication.processEvents()
    doc = win.document
    assert doc.modality == "CR" and not doc.spacing_known and not win.last_error
    shown = view.displayed
    assert shown is not None and shown.std() > 10  # the film, not a black (or flat) square
    assert view.zoom() > 0
    assert "XRAY, CARL" in view.overlays["top_left"].text()  # the new patient, not the last
    assert "CR" in view.overlays["series"].text() and "no pixel spacing" in \
        view.overlays["bottom_right"].text()
    letters = {edge: view.overlays[edge].text() for edge in ("left", "right", "top", "bottom")}
    assert letters == {"left": "R", "right": "L", "top": "H", "bottom": "F"}  # L\F
    hover(view, 20.5, 30.5)
    readout = win.status_label.text()
    assert readout.startswith("pixel (20, 30)") and "mm" not in readout and "LPS" not in readout
    ruler = view.measurements.add_distance((2, 2), (12, 2))
    assert ruler.label.toPlainText() == "10.0 px"


def test_imager_pixel_spacing_alone_is_a_valid_spacing(make_main_window, qtbot, tmp_path):
    win = _window(make_main_window, qtbot,
                  write_cr(tmp_path / "cr", pixel_spacing=None, imager_spacing=[0.5, 0.25]))
    view, doc = win.viewer.single_view, win.document
    assert doc.spacing_known and view.spacing == pytest.approx((0.5, 0.25))
    assert view.overlays["bottom_right"].text() == "0.25 x 0.50 mm"
    ruler = view.measurements.add_distance((2, 2), (12, 2))
    assert ruler.label.toPlainText() == f"{10 * 0.25:.1f} mm"


def test_projection_readout_has_pixel_and_image_plane_mm_not_patient_lps(
        make_main_window, qtbot, tmp_path):
    """The film has no patient coordinates: no LPS, whose x > 0 would sit on the R side."""
    win = _window(make_main_window, qtbot, write_cr(tmp_path / "cr", pixel_spacing=[0.5, 0.25]))
    view = win.viewer.single_view
    hover(view, 40.5, 10.5)
    readout = win.status_label.text()
    assert readout.startswith("pixel (40, 10)")
    assert "LPS" not in readout and "voxel" not in readout
    value = win.document.volume.voxels[0, 10, 40]
    assert f"   {value:g}   " in readout
    x_mm, y_mm = 40.5 * 0.25, 10.5 * 0.5  # from the image's top left corner
    assert readout.endswith(f"image ({x_mm:.1f}, {y_mm:.1f}) mm")


def test_ct_readout_keeps_voxel_and_lps(make_main_window, qtbot, dicom_folder):
    win = _window(make_main_window, qtbot, dicom_folder)
    view, doc = win.viewer.single_view, win.document
    assert doc.has_geometry
    hover(view, 5.5, 6.5)
    k = doc.slice_index
    readout = win.status_label.text()
    assert readout.startswith(f"voxel (5, 6, {k})") and "LPS (" in readout
    assert readout.endswith(" mm")


@pytest.mark.parametrize("iop", [[-1, 0, 0, 0, 0, -1], [0, -1, 0, 0, 0, -1], [0, 0, -1, 1, 0, 0]])
def test_a_film_with_orientation_but_no_position_shows_as_stored(make_main_window, qtbot,
                                                                 tmp_path, iop):
    """Some exporters write ImageOrientationPatient on a film without ImagePositionPatient: no
    patient geometry, so the film is shown as stored with the letters of PatientOrientation,
    never flipped or turned by a half-known orientation."""
    folder = write_cr(tmp_path / "cr", pixel_spacing=[0.5, 0.25])
    path = next(folder.glob("*.dcm"))
    ds = pydicom.dcmread(path)
    ds.ImageOrientationPatient = iop
    ds.save_as(path)
    win = _window(make_main_window, qtbot, folder)
    view, doc = win.viewer.single_view, win.document
    assert not doc.has_geometry
    expected = display_frame(doc.volume.voxels[0], doc.window, invert=doc.invert)
    np.testing.assert_array_equal(view.displayed, expected)
    letters = {edge: view.overlays[edge].text() for edge in ("left", "right", "top", "bottom")}
    assert letters == {"left": "R", "right": "L", "top": "H", "bottom": "F"}
    assert view.spacing == pytest.approx((0.5, 0.25))
