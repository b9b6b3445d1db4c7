"""Text on the image: demographics, series facts, spacing honesty, the O switch, the MONOCHROME1
preview, and Help ▸ Keyboard Shortcuts against the keys the views really handle."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from medviewer.core import synthetic as syn
from medviewer.core.dicom import scan
from medviewer.core.dicom.volume import Volume, load_series
from medviewer.core.display import Window
from medviewer.ui.common.workers import load_series_task
from medviewer.ui.document.study import StudyDocument
from medviewer.ui.shell import shortcuts
from medviewer.ui.viewing import overlays
from medviewer.ui.viewing.slice_view import KEY_NAMES, VIEW_KEYS, SliceView
from medviewer.ui.viewing.viewer import (
    HEADER_WINDOW_KEY,
    INVERT_KEY,
    OVERLAY_KEY,
    PRESET_KEYS,
    RESET_KEY,
    ViewerPanel,
)
from tests.ui.conftest import write_series
from tests.ui.gui import _slice_view

README = Path(__file__).resolve().parents[3] / "README.md"
CHARSETS = Path(pydicom.__file__).parent / "data" / "charset_files"


@pytest.mark.parametrize("stored, shown", [
    ("DOE^JANE", "DOE, JANE"), ("DOE^JANE^MARIE^DR^PHD", "DOE, DR JANE MARIE PHD"),
    ("Yamada^Tarou=山田^太郎=やまだ^たろう", "Yamada, Tarou"), ("ANONYMOUS", "ANONYMOUS"),
    ("=山田^太郎", "山田, 太郎")])
def test_person_names_read_as_a_reader_writes_them(stored, shown):
    assert overlays.person_name(stored) == shown


@pytest.mark.parametrize("header, age", [
    ({"PatientAge": "066Y", "PatientBirthDate": "19000101", "StudyDate": "20240101"}, "66Y"),
    ({"PatientAge": "003M"}, "3M"),
    ({"PatientBirthDate": "19580417", "StudyDate": "20240311"}, "65Y"),  # before the birthday
    ({"PatientBirthDate": "19580417", "StudyDate": "20240417"}, "66Y"),
    ({"PatientBirthDate": "20230101", "StudyDate": "20240215"}, "13M"),
    ({"PatientBirthDate": "20240101", "StudyDate": "20240115"}, "14D"),
    ({"PatientBirthDate": "19580417"}, ""), ({"PatientAge": "bad", "StudyDate": "x"}, "")])
def test_age_from_the_header_or_the_birth_date(header, age):
    assert overlays.patient_age(header) == age


@pytest.fixture
def make_view(qtbot):
    def make(volume: Volume) -> SliceView:
        return _slice_view(qtbot, volume, size=(520, 440), fit=False)
    return make


def test_demographics_and_series_facts_of_a_loaded_series(make_view, tmp_path):
    folder = write_series(tmp_path / "ct", ("DOE^JANE", "P001"), "CT", 2, "Thorax 2.5mm", 4)
    view = make_view(load_series(folder))
    top_left = view.overlays["top_left"].text().splitlines()
    assert top_left == ["DOE, JANE", "ID P001", "F  54Y", "2024-01-02", "CHEST"]
    assert view.overlays["series"].text().splitlines() == ["CT  Se 2  Thorax 2.5mm",
                                                           "Thk 2.5 mm"]
    assert view.overlays["top_right"].text().startswith("Axial  2 / 4")  # 2nd from the top
    assert view.overlays["bottom_right"].text() == "0.70 x 0.70 mm"
    # the series block sits under the image lines, both at the right edge
    image, series = view.overlays["top_right"].geometry(), view.overlays["series"].geometry()
    assert series.top() >= image.bottom() and abs(series.right() - image.right()) <= 1


def test_names_in_other_character_sets_are_decoded(make_view):
    view = make_view(load_series(CHARSETS / "chrGerm.dcm"))
    assert view.overlays["top_left"].text().splitlines()[0] == "Äneas, Rüdiger"


def test_unknown_pixel_size_says_so_instead_of_one_millimetre(make_view):
    voxels = np.zeros((1, 20, 20), np.uint8)
    view = make_view(Volume(voxels=voxels, affine=np.eye(4), spacing_known=False))
    assert view.overlays["bottom_right"].text() == "no pixel spacing"


def test_long_header_text_is_elided_not_drawn_over_the_letters(make_view):
    volume = Volume(voxels=np.zeros((3, 40, 40), np.int16), affine=np.eye(4), modality="CT",
                    header={"PatientName": "VERYLONGFAMILYNAME" * 6 + "^JANE"})
    view = make_view(volume)
    name = view.overlays["top_left"]
    assert name.text().endswith("…") and name.geometry().right() < view.width() // 2


def _rgb(widget) -> np.ndarray:
    from PySide6.QtGui import QImage

    shot = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    rgb = np.frombuffer(shot.constBits(), np.uint8).reshape(shot.height(), shot.bytesPerLine())
    return rgb[:, : shot.width() * 3].reshape(shot.height(), shot.width(), 3).astype(int)


def _outline_share(rgb: np.ndarray) -> float:
    """Of the pixels touching the light text (pixels of the text's colour), the share that is
    not near-white: an outline round every glyph makes it 1, a one-sided shadow about half."""
    text = (rgb[..., 0] > 200) & (rgb[..., 1] > 200) & (rgb[..., 2] < 190)
    grown = text.copy()
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1)):
        grown |= np.roll(np.roll(text, dy, 0), dx, 1)
    ring = grown & ~text
    assert text.sum() > 20  # the text is drawn
    return float((rgb[ring].mean(axis=1) < 200).mean())


@pytest.mark.parametrize("hu, inverted", [(-1000, True), (1000, False)])
def test_overlay_text_is_outlined_so_it_reads_on_white(make_view, hu, inverted):
    """Air on an inverted CT, or bone, fills the view with white: the light text keeps a dark
    outline on every side of every glyph, so it reads there as on black (the one-pixel drop
    shadow it had left its top and left edges yellow on white)."""
    voxels = np.full((4, 64, 64), hu, np.int16)
    view = make_view(Volume(voxels=voxels, affine=np.eye(4), modality="CT",
                            header={"PatientName": "DOE^JANE", "PatientID": "P001"}))
    view.document.set_window(Window(40, 400))
    view.document.set_display_inverted(inverted)
    view.view_box.setRange(xRange=(20, 40), yRange=(20, 40), padding=0)  # the image fills it
    QApplication.processEvents()
    rgb = _rgb(view)
    for name in ("top_left", "bottom_left", "top_right", "left"):
        box = view.overlays[name].geometry()
        inside = rgb[box.top():box.bottom() + 1, box.left():box.right() + 1]
        assert inside[0, 0].min() > 240  # white image around the text
        assert _outline_share(inside) > 0.9, name
        label = view.overlays[name]
        assert label.colour.lightness() > 150 and label.outline.lightness() < 40


def test_overlay_text_drawn_is_the_text_of_the_image_shown(make_view):
    """The labels draw from a cached picture (scrolling repaints them on every image): the
    picture follows the text, as a label drawing that text from scratch draws it."""
    voxels = np.zeros((12, 64, 64), np.int16)
    view = make_view(Volume(voxels=voxels, affine=np.eye(4), modality="CT"))
    label = view.overlays["top_right"]
    before, text_before = label.grab().toImage(), label.text()
    view.document.set_slice(9)
    QApplication.processEvents()
    assert label.text() != text_before
    after = label.grab().toImage()
    fresh = overlays.OutlinedLabel(view, overlays.TEXT_COLOUR, size_px=11)
    fresh.setAlignment(label.alignment())
    fresh.setText(label.text())
    fresh.resize(label.size())
    assert after != before and after == fresh.grab().toImage()


def test_labels_after_scrolling_are_as_a_full_rewrite_places_them(make_view):
    """A scroll rewrites and re-places only the labels whose text changed; what is on screen
    is what rewriting and placing every label from scratch gives, series lines under the image
    lines included (a thick slab adds an image line, so they move down)."""
    voxels = np.zeros((30, 64, 64), np.int16)
    view = make_view(Volume(voxels=voxels, affine=np.eye(4), modality="CT",
                            header={"PatientName": "DOE^JANE", "SeriesNumber": "4"}))
    doc = view.document

    def shown() -> dict:
        return {name: (label.text(), label.geometry().getRect(), label.isVisible())
                for name, label in view.overlays.items()}

    for change in (lambda: doc.set_slice(7), lambda: doc.set_window(Window(10, 300)),
                   lambda: doc.set_slab("mip", 5.0), lambda: doc.set_slice(20),
                   lambda: doc.set_slab("off"), lambda: doc.set_slice(3)):
        change()
        QApplication.processEvents()
        scrolled = shown()
        view.overlay_text.update()
        view.overlay_text.place()
        assert shown() == scrolled
    series, lines = view.overlays["series"].geometry(), view.overlays["top_right"].geometry()
    assert series.top() == lines.bottom() + 1


# ------------------------------------------------------------------------- preview
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_preview_is_inverted_like_its_volume_and_names_the_patient(qtbot, tmp_path,
                                                                   task_context, photometric):
    path, _ = syn.write_chest_xray(tmp_path, size=64, photometric=photometric,
                                   PatientName="ROE^RICHARD", PatientID="P002")
    (series,) = scan(tmp_path, cache=False).all_series()
    ctx = task_context
    volume = load_series_task(ctx, series)
    (preview,) = ctx.partials
    assert preview.photometric == photometric and preview.header["PatientID"] == "P002"
    doc = StudyDocument()
    view = SliceView(doc)
    qtbot.addWidget(view)
    preview.show_on(doc)
    on_preview = view.displayed.copy()
    assert doc.invert == (photometric == "MONOCHROME1")
    assert view.overlays["top_left"].text().startswith("ROE, RICHARD\nID P002")
    doc.set_volume(volume)
    np.testing.assert_array_equal(view.displayed, on_preview)  # no flash of a negative


# ------------------------------------------------------------------------- the O switch
def test_o_hides_all_text_for_every_view_and_the_session(qtbot, tmp_path):
    panel = ViewerPanel()
    qtbot.addWidget(panel)
    panel.resize(800, 700)
    panel.show()
    qtbot.waitExposed(panel)
    folder = write_series(tmp_path / "ct", ("DOE^JANE", "P001"), "CT", 2, "Thorax", 6)
    panel.document.set_volume(load_series(folder))
    panel.document.set_layout("mpr")
    views = panel.mpr_view.slice_views()
    assert all(v.overlays["top_left"].isVisible() for v in views)
    views[0].setFocus()
    qtbot.waitUntil(views[0].hasFocus)
    qtbot.keyClick(views[0], Qt.Key.Key_O)
    labels = [label for v in [panel.single_view, *views] for label in v.overlays.values()]
    assert not panel.document.overlays_visible and not any(x.isVisible() for x in labels)
    assert not panel.overlays_action.isChecked()
    panel.document.set_volume(load_series(folder))  # another series: still hidden
    panel.document.set_layout("1x1")
    assert not panel.single_view.overlays["top_right"].isVisible()
    qtbot.keyClick(panel.single_view, Qt.Key.Key_O)
    assert panel.single_view.overlays["top_left"].isVisible()


def test_o_hides_the_measurement_labels_too_and_keeps_the_shapes(make_main_window, qtbot,
                                                                 dicom_folder):
    from tests.ui.gui import _drag, _window

    win = _window(make_main_window, qtbot, dicom_folder)
    view = win.viewer.single_view
    win.viewer.set_tool("distance")
    _drag(view, [(4, 4), (12, 10), (20, 20)])
    (ruler,) = view.measurements.items
    assert ruler.label.isVisible() and "mm" in ruler.label.toPlainText()
    view.setFocus()
    qtbot.waitUntil(view.hasFocus)
    qtbot.keyClick(view, Qt.Key.Key_O)
    assert not view.overlays["top_left"].isVisible()
    assert not ruler.label.isVisible() and ruler.roi.isVisible()  # the line stays, no text
    qtbot.keyClick(view, Qt.Key.Key_Down)  # away and back: still no text
    qtbot.keyClick(view, Qt.Key.Key_Up)
    assert ruler.roi.isVisible() and not ruler.label.isVisible()
    qtbot.keyClick(view, Qt.Key.Key_O)
    assert ruler.label.isVisible() and view.overlays["top_left"].isVisible()


# ------------------------------------------------------------------------- shortcuts
def _tokens(text: str) -> set[str]:
    return set(re.split(r"[\s,;:/()\"]+", text))


def test_shortcut_table_lists_every_key_the_views_and_panel_handle():
    handled = {KEY_NAMES[key] for key in VIEW_KEYS}
    handled |= {HEADER_WINDOW_KEY, INVERT_KEY, RESET_KEY, OVERLAY_KEY, *PRESET_KEYS}
    assert handled <= shortcuts.listed_keys(), handled - shortcuts.listed_keys()
    for control in shortcuts.CONTROLS:  # each listed key really is in the text shown
        assert set(control.keys) <= _tokens(control.how), control


def test_readme_controls_table_is_the_same_table():
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index("| action | how |")
    rows = lines[start: start + len(shortcuts.CONTROLS) + 3]
    assert rows[:-1] == shortcuts.markdown_rows() and not rows[-1].startswith("|")


def test_help_menu_opens_the_shortcuts_without_blocking(make_main_window, qtbot):
    window = make_main_window()
    help_menu = next(a.menu() for a in window.menuBar().actions() if "Help" in a.text())
    action = next(a for a in help_menu.actions() if "Keyboard Shortcuts" in a.text())
    action.trigger()
    dialog = window.shortcuts_dialog
    qtbot.waitUntil(dialog.isVisible)
    assert not dialog.isModal()
    assert dialog.rows() == [(c.action, c.how) for c in shortcuts.CONTROLS]
    shown = " ".join(how for _, how in dialog.rows())
    assert {KEY_NAMES[key] for key in VIEW_KEYS} <= _tokens(shown)


def test_shortcut_rows_are_as_tall_as_their_wrapped_text(make_main_window, qtbot):
    """No huge empty rows: each row is the height of its text wrapped at the column's width
    on screen (plus at most a line), also after the dialog is resized."""
    from PySide6.QtCore import QRect

    window = make_main_window()
    window.show_shortcuts()
    dialog = window.shortcuts_dialog
    qtbot.waitExposed(dialog)
    table = dialog.table
    metrics = table.fontMetrics()

    def rows_fit() -> None:
        column = table.columnWidth(1)
        for row in range(table.rowCount()):
            text = table.item(row, 1).text()
            wrapped = metrics.boundingRect(QRect(0, 0, column - 8, 10_000),
                                           Qt.TextFlag.TextWordWrap, text).height()
            # slack: one line and the cell's margins (a one-line row is ~2 lines' height)
            assert metrics.height() <= table.rowHeight(row) <= wrapped + metrics.height() + 4

    for width in (760, 1100):
        dialog.resize(width, 560)
        qtbot.waitUntil(rows_fit, timeout=3000)  # the header lays rows out a moment later
