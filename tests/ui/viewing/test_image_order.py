"""Image order as a PACS reader expects it (issue 11, item 23), in a real window.

Head first, the default: image 1 is the most cranial axial image (the most anterior coronal,
the patient's rightmost sagittal), and wheel down, ↓, PgDn and the slider's right move towards
the feet, whatever order the scanner's slice normal gives the voxels. View ▸ Image Order ▸
Feet First numbers and scrolls the other way and is remembered. The voxels never move.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from medviewer.core import geometry
from medviewer.core import synthetic as syn
from medviewer.core.dicom.volume import Volume
from medviewer.ui.document.reading_aids import FEET_FIRST, HEAD_FIRST
from medviewer.ui.document.study import StudyDocument
from medviewer.ui.shell.main_window import IMAGE_ORDER_KEY
from medviewer.ui.viewing.slice_view import SliceView
from tests.ui.gui import _wheel, _window

SLICES, SPACING_MM = 7, 3.0


def _series(folder, orientation=syn.AXIAL):
    voxels = np.random.default_rng(3).integers(-900, 900, (SLICES, 24, 20)).astype(np.int16)
    syn.write_series(folder, voxels, spacing=(SPACING_MM, 0.8, 0.8), orientation=orientation,
                     shuffle_names=True, seed=5)
    return folder


def _lps(doc) -> np.ndarray:
    """Patient position (LPS mm) of the crosshair: where the images on screen are."""
    return geometry.voxel_to_lps(doc.affine, *doc.crosshair)


def _number(view: SliceView) -> str:
    """'n / N' of the corner's first line ('Axial  n / N')."""
    return view.overlays["top_right"].text().splitlines()[0].split("  ")[1]


def _key(view: SliceView, key: Qt.Key) -> None:
    QTest.keyClick(view, key)
    QApplication.processEvents()


# the usual axial orientation (slice normal towards the head), and one whose slice normal
# points to the feet, so the voxels run head to feet: image 1 is the most cranial either way
@pytest.mark.parametrize("orientation", [syn.AXIAL, (-1, 0, 0, 0, 1, 0)])
def test_axial_image_1_is_the_most_cranial_and_wheel_down_goes_to_the_feet(
        make_main_window, qtbot, tmp_path, orientation):
    win = _window(make_main_window, qtbot, _series(tmp_path / "ct", orientation))
    view, doc, panel = win.viewer.single_view, win.document, win.viewer
    view.setFocus()
    qtbot.waitUntil(view.hasFocus)
    _key(view, Qt.Key.Key_Home)
    top = _lps(doc)[2]
    zs = [geometry.voxel_to_lps(doc.affine, 0, 0, k)[2] for k in range(SLICES)]
    assert top == pytest.approx(max(zs))  # image 1: the most cranial slice
    assert _number(view) == f"1 / {SLICES}" and panel.slice_slider.value() == 0
    assert panel.slice_label.text() == f"1 / {SLICES}"
    _wheel(view, -1)  # wheel down: one image towards the feet
    assert _lps(doc)[2] == pytest.approx(top - SPACING_MM)
    assert _number(view) == f"2 / {SLICES}" and panel.slice_slider.value() == 1
    _key(view, Qt.Key.Key_Down)
    assert _lps(doc)[2] == pytest.approx(top - 2 * SPACING_MM)
    _wheel(view, 1)  # wheel up: back towards the head
    assert _lps(doc)[2] == pytest.approx(top - SPACING_MM)
    _key(view, Qt.Key.Key_PageDown)  # 10 images on: the last, the most caudal
    assert _lps(doc)[2] == pytest.approx(min(zs)) and _number(view) == f"{SLICES} / {SLICES}"
    _key(view, Qt.Key.Key_PageUp)
    assert _lps(doc)[2] == pytest.approx(top)
    _key(view, Qt.Key.Key_End)
    assert _lps(doc)[2] == pytest.approx(min(zs))
    panel.slice_slider.setValue(0)  # the slider's left end is image 1 too
    assert _lps(doc)[2] == pytest.approx(top)
    panel.cine_tick()  # cine plays in the same order
    assert _lps(doc)[2] == pytest.approx(top - SPACING_MM)


