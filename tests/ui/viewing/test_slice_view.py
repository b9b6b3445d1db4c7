"""The slice view as a reader uses it: scroll, window/level, presets, measure, cine.

Every test builds a small CT volume with a known pattern (a 1000 HU square on slice 7 only, 20 HU
everywhere else, 0.5 x 0.5 x 2.5 mm voxels), drives the real widgets with key, wheel and mouse
events, and checks the document state and the pixels that were actually rendered.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from medviewer.core import synthetic as syn
from medviewer.core.dicom.model import Instance, Series
from medviewer.core.dicom.volume import SliceSource, Volume, load_series
from medviewer.core.display import CT_PRESETS, Window, to_display
from medviewer.ui.document.study import StudyDocument
from medviewer.ui.viewing.slice_view import SliceView
from medviewer.ui.viewing.viewer import ViewerPanel
from tests.ui.gui import _slice_view, _wheel

SLICES, ROWS, COLS = 12, 40, 32
SPACING = (2.5, 0.5, 0.5)  # slice, row, column mm
SQUARE = (7, slice(10, 20), slice(8, 16))  # slice 7, rows 10..19, columns 8..15
TISSUE_HU, SQUARE_HU = 20, 1000
WINDOW = Window(40, 400)


def make_volume(**kw) -> Volume:
    voxels = np.full((SLICES, ROWS, COLS), TISSUE_HU, np.int16)
    voxels[SQUARE] = SQUARE_HU
    affine = np.diag([SPACING[2], SPACING[1], SPACING[0], 1.0])
    affine[:3, 3] = (-8.0, -10.0, 100.0)
    kw.setdefault("modality", "CT")
    return Volume(voxels=voxels, affine=affine, description="Known pattern", **kw)


@pytest.fixture
def make_view(qtbot):
    def make(volume: Volume | None = None, plane: str = "stack") -> SliceView:
        return _slice_view(qtbot, volume or make_volume(), window=WINDOW, plane=plane)
    return make


def grab_grey(widget) -> np.ndarray:
    """The widget as rendered on screen, as a (h, w) grey array."""
    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_Grayscale8)
    ptr = np.frombuffer(image.constBits(), np.uint8)
    return ptr.reshape(image.height(), image.bytesPerLine())[:, : image.width()].copy()


def screen_pos(view: SliceView, col: float, row: float) -> QPoint:
    """Viewport pixel showing image pixel (col, row)."""
    scene = view.view_box.mapViewToScene(view.pixel_to_view(col, row))
    return view.graphics.mapFromScene(scene)


def send_drag(view: SliceView, button, start: QPoint, end: QPoint, steps: int = 6) -> None:
    """Press, move in steps with the button held, release: what a hand does."""
    viewport = view.graphics.viewport()

    def send(kind, pos, buttons):
        event = QMouseEvent(kind, QPointF(pos), QPointF(viewport.mapToGlobal(pos)), button,
                            buttons, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(viewport, event)

    send(QMouseEvent.Type.MouseButtonPress, start, button)
    for i in range(1, steps + 1):
        QTest.qWait(12)  # pyqtgraph drops moves closer than 10 ms (mouseRateLimit)
        send(QMouseEvent.Type.MouseMove, start + (end - start) * (i / steps), button)
    send(QMouseEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)
    QApplication.processEvents()


def bright_pixels(view: SliceView) -> int:
    QApplication.processEvents()
    return int((grab_grey(view) == 255).sum())


def test_keys_scroll_and_only_slice_7_shows_the_square(make_view, qtbot):
    """Head first (the PACS default): Home is the most cranial slice (the last index here,
    slices ascend towards the head), ↓ moves towards the feet."""
    view = make_view()
    qtbot.keyClick(view, Qt.Key.Key_Home)
    assert view.document.slice_index == SLICES - 1
    for _ in range(SLICES - 1 - 7):
        qtbot.keyClick(view, Qt.Key.Key_Down)
    assert view.document.slice_index == 7
    shown = view.displayed
    assert (shown[SQUARE[1:]] == 255).all() and (shown == 255).sum() == 10 * 8
    assert bright_pixels(view) > 100  # rendered on screen, magnified
    qtbot.keyClick(view, Qt.Key.Key_Up)  # one towards the head
    assert view.document.slice_index == 8 and bright_pixels(view) == 0
    for key, expected in ((Qt.Key.Key_PageDown, 0), (Qt.Key.Key_Home, SLICES - 1),
                          (Qt.Key.Key_End, 0), (Qt.Key.Key_PageUp, SLICES - 2)):
        qtbot.keyClick(view, key)
        assert view.document.slice_index == expected
    for k in range(SLICES):
        view.document.set_slice(k)
        assert (bright_pixels(view) > 0) == (k == 7)


def test_rendered_pixels_are_the_window_grey_drawn_without_conversion(make_view):
    """The image reaches Qt as RGB32 (its raster engine's own format: no conversion on every
    paint) and what is drawn is the window's grey: tissue, the bright square, the colour path
    left as it was."""
    view = make_view()
    view.document.set_overlays_visible(False)
    view.document.set_slice(7)
    QApplication.processEvents()
    assert view.image_item.qimage.format() == QImage.Format.Format_RGB32
    rgb = view.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    for (col, row), hu in (((12, 15), SQUARE_HU), ((25, 30), TISSUE_HU)):
        pos = screen_pos(view, col + 0.5, row + 0.5)
        grey = int(to_display(np.array([hu], np.int16), WINDOW)[0])
        assert rgb.pixelColor(pos).getRgb()[:3] == (grey, grey, grey)
    colour = np.zeros((1, ROWS, COLS, 3), np.uint8)
    colour[..., 0] = 200
    view = make_view(Volume(voxels=colour, affine=np.eye(4), photometric="RGB",
                            modality="XC", has_geometry=False))
    QApplication.processEvents()
    shot = view.grab().toImage()
    assert shot.pixelColor(screen_pos(view, 10.5, 10.5)).getRgb()[:3] == (200, 0, 0)


def test_wheel_scrolls_and_ctrl_wheel_zooms(make_view):
    view = make_view()
    view.document.set_slice(5)
    _wheel(view, -1)  # wheel down: one image towards the feet (lower z, lower index)
    assert view.document.slice_index == 4
    _wheel(view, 2)
    assert view.document.slice_index == 6
    zoom = view.zoom()
    _wheel(view, 1, Qt.KeyboardModifier.ControlModifier)
    assert view.zoom() > zoom * 1.1 and view.document.slice_index == 6


def test_right_drag_changes_window_and_rendered_grey(make_view):
    view = make_view()
    tissue = screen_pos(view, 25, 30)
    grey_before = grab_grey(view)[tissue.y(), tissue.x()]
    send_drag(view, Qt.MouseButton.RightButton, QPoint(200, 200), QPoint(300, 200))
    widened = view.document.window
    assert widened.width > WINDOW.width and widened.center == WINDOW.center
    send_drag(view, Qt.MouseButton.RightButton, QPoint(200, 200), QPoint(200, 260))
    assert view.document.window.center > WINDOW.center
    assert view.document.window.width == widened.width
    grey_after = grab_grey(view)[tissue.y(), tissue.x()]
    assert grey_after < grey_before  # a higher level shows 20 HU darker
    assert view.displayed[30, 25] == grey_after


def test_presets_change_window(make_view, qtbot):
    panel = ViewerPanel(StudyDocument())
    qtbot.addWidget(panel)
    panel.document.set_volume(make_volume(windows=[Window(60, 360, "SOFT TISSUE")]))
    labels = [panel.preset_combo.itemText(i) for i in range(panel.preset_combo.count())]
    assert any("SOFT TISSUE" in t for t in labels) and any(t.startswith("Lung") for t in labels)
    assert panel.document.window == Window(60, 360, "SOFT TISSUE")
    before = panel.single_view.displayed[30, 25]
    panel.document.apply_preset("lung")
    assert panel.document.window == CT_PRESETS["lung"]
    assert panel.single_view.displayed[30, 25] != before
    bone = next(i for i, t in enumerate(labels) if t.startswith("Bone"))
    panel.preset_combo.activated.emit(bone)
    assert panel.document.window == CT_PRESETS["bone"]


def test_ct_presets_only_for_ct():
    doc = StudyDocument()
    doc.set_volume(make_volume(modality="MR"))
    assert not any(name.lower() == "lung" for name in doc.presets())


def test_monochrome1_is_inverted_for_display_only(make_view):
    view = make_view(make_volume(photometric="MONOCHROME1"))
    view.document.set_slice(7)
    assert view.displayed[12, 10] == 0  # the bright square shows black
    assert view.document.value_at(10, 12) == SQUARE_HU  # the value is untouched


def test_colour_volume_shows_rgb_and_reads_triples(make_view):
    rgb = np.zeros((2, ROWS, COLS, 3), np.uint8)
    rgb[..., 0], rgb[1, 5, 6] = 200, (10, 20, 30)
    view = make_view(Volume(voxels=rgb, affine=np.eye(4), photometric="RGB", modality="XC",
                            has_geometry=False))
    view.document.set_slice(1)
    assert view.displayed.shape == (ROWS, COLS, 3)
    assert view.document.value_at(6, 5) == (10, 20, 30)
    assert view.overlays["left"].text() == ""  # no patient geometry: no invented letters
    assert "Image 2 / 2" in view.overlays["top_right"].text()


def test_cursor_readout_names_voxel_value_and_lps(make_view):
    view = make_view()
    view.document.set_slice(7)
    scene = view.view_box.mapViewToScene(view.pixel_to_view(10.5, 12.5))
    info = view.cursor_info(scene)
    assert "voxel (10, 12, 7)" in info and f"{SQUARE_HU} HU" in info
    x, y, z = -8.0 + 10 * SPACING[2], -10.0 + 12 * SPACING[1], 100.0 + 7 * SPACING[0]
    assert f"LPS ({x:.1f}, {y:.1f}, {z:.1f}) mm" in info  # the voxel centre, not the cursor


def test_orientation_letters_and_overlays(make_view):
    view = make_view()
    letters = {e: view.overlays[e].text() for e in ("left", "right", "top", "bottom")}
    assert letters == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    view.document.set_slice(3)  # 4th from the feet: image 9 counted from the head
    assert "9 / 12" in view.overlays["top_right"].text()
    assert "W 400  L 40" in view.overlays["bottom_left"].text()


def test_fit_and_actual_size(make_view):
    view = make_view()
    view.actual_size()
    assert view.zoom() == pytest.approx(1.0, rel=0.02)
    view.fit()
    assert view.zoom() == pytest.approx(min(view.view_box.width() / COLS,
                                            view.view_box.height() / ROWS), rel=0.02)


def test_distance_ruler_reads_mm(make_view):
    view = make_view()
    ruler = view.measurements.add_distance((5, 5), (15, 5))
    assert ruler.length_mm == pytest.approx(5.0)
    assert ruler.label.toPlainText() == "5.0 mm"


def test_distance_drawn_with_the_mouse(make_view):
    view = make_view()
    view.tools.choose("distance")
    send_drag(view, Qt.MouseButton.LeftButton, screen_pos(view, 4, 4), screen_pos(view, 24, 4))
    (ruler,) = view.measurements.items
    assert ruler.length_mm == pytest.approx(20 * SPACING[2], abs=0.3)


def test_rect_roi_statistics_and_live_update(make_view):
    view = make_view()
    view.document.set_slice(3)
    roi = view.measurements.add_area("rect", (20, 22), (30, 36))
    stats = roi.stats
    assert stats["mean"] == TISSUE_HU and stats["sd"] == pytest.approx(0.0)
    assert stats["area_mm2"] == pytest.approx(10 * 14 * 0.25)
    assert f"mean {TISSUE_HU:.1f} HU" in roi.label.toPlainText()
    view.document.set_slice(7)
    moved = view.measurements.add_area("ellipse", (6, 8), (18, 22))
    assert moved.stats["max"] == SQUARE_HU and moved.stats["min"] == TISSUE_HU
    moved.set_corners((8, 10), (16, 20))  # exactly the square: the label follows
    assert "mean 1000.0 HU" in moved.label.toPlainText()


def test_measurements_belong_to_their_slice_and_delete(make_view, qtbot):
    view = make_view()
    view.document.set_slice(2)
    ruler = view.measurements.add_distance((1, 1), (9, 9))
    view.document.set_slice(3)
    assert not ruler.roi.isVisible()
    view.document.set_slice(2)
    assert ruler.roi.isVisible()
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    assert view.measurements.items == []


def test_cine_advances_and_wraps(qtbot):
    panel = ViewerPanel()
    qtbot.addWidget(panel)
    panel.document.set_volume(make_volume())
    panel.document.set_slice(SLICES - 2)
    panel.fps_spin.setValue(50)
    panel.cine_action.setChecked(True)
    qtbot.waitUntil(lambda: panel.document.slice_index == 1, timeout=3000)
    panel.cine_action.setChecked(False)
    assert not panel.cine_timer.isActive()


def test_time_slider_only_for_4d_and_cine_steps_time(qtbot):
    panel = ViewerPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.document.set_volume(make_volume())
    assert not panel.time_slider.isVisible()
    base = make_volume()
    four_d = Volume(voxels=np.stack([base.voxels, base.voxels + 100]), affine=base.affine,
                    modality="CT")
    panel.document.set_volume(four_d, window=WINDOW)
    assert panel.time_slider.isVisible() and panel.time_slider.maximum() == 1
    grey_t0 = panel.single_view.displayed[30, 25]
    panel.cine_tick()
    assert panel.document.time_index == 1 and panel.time_slider.value() == 1
    assert panel.single_view.displayed[30, 25] > grey_t0


def test_preview_then_volume_keeps_slice(make_view):
    doc = StudyDocument()
    volume = make_volume()
    doc.set_preview(volume.voxels[7], None, WINDOW, 7, SLICES, affine=volume.affine)
    view = SliceView(doc)
    assert (view.displayed == 255).sum() == 80 and "loading" in view.overlays[
        "top_right"].text()
    doc.step(1)  # nothing else is decoded yet
    assert doc.slice_index == 7
    doc.set_volume(volume)
    assert doc.slice_index == 7 and doc.window == WINDOW
    view.deleteLater()


def test_document_logic_without_views():
    doc = StudyDocument()
    slices, crosshairs = [], []
    doc.sigSliceChanged.connect(slices.append)
    doc.sigCrosshairChanged.connect(crosshairs.append)
    sources = [SliceSource(f"/data/ct/{k:03d}.dcm") for k in range(SLICES)]
    doc.set_volume(make_volume(sources=sources))
    assert doc.slice_index == SLICES // 2 and doc.window.width > 0
    assert doc.current_source().path == f"/data/ct/{SLICES // 2:03d}.dcm"
    doc.set_slice(99)
    doc.step(-3)
    doc.set_slice(SLICES - 4)  # unchanged: no signal
    assert slices == [SLICES - 1, SLICES - 4] and doc.slice_index == SLICES - 4
    assert len(crosshairs) == 2 and crosshairs[-1][2] == SLICES - 4
    doc.set_slice(7)
    assert doc.value_at(10, 12) == SQUARE_HU and doc.value_at(0, 0) == TISSUE_HU
    assert doc.value_at(COLS, 0) is None
    doc.set_window(Window(0, -5))
    assert doc.window.width == 1.0  # a window is never narrower than one value
    with pytest.raises(KeyError):
        doc.apply_preset("no such preset")
    with pytest.raises(ValueError):
        doc.set_layout("4x4")


def edge_letters(view: SliceView) -> dict[str, str]:
    return {e: view.overlays[e].text() for e in ("left", "right", "top", "bottom")}


def test_projection_letters_come_from_patient_orientation(make_view):
    """A chest film ('L', 'F'): the right edge is the patient's left, the bottom the feet."""
    film = make_volume(modality="DX", has_geometry=False, patient_orientation=("L", "F"))
    view = make_view(film)
    assert edge_letters(view) == {"left": "R", "right": "L", "top": "H", "bottom": "F"}
    corner = view.overlays["top_right"].text()
    assert "Image 7 / 12" in corner and "Axial" not in corner and "Pos" not in corner
    lateral = make_view(make_volume(has_geometry=False, patient_orientation=("P", "FR")))
    assert edge_letters(lateral) == {"left": "A", "right": "P", "top": "HL", "bottom": "FR"}
    unknown = make_view(make_volume(has_geometry=False))
    assert set(edge_letters(unknown).values()) == {""}
    assert "Axial  6 / 12" in make_view().overlays["top_right"].text()  # head first


