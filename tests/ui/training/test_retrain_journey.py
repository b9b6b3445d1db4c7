"""The whole loop a radiologist runs: model -> correct -> save -> retrain -> use the new version.

Real window, real shipped lab 4 U-Net, real `medviewer train` child: the corrected SEG saved
with Ctrl+S is what the new version trains on (split.json names the workspace series).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt

from medviewer.inference import find_model
from medviewer.inference.versions import set_active
from medviewer.ui.training.process import FINISHED
from tests.ui.gui import RADIUS, _open, _paint, _run

MODEL = "lab4-chest-unet"


def test_corrections_saved_in_the_viewer_train_the_next_version(make_main_window, qtbot,
                                                                ct_series_dir, tmp_path,
                                                                monkeypatch):
    monkeypatch.setenv("MEDVIEWER_DATA_DIR", str(tmp_path / "data"))  # its own model store
    win = make_main_window()
    win.resize(1300, 850)
    win.show()
    qtbot.waitExposed(win)
    _open(win, qtbot, ct_series_dir)
    doc, ctl = win.document, win.annotate
    old = find_model(MODEL).version
    _run(win, qtbot, lambda: win.ai.run_model(MODEL, scope="series"), timeout=60_000)
    assert ctl.accept_prediction()  # the model's labels become the editable map
    doc.active_label = doc.labelmap.table.by_name("nodule").value
    ctl.set_tool("brush")
    ctl.set_brush(radius_mm=RADIUS)
    before, after = _paint(win, [(20, 20), (24, 24)])  # the reader paints a missed nodule
    assert (after != before).any()
    with qtbot.waitSignal(ctl.sigSaved, timeout=10_000) as saved:
        ctl.save()
    seg_path = saved.args[0][0]

    dialog = win.model_menu.open_retrain()
    qtbot.add_widget(dialog)
    dialog.model_combo.setCurrentIndex(dialog.model_combo.findData(MODEL))
    dialog.refresh_series()
    items = dialog._series_items()
    assert [i.checkState() for i in items] == [Qt.CheckState.Checked]  # the saved series
    # the accepted prediction's segments are named like the model's labels: all matched
    qtbot.waitUntil(lambda: not dialog.mapping_box.pending and bool(dialog.mapping_box.segments),
                    timeout=30_000)
    assert dialog.mapping_box.unmapped() == [] and dialog.start_button.isEnabled()
    assert set(dialog.job_from_form()["data"]["segment_labels"].values()) <= {
        "body", "lung", "nodule", "spine"}
    dialog.demo_spin.setValue(3)
    dialog.epochs_spin.setValue(1)
    try:
        with qtbot.waitSignal(dialog.sigRunFinished, timeout=120_000) as finished:
            dialog.start_button.click()
    finally:
        dialog.shutdown()
    assert finished.args[0] == FINISHED, dialog.status_label.text()
    run_dir = Path(dialog.history.start["run_dir"])
    split = json.loads((run_dir / "split.json").read_text(encoding="utf-8"))
    sources = list(split["sources"].values())
    assert any(s.startswith("workspace:") for s in sources), sources
    chosen = json.loads((run_dir / "job.json").read_text())["data"]["series"]
    assert chosen == [{"folder": str(seg_path.parents[3]),
                       "uid": doc.volume.series.series_instance_uid}]
    compare = json.loads((run_dir / "compare.json").read_text(encoding="utf-8"))
    assert compare["main_metric"] == "dice"
    assert set(compare["current"]["per_case"]) == set(compare["candidate"]["per_case"])

    with qtbot.waitSignal(dialog.sigPublished, timeout=10_000) as published:
        dialog.use_button.click()
    new = published.args[0].version
    assert new != old and find_model(MODEL).version == new
    result = _run(win, qtbot, lambda: win.ai.run_model(MODEL, scope="slice"), timeout=60_000)
    assert result.results[0].model_version == new
    assert np.array_equal(doc.labelmap.array, after)  # the reader's work is untouched
    set_active(MODEL, old)
    win.model_menu.models_changed()
    assert find_model(MODEL).version == old
