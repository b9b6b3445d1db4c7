"""Editing annotations in the real window: brush drags, undo / redo, fills, accept, save.

The expected voxels come from the core tools run on a copy with the same centres, so a test
checks the wiring (mouse -> voxel positions -> one stroke -> overlay), not the tools again.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from medviewer.core import synthetic as syn
from medviewer.core.annotations import History, LabelMap, brush_stroke, stroke_centres
from tests.ui.gui import RADIUS, _drag, _open, _paint, _run, _window


@pytest.fixture
def window(make_main_window, qtbot, ct_series_dir):
    return _window(make_main_window, qtbot, ct_series_dir)


def _expected_stroke(labelmap: LabelMap, before: np.ndarray, points, value: int) -> np.ndarray:
    copy = LabelMap(before.copy(), labelmap.table, labelmap.spacing)
    centres = stroke_centres(points, RADIUS, labelmap.spacing)
    brush_stroke(copy, History(copy), centres, RADIUS, value)
    return copy.array




def test_a_brush_drag_is_one_stroke_undo_restores_byte_for_byte(window):
    win, doc, ctl = window, window.document, window.annotate
    view = win.viewer.single_view
    assert ctl.set_tool("brush") and doc.annotate_tool == "brush"
    lesion = doc.add_label("lesion")
    ctl.set_brush(radius_mm=RADIUS)
    k = doc.slice_index
    before, after = _paint(win, [(20, 20), (30, 24), (40, 34), (44, 44)])
    points = ctl.mouse.points
    assert len(points) >= 3 and all(p[0] == k for p in points)
    expected = _expected_stroke(doc.labelmap, before, points, lesion.value)
    assert np.array_equal(after, expected)
    assert after[k].sum() > 0 and not np.delete(after, k, axis=0).any()
    assert len(doc.history) == 1 and doc.history.undo_name() == "brush"
    # the overlay shows exactly the painted pixels, in the label's colour
    rgba = view.layers["annotation"].item.rgba()
    assert view.layers["annotation"].item.isVisible()
    assert np.array_equal(rgba[..., 3] > 0, after[k] > 0)
    assert (rgba[after[k] > 0][:, :3] == (0xe6, 0x9f, 0x00)).all()
    QTest.keyClick(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # Ctrl+Z
    assert doc.labelmap.array.tobytes() == before.tobytes()
    assert not (view.layers["annotation"].item.rgba()[..., 3] > 0).any()
    win.annotate.redo_action.trigger()
    assert np.array_equal(doc.labelmap.array, after)
    assert doc.annotation.dirty


def test_eraser_value_range_and_flood_fill_from_the_mouse(window):
    win, doc, ctl = window, window.document, window.annotate
    doc.add_label("lung")
    ctl.set_tool("brush")
    ctl.set_brush(radius_mm=RADIUS, value_range=(-100.0, 200.0))
    k = doc.slice_index
    _, after = _paint(win, [(10, 32), (54, 32)])
    hu = doc.volume.voxels[k]
    painted = after[k] > 0
    assert painted.any() and ((hu[painted] >= -100) & (hu[painted] <= 200)).all()
    ctl.set_tool("eraser")
    ctl.set_brush(value_range=None)
    _, erased = _paint(win, [(10, 32), (54, 32)])
    assert not erased.any() and len(doc.history) == 2
    ctl.set_tool("flood")
    ctl.set_brush(value_range=(-1100.0, -400.0))  # the phantom's lung
    row, col = np.argwhere((hu <= -400) & (hu >= -1100))[0]
    ctl.mouse.flood((float(k), float(row), float(col)))
    assert doc.labelmap.array[k, row, col] == 1 and len(doc.history) == 3


def test_fill_between_slices_fills_only_the_slices_between_two_drawn_ones(window):
    win, doc, ctl = window, window.document, window.annotate
    doc.add_label("nodule")
    ctl.set_tool("polygon")
    k = doc.slice_index
    square = [(20, 20), (40, 20), (40, 40), (20, 40)]
    _drag(win.viewer.single_view, square)
    doc.set_slice(k + 4)
    _drag(win.viewer.single_view, square)
    drawn = doc.labelmap.array.copy()
    assert drawn[k].any() and drawn[k + 4].any() and not drawn[k + 1:k + 4].any()
    assert ctl.fill_between_slices() is not None
    filled = doc.labelmap.array
    for j in range(k + 1, k + 4):
        assert np.array_equal(filled[j] > 0, drawn[k] > 0), j  # same square between
    assert np.array_equal(np.delete(filled, range(k + 1, k + 4), axis=0),
                          np.delete(drawn, range(k + 1, k + 4), axis=0))
    ctl.undo()
    assert np.array_equal(doc.labelmap.array, drawn)


def test_accepting_a_segmentation_is_one_undo_step(make_main_window, qtbot, ct_series_dir,
                                                    monkeypatch, request):
    monkeypatch.setenv("MEDVIEWER_MODELS_DIR", str(request.getfixturevalue("models_dir")))
    win = make_main_window()
    _open(win, qtbot, ct_series_dir)
    doc, ctl = win.document, win.annotate
    assert not ctl.accept_action.isEnabled()
    _run(win, qtbot, lambda: win.ai.run_model("test-seg", scope="slice"))
    assert ctl.accept_action.isEnabled()
    assert ctl.accept_prediction()
    result = doc.ai_result
    names = [lab.name for lab in doc.labelmap.table]
    assert names == ["soft tissue", "bone"]
    assert doc.labelmap.table.by_name("bone").colour == "#ff00ff"
    assert np.array_equal(doc.labelmap.array, result.label_map)
    assert len(doc.history) == 1 and doc.annotation.model == "model:test-seg@1.0.0"
    view = win.viewer.single_view
    assert view.layers["annotation"].item.isVisible()
    ctl.undo()
    assert not doc.labelmap.array.any() and len(doc.labelmap.table) == 0
    ctl.redo()
    assert np.array_equal(doc.labelmap.array, result.label_map)


def test_saved_annotations_come_back_when_the_series_is_opened_again(window, qtbot,
                                                                       tmp_path,
                                                                       ct_series_dir):
    win, doc, ctl = window, window.document, window.annotate
    doc.add_label("lesion", "#12ab34")
    ctl.set_tool("brush")
    ctl.set_brush(radius_mm=RADIUS)
    _, painted = _paint(win, [(20, 20), (40, 40)])
    assert painted.any()
    with qtbot.waitSignal(ctl.sigSaved, timeout=10_000) as saved:
        QTest.keyClick(win, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)  # Ctrl+S
    seg_path, sr_path = saved.args[0]
    assert seg_path.parent.parent.parent.name == ".medviewer"
    assert seg_path.is_file() and sr_path.is_file()
    from medviewer.core.annotations import read_provenance

    provenance = read_provenance(sr_path)
    assert provenance.annotator == ctl.annotator and provenance.model is None
    voxels, _ = syn.ct_chest_phantom((6, 64, 64), (5.0, 5.5, 5.5), seed=4)
    syn.write_series(tmp_path / "other", voxels, spacing=(5.0, 5.5, 5.5), seed=9)
    _open(win, qtbot, tmp_path / "other")
    qtbot.waitUntil(lambda: "annotate-load" not in win.tasks.tasks, timeout=5_000)
    assert doc.labelmap is None
    with qtbot.waitSignal(ctl.sigLoaded, timeout=10_000) as loaded:
        _open(win, qtbot, ct_series_dir)
    assert loaded.args[0] is not None
    assert np.array_equal(doc.labelmap.array, painted)
    assert [(lab.name, lab.colour) for lab in doc.labelmap.table] == [("lesion", "#12ab34")]
    assert len(doc.history) == 0 and not doc.annotation.dirty
    assert win.viewer.single_view.layers["annotation"].item.isVisible()


def test_unsaved_edits_survive_a_trip_to_another_series(window, qtbot, tmp_path,
                                                       ct_series_dir):
    win, doc, ctl = window, window.document, window.annotate
    ctl.set_tool("brush")
    ctl.set_brush(radius_mm=RADIUS)
    _, painted = _paint(win, [(20, 20), (40, 40)])
    assert [lab.name for lab in doc.labelmap.table] == ["segment 1"]  # made on first dab
    voxels, _ = syn.ct_chest_phantom((6, 64, 64), (5.0, 5.5, 5.5), seed=4)
    syn.write_series(tmp_path / "other", voxels, spacing=(5.0, 5.5, 5.5), seed=9)
    _open(win, qtbot, tmp_path / "other")
    assert doc.labelmap is None and doc.annotate_tool == "brush"
    _open(win, qtbot, ct_series_dir)
    assert np.array_equal(doc.labelmap.array, painted) and doc.history.can_undo


def test_no_edit_before_the_saved_annotations_are_read(window, qtbot, tmp_path, monkeypatch,
                                                        ct_series_dir):
    """A stroke made while the saved SEG is read would, once saved, replace it: edits wait."""
    import threading

    from medviewer.ui.annotate import storage as annotate_storage

    win, doc, ctl = window, window.document, window.annotate
    doc.add_label("lesion")
    ctl.set_tool("brush")
    ctl.set_brush(radius_mm=RADIUS)
    _, painted = _paint(win, [(20, 20), (40, 40)])
    with qtbot.waitSignal(ctl.sigSaved, timeout=10_000):
        ctl.save()
    voxels, _ = syn.ct_chest_phantom((6, 64, 64), (5.0, 5.5, 5.5), seed=4)
    syn.write_series(tmp_path / "other", voxels, spacing=(5.0, 5.5, 5.5), seed=9)
    _open(win, qtbot, tmp_path / "other")
    release, real_load = threading.Event(), annotate_storage.load_task
    monkeypatch.setattr(annotate_storage, "load_task",
                        lambda *a: (release.wait(10), real_load(*a))[1])
    _open(win, qtbot, ct_series_dir)  # back to the saved series: its SEG is being read
    assert "saved annotations" in (doc.can_annotate() or "")
    assert "saved annotations" in win.viewer.tools.active.why_not()  # the brush waits
    assert ctl._edit("Keep largest", lambda *a: None) is None  # commands wait too
    with qtbot.waitSignal(ctl.sigLoaded, timeout=10_000):
        release.set()
    assert doc.can_annotate() is None and np.array_equal(doc.labelmap.array, painted)


def test_a_seg_made_elsewhere_becomes_editable_labels_and_stays_untouched(window, qtbot,
                                                                          tmp_path):
    import hashlib

    from medviewer.core.annotations import write_seg

    doc, ctl = window.document, window.annotate
    labels = np.zeros(doc.volume.voxels.shape, np.uint8)
    labels[5:9, 20:30, 20:30] = 1
    labels[6:8, 24:27, 24:27] = 2
    foreign = write_seg(labels, doc.volume, ["background", "liver", "tumour"],
                        tmp_path / "from-slicer.dcm", colours=["#000000", "#aa5500", "#00ff00"],
                        algorithm=("3D Slicer", "5.6"))
    digest = hashlib.sha256(foreign.read_bytes()).hexdigest()
    with qtbot.waitSignal(ctl.sigImported, timeout=10_000):
        assert ctl.import_seg(foreign)
    table = doc.labelmap.table
    assert [(lab.name, lab.colour) for lab in table] == [("liver", "#aa5500"),
                                                         ("tumour", "#00ff00")]
    expected = np.zeros_like(labels)
    for value, name in ((1, "liver"), (2, "tumour")):
        expected[labels == value] = table.by_name(name).value
    assert np.array_equal(doc.labelmap.array, expected) and doc.annotation.dirty
    ctl.undo()  # one undo step takes the import back
    assert not doc.labelmap.array.any() and len(table) == 0
    ctl.redo()
    with qtbot.waitSignal(ctl.sigSaved, timeout=10_000) as saved:
        ctl.save()
    assert saved.args[0][0] != foreign and saved.args[0][0].is_file()
    assert hashlib.sha256(foreign.read_bytes()).hexdigest() == digest  # never written


def test_a_seg_of_another_series_is_refused_with_the_reason(window, qtbot, tmp_path):
    from medviewer.core.annotations import write_seg
    from medviewer.core.dicom import load_series, scan

    voxels, _ = syn.ct_chest_phantom((6, 64, 64), (5.0, 5.5, 5.5), seed=4)
    syn.write_series(tmp_path / "other", voxels, spacing=(5.0, 5.5, 5.5), seed=9)
    other = load_series(scan(tmp_path / "other", cache=False).all_series()[0])
    labels = np.zeros(other.voxels.shape, np.uint8)
    labels[2, 10:20, 10:20] = 1
    foreign = write_seg(labels, other, ["background", "liver"], tmp_path / "other-seg.dcm")
    with qtbot.waitSignal(window.annotate.sigFailed, timeout=10_000) as failed:
        window.annotate.import_seg(foreign)
    assert "another series" in failed.args[0]
    assert window.document.annotation is None or not window.document.labelmap.array.any()