def test_coronal_runs_front_to_back_and_sagittal_right_to_left(make_main_window, qtbot,
                                                                tmp_path):
    win = _window(make_main_window, qtbot, _series(tmp_path / "ct"))
    doc = win.document
    win.set_layout("mpr")
    views = win.viewer.mpr_view.views
    for name, axis, towards in (("coronal", 1, +1), ("sagittal", 0, +1), ("axial", 2, -1)):
        view = views[name]
        view.setFocus()
        qtbot.waitUntil(view.hasFocus)
        _key(view, Qt.Key.Key_Home)
        first = _lps(doc)[axis]
        assert _number(view).startswith("1 / ")
        _wheel(view, -1)  # coronal: towards the back (+P); sagittal: towards the left (+L)
        assert np.sign(_lps(doc)[axis] - first) == towards, name
        _key(view, Qt.Key.Key_End)
        assert np.sign(_lps(doc)[axis] - first) == towards, name


def test_feet_first_from_the_view_menu_is_remembered(make_main_window, qtbot, tmp_path,
                                                     temp_settings):
    folder = _series(tmp_path / "ct")
    win = _window(make_main_window, qtbot, folder)
    view, doc = win.viewer.single_view, win.document
    view.setFocus()
    qtbot.waitUntil(view.hasFocus)
    _key(view, Qt.Key.Key_Home)  # head first: image 1, the top slice
    voxels_before, shown_before = doc.volume.voxels.copy(), doc.crosshair
    view_menu = next(a.menu() for a in win.menuBar().actions() if "View" in a.text())
    order_menu = next(a.menu() for a in view_menu.actions() if a.menu() and
                      "Image" in a.text() and "Order" in a.text())
    feet = next(a for a in order_menu.actions() if a.text().startswith("Feet First"))
    feet.trigger()
    assert doc.image_order == FEET_FIRST and feet.isChecked()
    # the same image, renumbered from the other end; the voxels are untouched
    assert doc.crosshair == shown_before and _number(view) == f"{SLICES} / {SLICES}"
    assert win.viewer.slice_slider.value() == SLICES - 1
    np.testing.assert_array_equal(doc.volume.voxels, voxels_before)
    _key(view, Qt.Key.Key_Home)
    bottom = _lps(doc)[2]
    zs = [geometry.voxel_to_lps(doc.affine, 0, 0, k)[2] for k in range(SLICES)]
    assert bottom == pytest.approx(min(zs)) and _number(view) == f"1 / {SLICES}"
    _wheel(view, -1)  # wheel down now goes towards the head
    assert _lps(doc)[2] == pytest.approx(bottom + SPACING_MM)
    win.close()
    assert win.settings.value(IMAGE_ORDER_KEY) == FEET_FIRST
    again = _window(make_main_window, qtbot, folder, settings=win.settings)
    assert again.document.image_order == FEET_FIRST
    assert again.viewer.image_order_actions[FEET_FIRST].isChecked()
    again.viewer.image_order_actions[HEAD_FIRST].trigger()
    assert again.settings.value(IMAGE_ORDER_KEY) == HEAD_FIRST


def test_an_unknown_saved_order_keeps_head_first(make_main_window, temp_settings):
    settings = temp_settings()
    settings.setValue(IMAGE_ORDER_KEY, "sideways")
    win = make_main_window(settings=settings)
    assert win.document.image_order == HEAD_FIRST


def test_images_without_patient_geometry_keep_their_stored_order(qtbot):
    """A cine loop or a stack of films has no head or feet: frame 1 stays image 1."""
    voxels = np.arange(5 * 8 * 8, dtype=np.uint8).reshape(5, 8, 8)
    doc = StudyDocument()
    doc.set_volume(Volume(voxels=voxels, affine=np.eye(4), modality="US", has_geometry=False))
    view = SliceView(doc)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    for order in (HEAD_FIRST, FEET_FIRST):
        doc.set_image_order(order)
        _key(view, Qt.Key.Key_Home)
        assert doc.slice_index == 0 and view.overlays["top_right"].text().startswith(
            "Image 1 / 5")
        _wheel(view, -1)
        assert doc.slice_index == 1