def test_loaded_chest_xray_reads_as_a_film(make_view, tmp_path):
    path, _ = syn.write_chest_xray(tmp_path, size=64)
    view = make_view(load_series(path))
    assert edge_letters(view) == {"left": "R", "right": "L", "top": "H", "bottom": "F"}
    assert view.overlays["top_right"].text() == "Image 1 / 1"


def test_preview_geometry_comes_from_the_series_first_instance(qtbot):
    volume, doc = make_volume(), StudyDocument()
    view = SliceView(doc)
    qtbot.addWidget(view)
    located = Series("1.2", instances=[Instance("/a.dcm", position=(0.0, 0.0, 0.0),
                                                orientation=(1, 0, 0, 0, 1, 0))])
    doc.set_preview(volume.voxels[7], located, WINDOW, 7, SLICES, affine=volume.affine)
    assert doc.has_geometry and edge_letters(view)["right"] == "L"
    assert "Pos" in view.overlays["top_right"].text()
    film = Series("1.3", instances=[Instance("/b.dcm")])
    doc.set_preview(volume.voxels[7], film, WINDOW, 0, 1, affine=volume.affine)
    assert not doc.has_geometry and set(edge_letters(view).values()) == {""}
    assert view.overlays["top_right"].text().startswith("Image 1 / 1")


