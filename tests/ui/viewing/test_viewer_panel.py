"""The viewer panel: cine at the recorded rate; reading-room keys (invert, reset, presets);
the thick slab (MIP / MinIP) on the demo-like chest phantom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from medviewer.core import synthetic as syn
from medviewer.core.dicom.volume import Volume, load_series
from medviewer.core.display import CT_PRESETS, Window, default_window, to_display
from medviewer.ui.viewing.slice_view import SliceView
from medviewer.ui.viewing.viewer import PRESET_KEYS, ViewerPanel

WAIT_MS = 30_000  # generous: costs nothing when the event comes early (a shared 2-core CI)


def loop(frame_rate: float | None, frames: int = 6) -> Volume:
    voxels = np.arange(frames * 16 * 16, dtype=np.uint8).reshape(frames, 16, 16)
    return Volume(voxels=voxels, affine=np.eye(4), modality="US", frame_rate=frame_rate)


@pytest.fixture
def panel(qtbot) -> ViewerPanel:
    panel = ViewerPanel()
    qtbot.addWidget(panel)
    return panel


@pytest.mark.parametrize("rate, shown", [(30.0, 30), (24.6, 25), (250.0, 60), (0.4, 1)])
def test_fps_follows_the_header_rate_clamped(panel: ViewerPanel, rate: float, shown: int):
    panel.fps_spin.setValue(7)
    panel.document.set_volume(loop(rate))
    assert panel.fps_spin.value() == shown
    panel.set_cine(True)
    assert panel.cine_timer.interval() == round(1000 / shown)
    panel.set_cine(False)


def test_a_volume_without_a_rate_keeps_the_readers_choice(panel: ViewerPanel):
    panel.document.set_volume(loop(30.0))
    panel.fps_spin.setValue(12)  # the reader slows it down
    panel.document.set_volume(loop(None))
    assert panel.fps_spin.value() == 12


def test_bundled_ultrasound_loop_plays_at_its_frame_time(panel: ViewerPanel, qtbot):
    path = Path(pydicom.__file__).parent / "data" / "test_files" / "examples_ybr_color.dcm"
    frame_time = float(pydicom.dcmread(path, stop_before_pixels=True).FrameTime)  # ms
    panel.fps_spin.setValue(5)
    panel.document.set_volume(load_series(path))
    assert panel.fps_spin.value() == round(1000 / frame_time)
    first = panel.document.slice_index
    panel.cine_action.setChecked(True)
    assert panel.cine_timer.interval() == round(1000 / panel.fps_spin.value())
    qtbot.waitUntil(lambda: panel.document.slice_index != first, timeout=WAIT_MS)  # it plays
    panel.cine_action.setChecked(False)


# ------------------------------------------------------------- reading-room keys: I, R, 0, F2..F7
# A CT with a known pattern: 20 HU tissue and a 1000 HU square on slice 2, 0.5 mm pixels.
TISSUE, SQUARE = 20, 1000
HEADER = Window(60, 360, "SOFT TISSUE")


def ct(**kw) -> Volume:
    voxels = np.full((4, 40, 32), TISSUE, np.int16)
    voxels[2, 10:20, 8:16] = SQUARE
    kw.setdefault("modality", "CT")
    kw.setdefault("windows", [HEADER])
    return Volume(voxels=voxels, affine=np.diag([0.5, 0.5, 2.5, 1.0]), **kw)


def grab_grey(widget) -> np.ndarray:
    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_Grayscale8)
    bits = np.frombuffer(image.constBits(), np.uint8)
    return bits.reshape(image.height(), image.bytesPerLine())[:, : image.width()].copy()


def screen_grey(view: SliceView, col: float, row: float) -> int:
    """Grey on screen at image pixel (col, row)."""
    QApplication.processEvents()
    scene = view.view_box.mapViewToScene(view.pixel_to_view(col + 0.5, row + 0.5))
    pos = view.graphics.mapFromScene(scene)
    return int(grab_grey(view)[pos.y(), pos.x()])


@pytest.fixture
def shown(qtbot) -> ViewerPanel:
    """A panel on screen with the CT loaded, on the square's slice, keys going to the view."""
    panel = ViewerPanel()
    qtbot.addWidget(panel)
    panel.resize(700, 600)
    panel.show()
    qtbot.waitExposed(panel, timeout=WAIT_MS)
    panel.document.set_volume(ct())
    panel.document.set_slice(2)
    panel.single_view.setFocus()
    qtbot.waitUntil(panel.single_view.hasFocus, timeout=WAIT_MS)
    return panel


