"""The application shell: open, browse, select, load, remember, drop, fail gracefully."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage, QPalette
from PySide6.QtWidgets import QApplication, QFileDialog

from medviewer.core.dicom.model import Instance, Series
from medviewer.core.dicom.volume import Volume
from medviewer.ui.shell import main_window as main_window_mod
from medviewer.ui.shell.app import apply_dark_theme
from medviewer.ui.shell.file_actions import LAST_FOLDER_KEY
from medviewer.ui.viewing.volume_cache import VOLUME_CACHE_BYTES, VolumeCache

WAIT_MS = 30_000  # generous: costs nothing when the signal comes early (a shared 2-core CI)
DEMO_MS = 120_000  # generating the demo study: ~2 s on an idle machine


def _open(window, qtbot, path) -> object:
    with qtbot.waitSignal(window.scan_finished, timeout=WAIT_MS) as blocker:
        window.open_path(path)
    return blocker.args[0]


def _series_by_modality(result, modality: str) -> Series:
    return next(s for s in result.all_series() if s.modality == modality)


def test_open_folder_lists_patients_and_series(make_main_window, qtbot, dicom_folder):
    window = make_main_window()
    result = _open(window, qtbot, dicom_folder)
    tree = window.browser.tree
    names = sorted(tree.topLevelItem(i).text(0) for i in range(tree.topLevelItemCount()))
    assert [n for n in names if not n.startswith("Problems")] == [
        "DOE JANE (F)", "ROE RICHARD (F)"]
    assert len(window.browser.series_items()) == 3 == len(result.all_series())
    images = sorted(int(i.text(3)) for i in window.browser.series_items().values())
    assert images == [3, 4, 6]
    assert "2 patient(s), 3 series" in window.status_label.text()
    qtbot.waitUntil(lambda: not window.busy, timeout=WAIT_MS)
    assert window.progress_bar.isHidden() and window.cancel_button.isHidden()


def test_corrupt_file_listed_under_problems(make_main_window, qtbot, dicom_folder):
    window = make_main_window()
    result = _open(window, qtbot, dicom_folder)
    assert [Path(p.path).name for p in result.problems] == ["broken.dcm"]
    tree = window.browser.tree
    problems = tree.topLevelItem(tree.topLevelItemCount() - 1)
    assert problems.text(0) == "Problems (1)"
    child = problems.child(0)
    assert "broken.dcm" in child.text(0)
    assert result.problems[0].reason and result.problems[0].reason in child.toolTip(0)


def test_selecting_a_series_previews_then_loads(make_main_window, qtbot, dicom_folder):
    window = make_main_window()
    result = _open(window, qtbot, dicom_folder)
    ct = max((s for s in result.all_series() if s.modality == "CT"), key=lambda s: s.image_count)
    with qtbot.waitSignal(window.volume_loaded, timeout=WAIT_MS) as blocker:
        assert window.browser.select_series(ct.key)
    volume = blocker.args[0]
    assert volume.voxels.shape == (6, 32, 32)
    assert window.document.volume is volume
    qtbot.waitUntil(lambda: bool(window.tags.find_rows("PatientName")), timeout=WAIT_MS)
    assert Path(window.tags.path).parent == dicom_folder / "a"


def test_newer_selection_replaces_older_load(make_main_window, qtbot, dicom_folder):
    window = make_main_window()
    result = _open(window, qtbot, dicom_folder)
    ct, mr = _series_by_modality(result, "CT"), _series_by_modality(result, "MR")
    loaded = []
    window.volume_loaded.connect(loaded.append)
    with qtbot.waitSignal(window.volume_loaded, timeout=WAIT_MS,
                          check_params_cb=lambda v: v.modality == "MR"):
        window.open_series(ct)
        window.open_series(mr)
    qtbot.waitUntil(lambda: not window.busy, timeout=WAIT_MS)
    assert [v.modality for v in loaded] == ["MR"]  # the older load never reaches the screen
    assert window.current_series.key == mr.key


def test_broken_series_goes_to_status_bar(make_main_window, qtbot, tmp_path):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f")
    series = Series("9.9", modality="CT", instances=[Instance(path=str(bad), rows=8, columns=8)])
    window = make_main_window()
    with qtbot.waitSignal(window.load_failed, timeout=WAIT_MS):
        window.open_series(series)
    assert window.status_label.text().startswith("Could not load series")
    assert window.last_error == window.status_label.text()
    assert window.current_series is None  # the reader may try again
    qtbot.waitUntil(lambda: window.progress_bar.isHidden(), timeout=WAIT_MS)


def test_unexpected_error_in_a_slot_is_shown_not_raised(make_main_window, qtbot,
                                                        dicom_folder, monkeypatch):
    window = make_main_window()

    def explode(result):
        raise RuntimeError("tree exploded")

    monkeypatch.setattr(window.browser, "set_scan", explode)
    window.open_path(dicom_folder)
    qtbot.waitUntil(lambda: "tree exploded" in window.status_label.text(), timeout=WAIT_MS)
    assert "tree exploded" in window.last_error


def _slow_scan(ctx, paths, cache=True):
    """Stands in for a scan of a huge folder: reports progress until cancelled."""
    for done in range(10_000):
        if ctx.is_cancelled():
            break
        ctx.progress(done, 10_000)
        threading.Event().wait(0.005)
    raise RuntimeError("cancelled scans must not report errors")


def test_cancel_button_stops_a_scan(make_main_window, qtbot, monkeypatch, tmp_path):
    monkeypatch.setattr(main_window_mod, "scan_task", _slow_scan)
    window = make_main_window()
    window.show()
    window.open_path(tmp_path)
    qtbot.waitUntil(lambda: window.progress_bar.maximum() == 10_000, timeout=WAIT_MS)
    assert window.cancel_button.isVisible()
    qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.busy, timeout=WAIT_MS)
    assert window.status_label.text() == "Scan cancelled"
    assert window.progress_bar.isHidden() and window.last_error == ""


def test_close_cancels_and_waits_for_workers(make_main_window, qtbot, monkeypatch, tmp_path):
    monkeypatch.setattr(main_window_mod, "scan_task", _slow_scan)
    window = make_main_window()
    window.open_path(tmp_path)
    qtbot.waitUntil(lambda: window.pool.active == 1, timeout=WAIT_MS)
    worker = next(iter(window.tasks.tasks.values()))
    window.close()
    assert worker.done.is_set() and worker.is_cancelled


def test_recent_items_updated_and_persisted(make_main_window, qtbot, tmp_path, temp_settings):
    window = make_main_window()
    folders = [tmp_path / f"f{i}" for i in range(12)]
    for folder in folders:
        folder.mkdir()
        _open(window, qtbot, folder)
    _open(window, qtbot, folders[3])  # reopening moves it to the top, no duplicate
    expected = [str(folders[3])] + [str(f) for f in reversed(folders) if f != folders[3]][:9]
    assert window.recent_items() == expected
    assert window.settings.value(LAST_FOLDER_KEY) == str(folders[3])
    window.close()
    again = make_main_window(settings=temp_settings())
    assert again.recent_items() == expected
    assert [a.text() for a in again.recent_menu.actions()] == expected


def test_window_layout_is_remembered(make_main_window, qtbot, temp_settings):
    window = make_main_window()
    window.show()
    window.tags_dock.hide()
    window.resize(720, 530)
    window.close()
    again = make_main_window(settings=temp_settings())
    again.show()
    assert again.tags_dock.isHidden() and not again.browser_dock.isHidden()
    assert (again.width(), again.height()) == (720, 530)
    again.reset_layout()
    assert not again.tags_dock.isHidden()


def test_the_docks_start_wide_enough_for_their_tables_and_keep_the_readers_width(
        make_main_window, qtbot, temp_settings):
    """A first start gives the right-hand docks (tags, AI results, annotation tables) room;
    a width the reader chose comes back next time; Reset Layout gives the default again."""
    window = make_main_window()
    window.resize(1400, 900)
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: window.tags_dock.width() >= 360, timeout=2000)  # laid out
    assert window.ai.dock.width() >= 360
    assert window.browser_dock.width() >= 260
    window.resizeDocks([window.tags_dock], [300], Qt.Orientation.Horizontal)  # the reader
    qtbot.waitUntil(lambda: window.tags_dock.width() < 360, timeout=2000)
    chosen = window.tags_dock.width()
    window.close()
    again = make_main_window(settings=temp_settings())
    again.resize(1400, 900)
    again.show()
    qtbot.waitExposed(again)
    qtbot.wait(100)  # what a default sizing would need to show up
    assert again.tags_dock.width() == chosen
    again.reset_layout()
    qtbot.waitUntil(lambda: again.tags_dock.width() >= 360, timeout=2000)


def _drag_and_drop(window, urls: list[QUrl]) -> tuple[bool, bool]:
    """Drag enter then drop, as the platform sends them; returns whether each was accepted."""
    mime = QMimeData()
    mime.setUrls(urls)
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier)
    enter = QDragEnterEvent(QPoint(50, 50), *args)
    QApplication.sendEvent(window, enter)
    if not enter.isAccepted():
        return False, False
    drop = QDropEvent(QPointF(50, 50), *args)
    QApplication.sendEvent(window, drop)
    return True, drop.isAccepted()


def test_dropping_a_folder_opens_it(make_main_window, qtbot, dicom_folder):
    window = make_main_window()
    window.show()
    with qtbot.waitSignal(window.scan_finished, timeout=WAIT_MS) as blocker:
        assert _drag_and_drop(window, [QUrl.fromLocalFile(str(dicom_folder))]) == (True, True)
    assert len(blocker.args[0].all_series()) == 3
    assert window.recent_items()[0] == str(dicom_folder)


def test_dropping_a_web_link_is_refused(make_main_window):
    window = make_main_window()
    window.show()
    assert _drag_and_drop(window, [QUrl("https://example.org/a.dcm")]) == (False, False)
    assert not window.busy and window.recent_items() == []


def test_layout_menu_switches_document_layout(make_main_window):
    window = make_main_window()
    window.layout_actions["mpr"].trigger()
    assert window.document.layout == "mpr"
    window.layout_actions["1x1"].trigger()
    assert window.document.layout == "1x1" and window.layout_actions["1x1"].isChecked()


def test_dark_theme_survives_a_missing_style_sheet(qapp, tmp_path):
    saved = (qapp.style().name(), qapp.palette(), qapp.styleSheet())
    try:
        apply_dark_theme(qapp, resources=tmp_path / "nowhere")
        assert qapp.palette().color(QPalette.ColorRole.Window).lightness() < 60
        assert qapp.styleSheet() == saved[2]  # unchanged, and no exception
        apply_dark_theme(qapp)  # the real sheet is found next to the package
        assert "QTreeView" in qapp.styleSheet()
    finally:  # other tests render pixels: leave the application as it was
        qapp.setStyle(saved[0])
        qapp.setPalette(saved[1])
        qapp.setStyleSheet(saved[2])


def test_tag_panel_follows_the_slice_on_screen(make_main_window, qtbot, dicom_folder):
    window = make_main_window()
    ct = _series_by_modality(_open(window, qtbot, dicom_folder), "CT")
    with qtbot.waitSignal(window.volume_loaded, timeout=WAIT_MS) as blocker:
        window.open_series(ct)
    sources = blocker.args[0].sources
    window.document.set_slice(0)
    qtbot.waitUntil(lambda: window.tags.shown_path == sources[0].path, timeout=WAIT_MS)
    window.document.set_slice(len(sources) - 1)
    qtbot.waitUntil(lambda: window.tags.shown_path == sources[-1].path, timeout=WAIT_MS)
    (number,) = window.tags.find_rows("InstanceNumber")
    value = window.tags.proxy.index(number.row(), 3, number.parent()).data()
    assert value == str(pydicom.dcmread(sources[-1].path, stop_before_pixels=True).InstanceNumber)


def test_demo_study_opens_its_main_series(make_main_window, qtbot, tmp_path, monkeypatch):
    """The first start: the demo study is generated in a worker, scanned and its CT shown."""
    monkeypatch.setenv("MEDVIEWER_DATA_DIR", str(tmp_path / "data"))
    window = make_main_window()
    with qtbot.waitSignal(window.volume_loaded, timeout=DEMO_MS) as blocker:
        window.open_demo()
        assert window.busy  # generation runs in the background, the window stays live
    volume = blocker.args[0]
    largest = max(window.scan_result.all_series(), key=lambda s: s.image_count)
    assert volume.series.key == largest.key and volume.voxels.shape[0] == largest.image_count
    assert (tmp_path / "data").is_dir()


def test_keys_in_the_view_are_not_taken_by_menu_shortcuts(make_main_window, qtbot,
                                                          dicom_folder):
    """'1' is the view's 1:1 zoom; the layouts are on Ctrl+1 / Ctrl+2."""
    window = make_main_window()
    window.show()
    result = _open(window, qtbot, dicom_folder)
    ct = max((s for s in result.all_series() if s.modality == "CT"), key=lambda s: s.image_count)
    with qtbot.waitSignal(window.volume_loaded, timeout=WAIT_MS):
        window.open_series(ct)
    view = window.viewer.single_view
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_1)
    assert window.document.layout == "1x1"
    assert view.zoom() == pytest.approx(1.0, rel=0.02)
    qtbot.keyClick(view, Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)
    assert window.document.layout == "mpr"


