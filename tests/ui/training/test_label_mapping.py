"""Issue 11.17 in the real window: a stroke painted without adding a label first ("segment 1")
and saved cannot reach training as background. The Retrain dialog lists the series' segments
with their voxels and the model label each trains as; Start stays refused while a segment
with voxels has none, and the choice (a label, or exclude) travels in the job file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from medviewer.ui.training.label_mapping import CHOOSE, EXCLUDE_TEXT
from medviewer.ui.training.retrain_dialog import RetrainDialog
from tests.ui.gui import RADIUS, _paint, _window

FAKE = [sys.executable, str(Path(__file__).with_name("fake_train.py"))]
UNET = "lab4-chest-unet"
WAIT_MS = 30_000


def _paint_and_save(win, qtbot) -> Path:
    """The brush on the current slice with no label chosen, then Save: "segment 1"."""
    ctl = win.annotate
    ctl.set_tool("brush")
    ctl.set_brush(radius_mm=RADIUS)
    before, after = _paint(win, [(20, 20), (26, 26)])
    assert (after != before).any()
    assert [lab.name for lab in win.document.labelmap.table] == ["segment 1"]
    with qtbot.waitSignal(ctl.sigSaved, timeout=10_000) as saved:
        ctl.save()
    return Path(saved.args[0][0])


def _mapping_dialog(win, qtbot) -> RetrainDialog:
    dialog = RetrainDialog(win, model_id=UNET, command=FAKE)
    qtbot.add_widget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: not dialog.mapping_box.pending and bool(dialog.mapping_box.segments),
                    timeout=WAIT_MS)
    return dialog


def test_an_unmapped_segment_blocks_start_until_mapped_or_excluded(make_main_window, qtbot,
                                                                   ct_series_dir,
                                                                   monkeypatch):
    monkeypatch.setenv("FAKE_TRAIN_STEP_S", "0.01")
    win = _window(make_main_window, qtbot, ct_series_dir)
    _paint_and_save(win, qtbot)
    dialog = _mapping_dialog(win, qtbot)
    box = dialog.mapping_box
    assert box.isVisibleTo(dialog)
    table = box.table
    assert table.rowCount() == 1 and table.item(0, 0).text() == "segment 1"
    voxels = int(table.item(0, 1).text().replace(",", ""))
    assert voxels == int((win.document.labelmap.array > 0).sum()) > 0
    assert box.combos[0].currentText() == CHOOSE
    assert not dialog.start_button.isEnabled()
    reason = dialog.start_button.toolTip()
    assert "'segment 1'" in reason and "background" in reason
    assert reason in dialog.status_label.text()
    assert dialog.start() is False and not dialog.process.running

    box.combos[0].setCurrentIndex(box.combos[0].findText("nodule"))
    assert dialog.start_button.isEnabled() and dialog.start_button.toolTip() == ""
    assert dialog.job_from_form()["data"]["segment_labels"] == {"segment 1": "nodule"}
    box.combos[0].setCurrentIndex(box.combos[0].findText(EXCLUDE_TEXT))
    assert dialog.start_button.isEnabled()
    with qtbot.waitSignal(dialog.sigRunFinished, timeout=WAIT_MS):
        dialog.start_button.click()
    job = json.loads(dialog.job_path.read_text(encoding="utf-8"))
    assert job["data"]["segment_labels"] == {"segment 1": None}
    dialog.shutdown()


def test_segments_named_like_the_models_labels_are_matched_and_others_hide_the_box(
        make_main_window, qtbot, ct_series_dir):
    win = _window(make_main_window, qtbot, ct_series_dir)
    win.document.add_label("Nodule")  # the reader named the label like the model's
    ctl = win.annotate
    ctl.set_tool("brush")
    ctl.set_brush(radius_mm=RADIUS)
    _paint(win, [(20, 20), (26, 26)])
    with qtbot.waitSignal(ctl.sigSaved, timeout=10_000):
        ctl.save()
    dialog = _mapping_dialog(win, qtbot)
    assert dialog.mapping_box.combos[0].currentText() == "nodule"
    assert dialog.start_button.isEnabled()
    assert dialog.job_from_form()["data"]["segment_labels"] == {"Nodule": "nodule"}
    dialog.model_combo.setCurrentIndex(dialog.model_combo.findData("lab2-nodule-slice"))
    qtbot.waitUntil(lambda: not dialog.mapping_box.isVisibleTo(dialog), timeout=WAIT_MS)
    assert "segment_labels" not in dialog.job_from_form()["data"]