def test_invert_key_flips_the_rendered_grey_not_the_values(shown: ViewerPanel, qtbot):
    view, doc = shown.single_view, shown.document
    before, tissue_on_screen = view.displayed.copy(), screen_grey(view, 25, 30)
    qtbot.keyClick(view, Qt.Key.Key_I)
    assert doc.display_inverted and shown.invert_action.isChecked()
    assert np.array_equal(view.displayed, 255 - before)
    assert screen_grey(view, 25, 30) == pytest.approx(255 - tissue_on_screen, abs=1)
    assert screen_grey(view, 10, 12) == 0  # the bright square is black
    assert doc.value_at(10, 12) == SQUARE  # the modality value is untouched
    assert "Inverted" in view.overlays["bottom_left"].text()
    shown.invert_action.trigger()  # the toolbar button turns it off again
    assert not doc.display_inverted and np.array_equal(view.displayed, before)


def test_invert_on_monochrome1_shows_it_as_stored(qtbot):
    panel = ViewerPanel()
    qtbot.addWidget(panel)
    panel.document.set_volume(ct(photometric="MONOCHROME1"), window=Window(500, 1000))
    panel.document.set_slice(2)
    view = panel.single_view
    assert view.displayed[12, 10] == 0  # MONOCHROME1: the high value shows dark
    panel.set_inverted(True)
    assert view.displayed[12, 10] == 255 and panel.document.invert is False  # XOR


def test_reset_key_restores_window_zoom_pan_and_invert_but_keeps_measurements(shown, qtbot):
    view, doc = shown.single_view, shown.document
    fitted = view.view_box.viewRange()
    ruler = view.measurements.add_distance((2, 2), (12, 2))
    qtbot.keyClick(view, Qt.Key.Key_F4)
    qtbot.keyClick(view, Qt.Key.Key_I)
    view.zoom_by(3.0)
    view.view_box.translateBy(x=4.0, y=-3.0)
    assert doc.window != HEADER and view.view_box.viewRange() != fitted
    qtbot.keyClick(view, Qt.Key.Key_R)
    assert doc.window == HEADER and not doc.display_inverted
    assert not shown.invert_action.isChecked()
    assert np.allclose(view.view_box.viewRange(), fitted, atol=1e-6)
    assert view.measurements.items == [ruler]  # the reader's measurements stay
    doc.set_window(Window(0, 50))
    shown.reset_action.trigger()  # the toolbar button does the same
    assert doc.window == HEADER


def test_reset_without_a_header_window_goes_to_the_default(qtbot):
    panel = ViewerPanel()
    qtbot.addWidget(panel)
    volume = ct(windows=[])
    panel.document.set_volume(volume)
    opened = panel.document.window
    panel.document.apply_preset("bone")
    panel.reset_view()
    assert panel.document.window == opened == default_window(volume, [])