# ------------------------------------------------------------------ reading-room conveniences
def _shown_with_ct(make_main_window, qtbot, dicom_folder):
    window = make_main_window()
    window.show()
    qtbot.waitExposed(window, timeout=WAIT_MS)
    result = _open(window, qtbot, dicom_folder)
    ct = max((s for s in result.all_series() if s.modality == "CT"), key=lambda s: s.image_count)
    with qtbot.waitSignal(window.volume_loaded, timeout=WAIT_MS):
        window.open_series(ct)
    return window, result


def _grey(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_Grayscale8)
    bits = np.frombuffer(image.constBits(), np.uint8)
    return bits.reshape(image.height(), image.bytesPerLine())[:, : image.width()].copy()


def test_export_view_writes_what_the_view_shows(make_main_window, qtbot, dicom_folder, tmp_path):
    window, _ = _shown_with_ct(make_main_window, qtbot, dicom_folder)
    view = window.viewer.single_view
    window.viewer.set_inverted(True)  # what is on screen, not the stored grey
    out = tmp_path / "exports"
    out.mkdir()
    written = window.export_view(out / "thorax")  # no suffix typed: .png added
    assert written == out / "thorax.png" and written.is_file()
    assert [p.name for p in out.iterdir()] == ["thorax.png"]  # no temporary file left
    saved = QImage(str(written))
    assert (saved.width(), saved.height()) == (view.width(), view.height())
    assert np.array_equal(_grey(saved), _grey(view.grab().toImage()))
    letter = view.overlays["left"].geometry()  # the overlays are in the picture
    assert _grey(saved)[letter.top():letter.bottom(), letter.left():letter.right()].max() > 150
    assert str(written) in window.status_label.text()
    assert not list(dicom_folder.rglob("*.png"))


