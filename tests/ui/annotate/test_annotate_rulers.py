"""Rulers and area ROIs are annotations too: drawing, moving or deleting one on the stack view
is an unsaved edit (one per drag), autosaved and recovered after a crash, asked about on close;
those read back from a saved SR or kept from an earlier visit are drawn again without becoming
an edit.

Mouse positions are slice pixels put on screen through the stack plane, as in
test_annotate_boxes.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from medviewer.core import synthetic as syn
from medviewer.core.annotations import Workspace
from medviewer.core.annotations.autosave import autosaved_lines
from medviewer.ui.annotate import autosave as annotate_autosave
from medviewer.ui.annotate.boxes import plane_to_slice, slice_to_plane
from medviewer.ui.annotate.measures import saved_measurements
from medviewer.ui.viewing.measure_tools import DistanceMeasurement
from tests.ui.gui import _drag, _open, _window

ENDS = [(10.0, 40.0), (50.0, 52.0)]  # slice pixels (x=column, y=row) a ruler is drawn between


@pytest.fixture
def window(make_main_window, qtbot, ct_series_dir):
    return _window(make_main_window, qtbot, ct_series_dir)


def _mouse(view, points) -> None:
    """A left drag through slice-pixel points on the stack view."""
    _drag(view, [slice_to_plane(view.plane, x, y) for x, y in points])


def _draw_ruler(win, points=(ENDS[0], (30.0, 44.0), (40.0, 50.0), ENDS[1])):
    """The Distance tool dragged through `points` (several moves); returns the ruler."""
    view = win.viewer.single_view
    win.viewer.set_tool("distance")
    before = list(view.measurements.items)
    _mouse(view, points)
    (ruler,) = [m for m in view.measurements.items if m not in before]
    assert isinstance(ruler, DistanceMeasurement)
    return ruler


def _rulers(win) -> list[DistanceMeasurement]:
    items = win.viewer.single_view.measurements.items
    return [m for m in items if isinstance(m, DistanceMeasurement)]


def _slice_ends(view, ruler) -> np.ndarray:
    return np.array([plane_to_slice(view.plane, *p) for p in ruler.endpoints_px()])


def _lines(doc) -> list:
    """The series' rulers as the SR would save them now."""
    return saved_measurements(doc.volume, doc.measurements)[0]


def _line_ends(line) -> np.ndarray:
    return np.array([line.start, line.end])


def test_a_drawn_ruler_is_one_unsaved_edit_moving_and_deleting_are_more(window, qtbot):
    win, doc = window, window.document
    view, k = win.viewer.single_view, doc.slice_index
    assert doc.annotation is None
    ruler = _draw_ruler(win)
    annotation = doc.annotation
    assert annotation is not None and annotation.dirty and annotation.edits == 1  # one drag
    (line,) = _lines(doc)
    assert line.slice_index == k and np.allclose(_line_ends(line), ENDS, atol=1.0)
    assert np.allclose(_line_ends(line), _slice_ends(view, ruler), atol=1e-6)
    assert line.length_mm == pytest.approx(ruler.length_mm, rel=1e-6)
    win.viewer.set_tool("rect")  # an area ROI is saved in the SR too: one more edit
    _mouse(view, [(5.0, 5.0), (15.0, 12.0), (20.0, 20.0)])
    assert len(view.measurements.items) == 2 and annotation.edits == 2
    view.measurements.remove(view.measurements.items[-1])
    assert annotation.edits == 3 and len(view.measurements.items) == 1
    win.viewer.set_tool("navigate")  # grab the ruler's far end and drag it down 10 rows
    _mouse(view, [ENDS[1], (50.0, 55.0), (50.0, 58.0), (50.0, 62.0)])
    assert annotation.edits == 4
    (moved,) = _lines(doc)
    assert np.allclose(_line_ends(moved), _slice_ends(view, ruler), atol=1e-6)
    assert moved.end[1] == pytest.approx(ENDS[1][1] + 10, abs=1.0)
    assert np.allclose(moved.start, line.start, atol=1e-6) and moved.uid == line.uid
    view.measurements.select(ruler)
    view.setFocus()
    QTest.keyClick(view, Qt.Key.Key_Delete)
    assert not _rulers(win) and _lines(doc) == [] and annotation.edits == 5
    assert annotation.dirty


def test_rulers_on_a_series_that_cannot_be_annotated_are_not_edits(window, monkeypatch):
    doc = window.document
    monkeypatch.setattr(doc, "can_annotate", lambda: "Label maps are drawn on 3D grey-level "
                        "series.")
    _draw_ruler(window)
    assert doc.annotation is None and window.annotate.safety.unsaved() == []


