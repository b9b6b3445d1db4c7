"""Class labels of a slice and of the series in the real window: set from the dock (typed or
picked), shown for the slice on screen, cleared, undone in order with strokes; a classifier's
verdicts accepted as the classes in one undo step."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from medviewer.core.annotations import AnnotatedBox, BoxSet, ClassLabel, model_source
from tests.ui.gui import RADIUS, _open, _paint, _run

ANNOTATOR = "annotator"


@pytest.fixture
def window(make_main_window, qtbot, ct_series_dir, monkeypatch, request):
    """The main window with the test models installed and the phantom CT open."""
    monkeypatch.setenv("MEDVIEWER_MODELS_DIR", str(request.getfixturevalue("models_dir")))
    win = make_main_window()
    win.resize(1300, 850)
    _open(win, qtbot, ct_series_dir)
    return win


def test_slice_and_series_class_from_the_dock_follow_the_slice_and_undo(window, qtbot):
    win, doc, ctl = window, window.document, window.annotate
    panel = ctl.panel.box_panel
    k = doc.slice_index
    slice_field = panel.slice_class_combo.lineEdit()
    slice_field.setText("emphysema")
    slice_field.editingFinished.emit()
    label = doc.annotation.boxes.class_of(k)
    assert (label.label, label.scope, label.slice_index, label.source) == (
        "emphysema", "slice", k, ANNOTATOR)
    assert label.sop_instance_uid == doc.volume.sources[k].sop_instance_uid
    series_field = panel.series_class_combo.lineEdit()
    win.show()
    qtbot.waitExposed(win)
    series_field.setFocus()
    series_field.clear()
    QTest.keyClicks(series_field, "abnormal")  # a 'b' typed here is no Box tool key
    QTest.keyClick(series_field, Qt.Key.Key_Return)
    assert doc.annotate_tool is None
    assert doc.annotation.boxes.class_of(None).label == "abnormal"
    assert len(doc.annotation.box_undo) == 2  # Return and the field's edit: one step

    doc.set_slice(k + 1)
    assert panel.slice_class_combo.currentText() == ""
    assert not panel.clear_slice_button.isEnabled()
    doc.set_slice(k)
    assert panel.slice_class_combo.currentText() == "emphysema"
    assert panel.series_class_combo.currentText() == "abnormal"

    ctl.set_tool("brush")
    ctl.set_brush(radius_mm=RADIUS)
    _, painted = _paint(win, [(20, 20), (30, 30)])
    ctl.boxes.set_class("normal", k)  # a correction replaces the slice's class
    assert doc.annotation.boxes.class_of(k).label == "normal"
    assert len([c for c in doc.annotation.boxes.class_labels if c.slice_index == k]) == 1
    panel.clear_series_button.click()
    assert doc.annotation.boxes.class_of(None) is None

    ctl.undo()  # the clear
    assert doc.annotation.boxes.class_of(None).label == "abnormal"
    ctl.undo()  # the correction
    assert doc.annotation.boxes.class_of(k).label == "emphysema"
    assert panel.slice_class_combo.currentText() == "emphysema"
    ctl.undo()  # the stroke
    assert not doc.labelmap.array.any() and doc.annotation.boxes.class_of(k) is not None
    ctl.undo()
    ctl.undo()
    assert doc.annotation.boxes.class_labels == ()
    assert panel.series_class_combo.currentText() == ""
    ctl.redo()
    assert doc.annotation.boxes.class_of(k).label == "emphysema"


def test_accepting_a_classifier_sets_the_slice_classes_in_one_step(window, qtbot):
    win, doc, ctl = window, window.document, window.annotate
    result = _run(win, qtbot, lambda: win.ai.run_model("test-cls", scope="series")).results[0]
    assert ctl.accept_action.isEnabled()
    assert ctl.accept_prediction()
    source = model_source(result.model_id, result.model_version)
    classes = doc.annotation.boxes
    for row, k in enumerate(result.slice_indices):
        label, score = result.predicted(row)
        got = classes.class_of(k)
        assert (got.label, got.source, got.scope) == (label, source, "slice")
        assert got.score == pytest.approx(score)
    assert classes.class_of(None) is None
    assert len(doc.annotation.box_undo) == 1 and len(classes.class_labels) == len(
        result.slice_indices)
    names = [ctl.panel.box_panel.slice_class_combo.itemText(i)
             for i in range(ctl.panel.box_panel.slice_class_combo.count())]
    assert names[:2] == ["darker", "brighter"]  # the model's labels to pick from
    ctl.undo()
    assert doc.annotation.boxes.class_labels == ()


def test_accepting_a_series_verdict_sets_the_series_class(window, qtbot):
    win, doc, ctl = window, window.document, window.annotate
    output = _run(win, qtbot, lambda: win.ai.run_model("test-fusion-a"))
    result = output.results[0]
    assert not result.slice_indices and result.scores is not None
    assert ctl.accept_prediction()
    verdict = doc.annotation.boxes.class_of(None)
    label, score = result.predicted(0)
    assert (verdict.label, verdict.scope, verdict.score) == (label, "series",
                                                             pytest.approx(score))
    assert [c.scope for c in doc.annotation.boxes.class_labels] == ["series"]
    assert ctl.panel.box_panel.series_class_combo.currentText() == label
    ctl.undo()
    assert doc.annotation.boxes.class_of(None) is None
    assert not np.any(doc.labelmap.array)  # a verdict paints nothing


def test_recovered_boxes_and_classes_are_one_undo_step(window):
    doc, ctl = window.document, window.annotate
    k = doc.slice_index
    box = AnnotatedBox(4, 4, 12, 12, k, "nodule")
    classes = [ClassLabel("abnormal"), ClassLabel("emphysema", scope="slice", slice_index=k)]
    ctl.restore_annotation(None, BoxSet([box], classes), None)
    assert [b.uid for b in doc.annotation.boxes] == [box.uid]
    assert doc.annotation.boxes.class_of(k).label == "emphysema"
    assert doc.annotation.boxes.class_of(None).label == "abnormal"
    assert len(doc.annotation.box_undo) == 1
    ctl.undo()
    assert len(doc.annotation.boxes) == 0 and doc.annotation.boxes.class_labels == ()