def test_failed_export_leaves_nothing_and_says_so(make_main_window, qtbot, dicom_folder,
                                                  tmp_path, monkeypatch):
    window, _ = _shown_with_ct(make_main_window, qtbot, dicom_folder)

    def full_disk(src, dst):
        raise OSError("No space left on device")

    monkeypatch.setattr("medviewer.ui.viewing.export.os.replace", full_disk)
    assert window.export_view(tmp_path / "view.png") is None
    assert list(tmp_path.glob("*.png*")) == [] and list(tmp_path.glob(".view*")) == []
    assert "No space left" in window.last_error


def test_export_menu_asks_for_a_file_away_from_the_dicom_folder(make_main_window, qtbot,
                                                               dicom_folder, tmp_path,
                                                               monkeypatch):
    window, _ = _shown_with_ct(make_main_window, qtbot, dicom_folder)
    asked = []

    def ask(parent, title, start, filters):
        asked.append(start)
        return str(tmp_path / "chosen.png"), filters

    monkeypatch.setattr(QFileDialog, "getSaveFileName", ask)
    file_menu = window.menuBar().actions()[0].menu()
    action = next(a for a in file_menu.actions() if a.text().startswith("&Export View"))
    assert action.shortcut().toString() == "Ctrl+E"
    action.trigger()
    assert (tmp_path / "chosen.png").is_file()
    assert Path(asked[0]).suffix == ".png" and Path(asked[0]).parent != dicom_folder / "a"
    assert Path(asked[0]).name.startswith("CT_")
    action.trigger()  # the next export starts where the reader saved the last one
    assert Path(asked[1]).parent == tmp_path


