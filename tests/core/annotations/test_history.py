"""History: stroke-level undo atoms that hold only the changed box, byte-exact undo / redo."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.core.annotations.history import History, box_voxels, mask_box, union_box
from medviewer.core.annotations.labelmap import Label, LabelMap
from medviewer.core.annotations.tools import brush, brush_stroke, erase


def _map(shape=(6, 64, 64), spacing=(2.0, 0.5, 0.75), labels=("lung", "nodule")):
    lm = LabelMap(np.zeros(shape, np.uint8), spacing=spacing)
    for name in labels:
        lm.table.add(name)
    return lm


def _messy(lm: LabelMap, seed=0) -> None:
    """Fill the map with a random pattern so old values are not all zero."""
    rng = np.random.default_rng(seed)
    lm.array[:] = rng.integers(0, 3, lm.shape, dtype=np.uint8)


def test_twenty_overlapping_dabs_undo_byte_for_byte_and_redo():
    lm = _map()
    _messy(lm)
    before = lm.array.copy()
    history = History(lm)
    rng = np.random.default_rng(1)
    centres = [(3, 30 + rng.uniform(-6, 6), 30 + rng.uniform(-6, 6)) for _ in range(20)]
    with history.stroke("brush"):
        for i, centre in enumerate(centres):  # alternating labels: later dabs overwrite
            brush(lm, history, centre, 3.0, 1 + i % 2, sphere=i % 3 == 0)
    after = lm.array.copy()
    assert len(history) == 1 and history.undo_name() == "brush"
    assert not np.array_equal(before, after)
    history.undo()
    assert lm.array.tobytes() == before.tobytes()
    assert history.can_redo and not history.can_undo
    history.redo()
    assert lm.array.tobytes() == after.tobytes()
    history.undo()
    assert lm.array.tobytes() == before.tobytes()


def test_item_holds_only_the_changed_box():
    lm = _map(shape=(10, 200, 200), spacing=(1.0, 1.0, 1.0))
    history = History(lm)
    with history.stroke("brush"):
        brush(lm, history, (5, 20, 20), 3.0, 1)
        brush(lm, history, (5, 20, 40), 3.0, 1)
    changed = mask_box(lm.array != 0)
    assert history.memory_bytes() == box_voxels(changed) == 1 * 7 * 27
    assert history.undo() == changed  # the box to redraw


def test_each_call_outside_a_stroke_is_its_own_item_and_new_edit_clears_redo():
    lm = _map()
    history = History(lm)
    brush(lm, history, (1, 10, 10), 2.0, 1)
    brush(lm, history, (1, 40, 40), 2.0, 2)
    assert len(history) == 2
    history.undo()
    assert history.can_redo
    erase(lm, history, (1, 10, 10), 2.0)
    assert not history.can_redo and len(history) == 2
    assert not lm.array.any()


def test_a_stroke_that_changes_nothing_leaves_no_item():
    lm = _map()
    history = History(lm)
    brush_stroke(lm, history, [(1, 5, 5), (1, 6, 6)], 2.0, 0)  # erase empty space
    assert len(history) == 0 and history.memory_bytes() == 0


def test_nested_strokes_join_the_outer_one():
    lm = _map()
    history = History(lm)
    with history.stroke("brush"):
        brush_stroke(lm, history, [(1, 5, 5), (1, 20, 20)], 2.0, 1)
        brush(lm, history, (2, 40, 40), 2.0, 2)
    assert len(history) == 1
    history.undo()
    assert not lm.array.any()


def test_an_edit_outside_a_stroke_is_refused():
    history = History(_map())
    with pytest.raises(RuntimeError, match="stroke"):
        history.touch((slice(0, 1), slice(0, 1), slice(0, 1)))


def test_a_failing_edit_is_still_undoable():
    lm = _map()
    history = History(lm)
    with pytest.raises(ZeroDivisionError), history.stroke("brush"):
        brush(lm, history, (1, 10, 10), 2.0, 1)
        1 / 0  # noqa: B018
    assert len(history) == 1
    history.undo()
    assert not lm.array.any()


def test_label_table_changes_undo_with_the_voxels():
    lm = _map(labels=())
    table = lm.table
    history = History(lm)
    with history.stroke("new label"):
        value = lm.table.add("liver").value
        brush(lm, history, (1, 10, 10), 2.0, value)
    history.undo()
    assert len(lm.table) == 0 and lm.table is table and not lm.array.any()
    history.redo()
    assert lm.table.by_name("liver").value == 1 and lm.array.any()


def test_undoing_a_new_label_keeps_a_later_rename_of_another_label():
    lm = _map(labels=("lung",))
    history = History(lm)
    with history.stroke("new label"):
        value = lm.table.add("nodule").value
        brush(lm, history, (1, 10, 10), 2.0, value)
    lung = lm.table.by_name("lung")  # renamed outside the history, as the dock does
    lm.table.labels[lung.value] = Label(lung.value, "left lung", lung.colour)
    history.undo()
    assert [lab.name for lab in lm.table] == ["left lung"]
    history.redo()
    assert [lab.name for lab in lm.table] == ["left lung", "nodule"]
    assert list(lm.table.labels) == sorted(lm.table.labels)


def test_position_counts_items_the_cap_dropped():
    lm = _map(shape=(4, 100, 100), spacing=(1.0, 1.0, 1.0))
    history = History(lm, cap_bytes=400)
    for i in range(5):
        brush(lm, history, (1, 10 + 20 * i, 50), 5.0, 1)
    assert len(history) == 3 and history.position == 5
    history.undo()
    assert history.position == 4
    history.redo()
    history.clear()
    assert history.position == 5 and not history.can_undo


def test_memory_accounting_and_cap_drops_the_oldest():
    lm = _map(shape=(4, 100, 100), spacing=(1.0, 1.0, 1.0))
    history = History(lm, cap_bytes=400)
    for i in range(5):  # 11 x 11 discs far apart: 121 bytes each
        brush(lm, history, (1, 10 + 20 * i, 50), 5.0, 1)
        assert history.memory_bytes() <= max(400, 121)
    assert len(history) == 3 and history.memory_bytes() == 3 * 121
    history.undo()
    assert history.memory_bytes() == 3 * 121  # the redo side is counted too
    big = History(lm, cap_bytes=10)
    brush(lm, big, (2, 50, 50), 5.0, 2)
    assert len(big) == 1  # the newest edit always stays undoable


def test_union_box():
    a = (slice(0, 2), slice(5, 9), slice(1, 3))
    b = (slice(1, 4), slice(0, 6), slice(2, 3))
    assert union_box(a, b) == (slice(0, 4), slice(0, 9), slice(1, 3))
    assert union_box(None, b) == b and union_box(a, None) == a


def test_a_long_drag_grows_its_buffer_with_slack_and_commit_trims_it():
    lm = _map(shape=(8, 120, 120), spacing=(1.0, 1.0, 1.0))
    _messy(lm, seed=3)
    before = lm.array.copy()
    history = History(lm)
    with history.stroke("brush"):
        for t in np.linspace(0, 1, 60):  # corner to corner, the buffer outgrown again and again
            brush(lm, history, (4, 10 + 100 * t, 10 + 100 * t), 4.0, 2, sphere=True)
    changed = mask_box(lm.array != before)
    assert history.undo() == changed
    assert history.memory_bytes() == box_voxels(changed)
    assert lm.array.tobytes() == before.tobytes()
