"""Two MedViewer windows annotating the same series (issue 12.3b): the second save is refused
with a sentence, the first one's files stay as they were, the refused work stays in its
window and in the autosave, while the first window goes on saving."""

from __future__ import annotations

import numpy as np

from medviewer.core.annotations import Workspace, find_recoverable, load_autosave
from tests.ui.gui import RADIUS, _paint, _window


def _painted(win, path) -> np.ndarray:
    win.document.add_label("lesion")
    win.annotate.set_tool("brush")
    win.annotate.set_brush(radius_mm=RADIUS)
    _, after = _paint(win, path)
    assert after.any()
    return after


def test_the_second_window_saving_the_series_is_refused_and_loses_nothing(
        make_main_window, qtbot, ct_series_dir, temp_settings):
    first = _window(make_main_window, qtbot, ct_series_dir)
    theirs = _painted(first, [(20, 20), (40, 40)])
    second = _window(make_main_window, qtbot, ct_series_dir)  # both open the unsaved series
    mine = _painted(second, [(20, 40), (40, 60)])
    assert not np.array_equal(theirs, mine)
    with qtbot.waitSignal(first.annotate.sigSaved, timeout=15_000):
        first.annotate.save()
    ws = Workspace.for_series(first.document.volume)
    saved = {p.name: p.read_bytes() for p in ws.folder.iterdir() if p.suffix == ".dcm"}

    with qtbot.waitSignal(second.annotate.sigFailed, timeout=15_000) as failed:
        second.annotate.save()
    said = failed.args[0]
    assert "Another MedViewer window saved these annotations at" in said
    assert "reopen the series to see them" in said and "autosave" in said
    assert {p.name: p.read_bytes() for p in ws.folder.iterdir() if p.suffix == ".dcm"} == saved
    np.testing.assert_array_equal(ws.load_seg(second.document.volume)[0] > 0, theirs > 0)
    annotation = second.document.annotation
    assert annotation.dirty and np.array_equal(second.document.labelmap.array, mine)
    (refused,) = ws.folder.glob("autosave.refused-*.npz")
    kept, _ = load_autosave(refused, second.document.volume)
    np.testing.assert_array_equal(kept.array, mine)  # the refused work is on disk too

    # the first window saves again after more work: its base is the set it saved itself
    first.activateWindow()
    _, more = _paint(first, [(30, 50), (35, 55)])
    assert (more > 0).sum() > (theirs > 0).sum()
    with qtbot.waitSignal(first.annotate.sigSaved, timeout=15_000):
        first.annotate.save()
    np.testing.assert_array_equal(ws.load_seg(first.document.volume)[0] > 0, more > 0)
    assert refused.exists()  # no save of the other window deletes the refused work
    assert refused in [r.path for r in find_recoverable([ct_series_dir])]  # offered back

    # the next start offers the refused work; restored and saved, its copy goes
    second.annotate.safety.ask_unsaved = lambda n: "discard"
    second.close()
    later = make_main_window(settings=temp_settings())
    later.annotate.safety.prompt_recovery = lambda item: None
    later.resize(1300, 850)
    with qtbot.waitSignal(later.annotate.safety.sigRecoverable, timeout=10_000) as found:
        later.show()
    (item,) = [r for r in found.args[0] if r.path == refused]
    with qtbot.waitSignal(later.annotate.safety.sigRecovered, timeout=10_000):
        later.annotate.safety.restore(item)
    np.testing.assert_array_equal(later.document.labelmap.array, mine)
    with qtbot.waitSignal(later.annotate.sigSaved, timeout=15_000):
        later.annotate.save()
    assert not refused.exists()
    np.testing.assert_array_equal(ws.load_seg(later.document.volume)[0] > 0, mine > 0)