def test_invert_and_reset_are_in_the_view_menu_and_keys_skip_the_tag_search(
        make_main_window, qtbot, dicom_folder):
    window, _ = _shown_with_ct(make_main_window, qtbot, dicom_folder)
    view_menu = window.menuBar().actions()[1].menu()
    assert window.viewer.invert_action in view_menu.actions()
    assert window.viewer.reset_action in view_menu.actions()
    window.tags.search_edit.setFocus()
    qtbot.waitUntil(window.tags.search_edit.hasFocus, timeout=WAIT_MS)
    qtbot.keyClicks(window.tags.search_edit, "ir")
    assert window.tags.search_edit.text() == "ir" and not window.document.display_inverted
    view = window.viewer.single_view
    view.setFocus()
    qtbot.waitUntil(view.hasFocus, timeout=WAIT_MS)
    qtbot.keyClick(view, Qt.Key.Key_I)
    assert window.document.display_inverted


def _count_loads(monkeypatch) -> list:
    started = []
    real = main_window_mod.load_series_task

    def counting(ctx, series):
        started.append(series.key)
        return real(ctx, series)

    monkeypatch.setattr(main_window_mod, "load_series_task", counting)
    return started


def test_going_back_to_a_series_is_instant(make_main_window, qtbot, dicom_folder, monkeypatch):
    started = _count_loads(monkeypatch)
    window = make_main_window()
    result = _open(window, qtbot, dicom_folder)
    ct, mr = _series_by_modality(result, "CT"), _series_by_modality(result, "MR")
    volumes = []
    for series in (ct, mr):
        with qtbot.waitSignal(window.volume_loaded, timeout=WAIT_MS) as blocker:
            window.open_series(series)
        volumes.append(blocker.args[0])
    qtbot.waitUntil(lambda: not window.busy, timeout=WAIT_MS)
    again = []
    window.volume_loaded.connect(again.append)
    window.open_series(ct)  # from memory: shown before this call returns, no event loop turn
    assert len(again) == 1 and again[0] is volumes[0] and window.document.volume is volumes[0]
    assert started == [ct.key, mr.key] and not window.busy
    qtbot.waitUntil(lambda: window.tags.shown_path is not None and Path(
        window.tags.shown_path).name in {Path(s.path).name for s in volumes[0].sources},
        timeout=WAIT_MS)  # the tag panel follows the series from memory too


