"""AI > Compare With Mask in the real window: a segmentation against a DICOM SEG of the same
series, every score in one table (labels as rows, units and tolerance in the headings)."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.core.annotations import write_seg
from tests.ui.gui import _open, _run


@pytest.fixture
def seg_window(make_main_window, models_dir, monkeypatch, qtbot, ct_series_dir):
    monkeypatch.setenv("MEDVIEWER_MODELS_DIR", str(models_dir))
    window = make_main_window()
    window.resize(1300, 850)
    _open(window, qtbot, ct_series_dir)
    _run(window, qtbot, lambda: window.ai.run_model("test-seg", "series"))
    return window


def test_scores_against_a_mask_fill_one_table_with_units(seg_window, qtbot, tmp_path):
    window, doc = seg_window, seg_window.document
    pred = doc.ai_result.label_map
    truth = pred.copy()
    half = doc.slice_count // 2
    truth[half:][truth[half:] == 2] = 0  # the mask has no bone in the lower half
    assert (pred[half:] == 2).any() and (pred[:half] == 2).any()
    seg = write_seg(truth, doc.volume, ["background", "Soft Tissue", "bone"],
                    tmp_path / "truth.seg.dcm", series_description="reader's mask")

    scores = _run(window, qtbot, lambda: window.ai.compare_with_mask(seg))

    soft, bone = scores["soft tissue"], scores["bone"]
    assert (soft["dice"], soft["boundary_f1"], soft["hd95"]) == (1.0, 1.0, 0.0)
    assert bone["recall"] == 1.0  # every true bone voxel found
    assert bone["precision"] == pytest.approx(np.count_nonzero(truth == 2)
                                              / np.count_nonzero(pred == 2))
    assert bone["hd95"] >= doc.volume.spacing[0]  # at least a slice away, in mm
    assert bone["unit"] == "mm"
    text = window.ai.panel.agreement_label.text()
    for heading in ("Dice", "IoU", "Precision", "Recall", "BF1 (2 mm)", "HD95 (mm)"):
        assert heading in text
    assert f"{bone['precision']:.3f}" in text and f"{bone['hd95']:.1f}" in text
    accuracy = np.mean(pred == truth)
    assert "Pixel accuracy" in text and f"{accuracy:.3f}" in text
    assert "2 mm" in window.ai.panel.agreement_label.toolTip()
    window.grab().save("/tmp/s21/h2_agreement_window.png")
    window.ai.panel.grab().save("/tmp/s21/h2_agreement_panel.png")


def test_a_mask_naming_none_of_the_labels_says_so(seg_window, qtbot, tmp_path):
    window, doc = seg_window, seg_window.document
    other = np.zeros_like(doc.ai_result.label_map)
    other[0, :4, :4] = 1
    seg = write_seg(other, doc.volume, ["background", "liver"], tmp_path / "liver.seg.dcm")
    errors = []
    window.ai.host.show_error = errors.append  # what the reader would see in a message box
    window.ai.compare_with_mask(seg)
    qtbot.waitUntil(lambda: bool(errors) or "liver" in window.statusBar().currentMessage(),
                    timeout=10_000)
    shown = " ".join(errors) + window.statusBar().currentMessage()
    assert "names none of the model's labels" in shown and "Traceback" not in shown