def test_an_autosaved_ruler_comes_back_in_a_new_window(fast_autosave, make_main_window, qtbot,
                                                        ct_series_dir, temp_settings):
    win = _window(make_main_window, qtbot, ct_series_dir)
    view, k = win.viewer.single_view, win.document.slice_index
    ends = _slice_ends(view, _draw_ruler(win))
    annotation, written = win.document.annotation, []
    win.annotate.safety.sigAutosaved.connect(written.append)
    qtbot.waitUntil(lambda: bool(written), timeout=5_000)
    assert annotation.autosaved_edits == annotation.edits == 1
    (line,) = autosaved_lines(written[-1])
    assert line.slice_index == k and np.allclose(_line_ends(line), ends, atol=1e-6)
    # "crash": the window goes without asking or saving; a new one with the same recent folders
    win.annotate.safety.ask_unsaved = lambda n: annotate_autosave.DISCARD
    win.annotate.safety._written.clear()  # a crash deletes nothing
    win.close()
    prompts = []
    new = make_main_window(settings=temp_settings())
    new.annotate.safety.prompt_recovery = prompts.append
    with qtbot.waitSignal(new.annotate.safety.sigRecoverable, timeout=5_000):
        new.show()
    with qtbot.waitSignal(new.annotate.safety.sigRecovered, timeout=10_000):
        new.annotate.safety.restore(prompts[0])
    doc, new_view = new.document, new.viewer.single_view
    (ruler,) = _rulers(new)
    assert ruler.k == new_view.plane.from_voxel(0, 0, k)[0]
    assert np.allclose(_slice_ends(new_view, ruler), ends, atol=0.5)
    assert doc.annotation.dirty and len(_lines(doc)) == 1
    assert np.allclose(_line_ends(_lines(doc)[0]), ends, atol=0.5)
    doc.set_slice(k)
    assert ruler.roi.isVisible()


def test_closing_with_only_a_ruler_asks_and_offscreen_autosaves_it(window):
    win, safety = window, window.annotate.safety
    ends = _slice_ends(win.viewer.single_view, _draw_ruler(win))
    asked = []
    safety.ask_unsaved = lambda n: asked.append(n) or annotate_autosave.CANCEL
    assert not win.close() and win.isVisible() and asked == [1]
    del safety.ask_unsaved  # back to the class's question: offscreen, it autosaves
    path = Workspace.for_series(win.document.volume).autosave_path
    assert not path.exists()
    assert win.close() and not win.isVisible()
    (line,) = autosaved_lines(path)
    assert np.allclose(_line_ends(line), ends, atol=1e-6)


def _two_rulers(win) -> list[np.ndarray]:
    """A ruler on the current slice and one on the next: their ends, in that order."""
    view, doc = win.viewer.single_view, win.document
    ends = [_slice_ends(view, _draw_ruler(win))]
    doc.set_slice(doc.slice_index + 1)
    ends.append(_slice_ends(view, _draw_ruler(win, [(5.0, 5.0), (20.0, 25.0), (30.0, 35.0)])))
    doc.set_slice(doc.slice_index - 1)
    assert doc.annotation.edits == 2 and len(_lines(doc)) == 2
    return ends


def _shown_ends(win, k: int) -> list[np.ndarray]:
    """The drawn rulers' ends; only those of slice k are visible."""
    view = win.viewer.single_view
    rulers = _rulers(win)
    assert [r.roi.isVisible() for r in rulers] == [r.k == k for r in rulers]
    return [_slice_ends(view, r) for r in rulers]


def test_rulers_come_back_from_a_parked_series_and_from_the_saved_sr_without_an_edit(
        window, qtbot, tmp_path, ct_series_dir):
    win, doc, ctl = window, window.document, window.annotate
    view, k = win.viewer.single_view, doc.slice_index
    ends = _two_rulers(win)
    voxels, _ = syn.ct_chest_phantom((6, 64, 64), (5.0, 5.5, 5.5), seed=4)
    syn.write_series(tmp_path / "other", voxels, spacing=(5.0, 5.5, 5.5), seed=9)
    _open(win, qtbot, tmp_path / "other")
    qtbot.waitUntil(lambda: "annotate-load" not in win.tasks.tasks, timeout=5_000)
    assert doc.annotation is None and not view.measurements.items  # cleared, not an edit
    _open(win, qtbot, ct_series_dir)  # unsaved edits parked in memory: the rulers are back
    doc.set_slice(k)
    assert np.allclose(_shown_ends(win, k), ends, atol=1e-6)
    assert doc.annotation.dirty and doc.annotation.edits == 2
    assert len(_lines(doc)) == 2
    with qtbot.waitSignal(ctl.sigSaved, timeout=10_000):
        ctl.save()
    assert not doc.annotation.dirty
    _open(win, qtbot, tmp_path / "other")
    qtbot.waitUntil(lambda: "annotate-load" not in win.tasks.tasks, timeout=5_000)
    with qtbot.waitSignal(ctl.sigLoaded, timeout=10_000):
        _open(win, qtbot, ct_series_dir)
    doc.set_slice(k)
    assert np.allclose(_shown_ends(win, k), ends, atol=1e-3)
    assert [r.k for r in _rulers(win)] == [view.plane.from_voxel(0, 0, j)[0] for j in (k, k + 1)]
    annotation = doc.annotation
    assert not annotation.dirty and annotation.edits == 0 and len(_lines(doc)) == 2
    assert win.annotate.safety.unsaved() == []