def test_cache_hit_cancels_a_load_in_flight(make_main_window, qtbot, dicom_folder,
                                            monkeypatch):
    window = make_main_window()
    result = _open(window, qtbot, dicom_folder)
    ct, mr = _series_by_modality(result, "CT"), _series_by_modality(result, "MR")
    with qtbot.waitSignal(window.volume_loaded, timeout=WAIT_MS) as first:
        window.open_series(ct)
    loaded = []
    window.volume_loaded.connect(loaded.append)
    window.open_series(mr)  # starts decoding...
    window.open_series(ct)  # ...and the reader goes straight back
    qtbot.waitUntil(lambda: not window.busy, timeout=WAIT_MS)
    assert [v.modality for v in loaded] == ["CT"] and window.document.volume is first.args[0]
    assert window.current_series.key == ct.key and "cancelled" not in window.status_label.text()


def test_the_byte_budget_evicts_the_oldest_volume(make_main_window, qtbot, dicom_folder,
                                                  monkeypatch):
    started = _count_loads(monkeypatch)
    window = make_main_window()
    result = _open(window, qtbot, dicom_folder)
    ct, mr = _series_by_modality(result, "CT"), _series_by_modality(result, "MR")
    window.volume_cache.budget_bytes = 32 * 32 * 6 * 2  # one small CT of int16: nothing more
    for series in (ct, mr, ct):
        with qtbot.waitSignal(window.volume_loaded, timeout=WAIT_MS):
            window.open_series(series)
        qtbot.waitUntil(lambda: not window.busy, timeout=WAIT_MS)
    assert started == [ct.key, mr.key, ct.key]  # the CT was evicted when the MR came
    assert window.volume_cache.keys() == [ct.key]