def _corrupt_first_frame(path) -> None:
    """Overwrite the start of the RLE data (its segment header), leaving the header intact."""
    import pydicom
    from pydicom.encaps import generate_frames

    data = bytearray(path.read_bytes())
    at = data.find(next(generate_frames(pydicom.dcmread(path).PixelData, number_of_frames=1)))
    data[at:at + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))


def test_a_slice_that_failed_to_decode_says_so(make_view, tmp_path):
    from pydicom.uid import RLELossless

    voxels = np.random.default_rng(0).integers(-900, 1500, (5, 24, 24)).astype(np.int16)
    paths = syn.write_series(tmp_path, voxels, transfer_syntax=RLELossless)
    _corrupt_first_frame(paths[3])
    view = make_view(load_series(tmp_path))
    label = view.failure_label
    view.document.set_slice(1)
    assert not label.isVisible()
    view.document.set_slice(3)
    QApplication.processEvents()
    assert label.isVisible() and label.text().startswith("Image could not be decoded:")
    assert paths[3].name in label.text() and "corrupt" in label.text()
    assert (view.displayed == 0).all()  # blank as air, never garbage
    centre = label.geometry().center()
    assert abs(centre.x() - view.width() / 2) <= 2 and abs(centre.y() - view.height() / 2) <= 2
    shot = view.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    rgb = np.frombuffer(shot.constBits(), np.uint8).reshape(shot.height(), shot.bytesPerLine())
    rgb = rgb[:, : shot.width() * 3].reshape(shot.height(), shot.width(), 3).astype(int)
    box = label.geometry()
    inside = rgb[box.top():box.bottom(), box.left():box.right()]
    reddish = (inside[..., 0] > 150) & (inside[..., 0] > 2 * inside[..., 1])
    assert reddish.sum() > 100  # the message is drawn, in red, over the black image
    _wheel(view, -1)  # next image, towards the feet
    assert view.document.slice_index == 2 and not label.isVisible()
    assert view.displayed.any()