def test_function_keys_apply_ct_presets_in_the_order_the_combo_shows(shown, qtbot):
    view, doc, combo = shown.single_view, shown.document, shown.preset_combo
    assert set(PRESET_KEYS.values()) <= set(CT_PRESETS)  # every key names a real preset
    greys = {}
    for key, name in PRESET_KEYS.items():
        qtbot.keyClick(view, getattr(Qt.Key, f"Key_{key}"))
        assert doc.window == CT_PRESETS[name]
        label = combo.currentText()
        assert label.startswith(f"{name.capitalize()} ({key})")
        assert f"key {key}" in combo.itemData(combo.currentIndex(), Qt.ItemDataRole.ToolTipRole)
        assert key in combo.toolTip()
        expected = to_display(np.array([[TISSUE]], np.int16), CT_PRESETS[name])[0, 0]
        assert view.displayed[30, 25] == expected
        greys[name] = screen_grey(view, 25, 30)
    assert greys["lung"] > 200 > greys["bone"]  # 20 HU: near white on lung, dark on bone
    qtbot.keyClick(view, Qt.Key.Key_0)
    assert doc.window == HEADER
    assert combo.currentText().startswith("Header 1: SOFT TISSUE (0)")


def test_ct_preset_keys_leave_an_mr_alone(qtbot):
    panel = ViewerPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.document.set_volume(ct(modality="MR", windows=[]))
    panel.single_view.setFocus()
    qtbot.waitUntil(panel.single_view.hasFocus, timeout=WAIT_MS)
    window = panel.document.window
    with qtbot.waitSignal(panel.sigStatusMessage, timeout=WAIT_MS) as said:
        qtbot.keyClick(panel.single_view, Qt.Key.Key_F4)
    assert panel.document.window == window and "CT" in said.args[0]
    labels = [panel.preset_combo.itemText(i) for i in range(panel.preset_combo.count())]
    assert not any("(F" in label for label in labels)


def test_a_new_series_starts_not_inverted(shown: ViewerPanel):
    shown.set_inverted(True)
    shown.document.set_volume(ct())
    assert not shown.document.display_inverted and not shown.invert_action.isChecked()


def test_the_active_view_is_the_one_last_focused_and_on_screen(shown: ViewerPanel, qtbot):
    assert shown.active_view() is shown.single_view
    shown.document.set_layout("mpr")
    coronal = shown.mpr_view.views["coronal"]
    coronal.setFocus()
    qtbot.waitUntil(coronal.hasFocus, timeout=WAIT_MS)
    assert shown.active_view() is coronal
    shown.document.set_layout("1x1")  # the coronal view is off screen now
    assert shown.active_view() is shown.single_view


# ------------------------------------------------------------------------- thick slab (MIP)
# The demo's chest CT phantom, smaller: 2.5 mm slices, so a 10 mm MIP is 5 images (k +- 2).
PHANTOM_SHAPE, PHANTOM_SPACING = (48, 160, 160), (2.5, 2.2, 2.2)


@pytest.fixture(scope="module")
def phantom() -> tuple[Volume, dict]:
    hu, truth = syn.ct_chest_phantom(PHANTOM_SHAPE, PHANTOM_SPACING, seed=1)
    affine = np.diag([PHANTOM_SPACING[2], PHANTOM_SPACING[1], PHANTOM_SPACING[0], 1.0])
    nodule = next(n for n in truth["nodules"] if n["label"] == "LUL 10 mm")
    return Volume(voxels=hu, affine=affine, modality="CT"), nodule


def _beside_the_nodule(volume: Volume, nodule: dict) -> tuple[int, int, int]:
    """(slice 2 images from the nodule's centre where the nodule is not cut, row, column)."""
    centre, row, col = (int(round(v)) for v in nodule["center_voxel"])
    k = next(k for k in (centre - 2, centre + 2) if volume.voxels[k, row, col] < -500)
    return k, row, col