def _volume(nbytes: int) -> Volume:
    return Volume(voxels=np.zeros(nbytes, np.uint8).reshape(1, 1, nbytes), affine=np.eye(4))


def test_volume_cache_is_lru_within_its_byte_budget():
    cache = VolumeCache(budget_bytes=300)
    a, b, c, d = (_volume(100) for _ in range(4))
    for key, volume in (("a", a), ("b", b), ("c", c)):
        cache.put(key, volume)
    assert cache.get("a") is a  # a is now the most recently used
    cache.put("d", d)
    assert cache.keys() == ["c", "a", "d"] and cache.total_bytes == 300  # b went first
    cache.put("huge", _volume(301))  # bigger than the budget: not kept, evicts nothing
    assert "huge" not in cache and len(cache) == 3
    cache.put("big", _volume(250))
    assert cache.keys() == ["big"] and cache.get("c") is None
    assert VOLUME_CACHE_BYTES == 1_500_000_000


def test_open_menu_entries_scan_what_the_dialogs_return(make_main_window, qtbot, monkeypatch,
                                                        pydicom_test_files, dicom_folder):
    """File ▸ Open Folder / Files / DICOMDIR, with the dialogs answered as a user would."""
    dicomdir = pydicom_test_files / "dicomdirtests" / "DICOMDIR"
    files = sorted(str(p) for p in (dicom_folder / "a").iterdir())
    dialog = QFileDialog
    monkeypatch.setattr(dialog, "getExistingDirectory", lambda *a, **k: str(dicom_folder))
    monkeypatch.setattr(dialog, "getOpenFileNames", lambda *a, **k: (files, ""))
    monkeypatch.setattr(dialog, "getOpenFileName", lambda *a, **k: (str(dicomdir), ""))
    window = make_main_window()
    file_menu = next(a.menu() for a in window.menuBar().actions() if "File" in a.text())
    entries = {a.text().replace("&", ""): a for a in file_menu.actions()}
    counts = {}
    for entry in ("Open Folder\u2026", "Open Files\u2026", "Open DICOMDIR\u2026"):
        with qtbot.waitSignal(window.scan_finished, timeout=WAIT_MS) as blocker:
            entries[entry].trigger()
        counts[entry] = sum(s.image_count for s in blocker.args[0].all_series())
    assert counts["Open Files\u2026"] == len(files) < counts["Open Folder\u2026"]
    assert counts["Open DICOMDIR\u2026"] >= 20  # the images the DICOMDIR lists
    assert window.recent_items()[0] == str(dicomdir)
