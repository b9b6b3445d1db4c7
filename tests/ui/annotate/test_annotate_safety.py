"""Never losing an edit: autosave, recovery after a crash, the close question, box review."""

from __future__ import annotations

import numpy as np

from medviewer.core.annotations import ACCEPTED, PROPOSED, REJECTED, AnnotatedBox, load_autosave
from medviewer.ui.annotate import autosave as annotate_autosave
from tests.ui.gui import RADIUS, _paint, _window


def _painted(win) -> np.ndarray:
    ctl = win.annotate
    win.document.add_label("lesion")
    ctl.set_tool("brush")
    ctl.set_brush(radius_mm=RADIUS)
    _, after = _paint(win, [(20, 20), (40, 40)])
    assert after.any()
    return after


def test_autosave_fires_and_a_new_window_recovers_it(fast_autosave, make_main_window, qtbot,
                                                      ct_series_dir, temp_settings):
    win = _window(make_main_window, qtbot, ct_series_dir)
    painted = _painted(win)
    annotation, written = win.document.annotation, []
    win.annotate.safety.sigAutosaved.connect(written.append)
    qtbot.waitUntil(lambda: annotation.autosaved_edits == annotation.edits, timeout=5_000)
    qtbot.waitUntil(lambda: bool(written) and np.array_equal(
        load_autosave(written[-1], win.document.volume)[0].array, painted), timeout=5_000)
    path = written[-1]
    labelmap, _ = load_autosave(path, win.document.volume)
    assert [lab.name for lab in labelmap.table] == ["lesion"]
    assert not win.annotate.safety.autosave()  # nothing new since: no second write
    # "crash": the window goes without asking or saving; a new one with the same recent folders
    win.annotate.safety.ask_unsaved = lambda n: annotate_autosave.DISCARD
    win.annotate.safety._written.clear()  # a crash deletes nothing
    win.close()
    assert path.is_file()
    prompts = []
    new = make_main_window(settings=temp_settings())
    new.annotate.safety.prompt_recovery = prompts.append
    with qtbot.waitSignal(new.annotate.safety.sigRecoverable, timeout=5_000) as found:
        new.show()
    assert [r.path for r in found.args[0]] == [path] and prompts
    assert new.annotate.recover_action.isEnabled()
    with qtbot.waitSignal(new.annotate.safety.sigRecovered, timeout=10_000):
        new.annotate.safety.restore(prompts[0])
    doc = new.document
    assert np.array_equal(doc.labelmap.array, painted) and doc.annotation.dirty
    new.annotate.undo()  # the recovery is one undo step
    assert not doc.labelmap.array.any()
    new.annotate.redo()
    with qtbot.waitSignal(new.annotate.sigSaved, timeout=10_000):
        new.annotate.save()
    assert not path.exists()  # a real save discards the autosave


def test_declining_recovery_discards_the_autosave(fast_autosave, make_main_window, qtbot,
                                                   ct_series_dir, temp_settings):
    win = _window(make_main_window, qtbot, ct_series_dir)
    _painted(win)
    with qtbot.waitSignal(win.annotate.safety.sigAutosaved, timeout=5_000) as saved:
        pass
    new = make_main_window(settings=temp_settings())
    prompts = []
    new.annotate.safety.prompt_recovery = prompts.append
    with qtbot.waitSignal(new.annotate.safety.sigRecoverable, timeout=5_000):
        new.show()
    new.annotate.safety.discard(prompts[0])
    assert not saved.args[0].exists() and not new.annotate.recover_action.isEnabled()


def test_close_with_edits_cancel_keeps_the_window_discard_closes(make_main_window, qtbot,
                                                                  ct_series_dir):
    win = _window(make_main_window, qtbot, ct_series_dir)
    _painted(win)
    asked = []
    safety = win.annotate.safety
    safety.ask_unsaved = lambda n: asked.append(n) or annotate_autosave.CANCEL
    assert not win.close() and win.isVisible() and asked == [1]
    safety.ask_unsaved = lambda n: annotate_autosave.DISCARD
    assert win.close() and not win.isVisible()


def test_close_with_save_writes_the_segmentation(make_main_window, qtbot, ct_series_dir):
    win = _window(make_main_window, qtbot, ct_series_dir)
    _painted(win)
    win.annotate.safety.ask_unsaved = lambda n: annotate_autosave.SAVE
    with qtbot.waitSignal(win.annotate.sigSaved, timeout=5_000) as saved:
        assert win.close()
    assert saved.args[0][0].is_file() and not win.document.annotation.dirty


def test_box_accept_reject_and_undo_in_order_with_strokes(make_main_window, qtbot,
                                                           ct_series_dir):
    win = _window(make_main_window, qtbot, ct_series_dir)
    doc, ctl = win.document, win.annotate
    k = doc.slice_index
    proposed = [AnnotatedBox(5, 5, 15, 15, k, "nodule", score, "model:det@1", PROPOSED)
                for score in (0.9, 0.4, 0.7)]
    annotation = doc.ensure_annotation()
    ctl.box_edit(lambda boxes: boxes.add(*proposed, description="accept AI boxes"))
    overlay = ctl.box_overlay
    assert len(overlay.items) == 3
    dashed = overlay.items[proposed[0].uid].pen().style()
    assert dashed.name == "DashLine"
    assert ctl.accept_box(proposed[0].uid) is not None
    assert overlay.items[proposed[0].uid].pen().style().name == "SolidLine"
    assert ctl.reject_box(proposed[1].uid) is not None
    assert proposed[1].uid not in overlay.items  # rejected: hidden
    painted = _painted(win)  # a stroke after the box edits
    review = ctl.panel.box_review
    assert review.table.rowCount() == 3
    ctl.accept_boxes_above(0.5)
    states = [b.state for b in annotation.boxes]
    assert states == [ACCEPTED, REJECTED, ACCEPTED]
    ctl.undo()  # accept above
    assert [b.state for b in annotation.boxes] == [ACCEPTED, REJECTED, PROPOSED]
    ctl.undo()  # the stroke
    assert not doc.labelmap.array.any()
    ctl.undo()  # the reject
    assert [b.state for b in annotation.boxes] == [ACCEPTED, PROPOSED, PROPOSED]
    ctl.redo()
    ctl.redo()
    assert np.array_equal(doc.labelmap.array, painted)
    assert [b.state for b in annotation.boxes] == [ACCEPTED, REJECTED, PROPOSED]


def test_a_stroke_made_while_the_save_is_written_stays_unsaved(make_main_window, qtbot,
                                                                ct_series_dir, monkeypatch):
    import threading

    from medviewer.ui.annotate import storage as annotate_storage

    release, real_save = threading.Event(), annotate_storage.save_task

    def slow_save(*args, **kwargs):
        release.wait(10)
        return real_save(*args, **kwargs)

    monkeypatch.setattr(annotate_storage, "save_task", slow_save)
    win = _window(make_main_window, qtbot, ct_series_dir)
    _painted(win)
    annotation = win.document.annotation
    with qtbot.waitSignal(win.annotate.sigSaved, timeout=10_000):
        assert win.annotate.save()
        _paint(win, [(10, 40), (12, 44)])  # the reader goes on while the worker writes
        release.set()
    assert annotation.dirty  # the second stroke is not in the saved files
    assert win.annotate.safety.needs_autosave(annotation)