def test_mip_10_mm_shows_a_nodule_two_images_from_its_centre(shown: ViewerPanel, phantom):
    volume, nodule = phantom
    doc, view = shown.document, shown.single_view
    doc.set_volume(volume, window=CT_PRESETS["lung"])
    k, row, col = _beside_the_nodule(volume, nodule)
    doc.set_slice(k)
    plain = view.displayed.copy()
    assert plain[row, col] < 128  # lung grey: the nodule is not on this image
    mip_index = shown.slab_combo.findData("mip")
    shown.slab_combo.setCurrentIndex(mip_index)
    shown.slab_combo.activated.emit(mip_index)
    shown.slab_spin.setValue(10.0)
    assert (doc.slab_mode, doc.slab_mm, doc.slab_half_width()) == ("mip", 10.0, 2)
    mip = view.displayed
    assert not np.array_equal(mip, plain)
    assert mip[row, col] > 200  # the nodule's 50 HU, near white in the lung window
    expected = to_display(volume.voxels[k - 2: k + 3].max(axis=0), CT_PRESETS["lung"])
    np.testing.assert_array_equal(mip, expected)
    # the thickness really covered, 5 images x 2.5 mm, not the 10 mm asked for
    assert "MIP 12.5 mm (5 images)" in view.overlays["top_right"].text()
    shown.set_slab("off")
    np.testing.assert_array_equal(view.displayed, plain)


def test_readout_and_measurements_read_the_slab(shown: ViewerPanel, phantom):
    volume, nodule = phantom
    doc, view = shown.document, shown.single_view
    doc.set_volume(volume, window=CT_PRESETS["lung"])
    k, row, col = _beside_the_nodule(volume, nodule)
    doc.set_slice(k)
    roi = view.measurements.add_area("rect", (col - 3, row - 3), (col + 4, row + 4))
    assert roi.stats["max"] < -500  # only lung on this image
    shown.set_slab("mip", 10.0)
    slab_max = volume.voxels[k - 2: k + 3, row - 3: row + 4, col - 3: col + 4].max()
    assert roi.stats["max"] == slab_max and "mean" in roi.text()
    QApplication.processEvents()
    scene = view.view_box.mapViewToScene(view.pixel_to_view(col + 0.5, row + 0.5))
    readout = view.cursor_info(scene)
    value = volume.voxels[k - 2: k + 3, row, col].max()
    assert f"MIP value {value:g} HU" in readout


def test_slab_applies_to_every_plane_with_its_own_spacing(shown: ViewerPanel, phantom):
    volume, _ = phantom
    doc = shown.document
    doc.set_volume(volume, window=CT_PRESETS["lung"])
    shown.set_slab("minip", 10.0)
    doc.set_layout("mpr")
    coronal = shown.mpr_view.views["coronal"]
    assert doc.slab_half_width("coronal") == 2  # 10 mm / 2.2 mm rows = 4.5 -> 5 images
    k = coronal.slice_index
    plane = doc.plane("coronal")
    expected = np.min([plane.image(volume.voxels, j) for j in range(k - 2, k + 3)], axis=0)
    np.testing.assert_array_equal(doc.frame("coronal"), expected)
    assert "MinIP 11.0 mm (5 images)" in coronal.overlays["top_right"].text()  # 5 x 2.2 mm
    doc.set_volume(volume)  # the reader's slab stays for the next series
    assert shown.slab_combo.currentData() == "minip" and doc.slab_on


def test_slab_box_stays_on_screen_when_the_tag_dock_is_wide(make_main_window, qtbot,
                                                            dicom_folder):
    """The mm box is never pushed into a toolbar's overflow menu by a wide dock."""
    from tests.ui.gui import _window

    win = _window(make_main_window, qtbot, dicom_folder)
    viewer = win.viewer
    for dock_width in (400, 800, 1000):
        win.resizeDocks([win.tags_dock], [dock_width], Qt.Orientation.Horizontal)
        qtbot.wait(50)
        for widget in (viewer.slab_combo, viewer.slab_spin):
            assert widget.isVisible(), (dock_width, widget)
            box = widget.geometry().translated(widget.parentWidget().mapTo(viewer, widget.pos())
                                               - widget.pos())
            assert viewer.rect().contains(box), (dock_width, box, viewer.rect())
    viewer.slab_spin.setValue(15.0)  # and it works from there
    assert win.document.slab_mm == 15.0
