"""The SEG Ctrl+S writes, in the real window: a correction on a chest X-ray comes back when the
series is opened again; each segment says whether it was drawn, a model's or a corrected
model's; empty labels are left out and the status bar says so."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from medviewer.core import synthetic as syn
from tests.ui.gui import RADIUS, _open, _paint, _run, _window


def _save(win, qtbot):
    with qtbot.waitSignal(win.annotate.sigSaved, timeout=10_000) as saved:
        assert win.annotate.save()
    return saved.args[0]


def _reopen(win, qtbot, folder, tmp_path):
    """Open another series, then `folder` again; returns what the viewer loaded for it."""
    voxels, _ = syn.ct_chest_phantom((4, 32, 32), (5.0, 5.0, 5.0), seed=4)
    syn.write_series(tmp_path / "elsewhere", voxels, spacing=(5.0, 5.0, 5.0), seed=9)
    _open(win, qtbot, tmp_path / "elsewhere")
    qtbot.waitUntil(lambda: "annotate-load" not in win.tasks.tasks, timeout=5_000)
    assert win.document.annotation is None
    with qtbot.waitSignal(win.annotate.sigLoaded, timeout=10_000) as loaded:
        _open(win, qtbot, folder)
    return loaded.args[0]


def test_a_correction_saved_on_a_chest_xray_reopens_in_the_viewer(make_main_window, qtbot,
                                                                  tmp_path):
    import highdicom as hd

    folder = tmp_path / "dx"
    syn.write_chest_xray(folder, size=96)
    win = _window(make_main_window, qtbot, folder)
    doc, ctl = win.document, win.annotate
    failures = []
    ctl.sigFailed.connect(failures.append)
    doc.add_label("heart")
    ctl.set_tool("brush")
    ctl.set_brush(radius_mm=RADIUS)
    _, painted = _paint(win, [(30, 40), (60, 50)])
    assert painted.any()
    seg_path = _save(win, qtbot)[0]
    seg = hd.seg.segread(seg_path)  # highdicom reads it back (it raised before)
    source = doc.volume.sources[0].sop_instance_uid
    np.testing.assert_array_equal(
        seg.get_pixels_by_source_instance([source], combine_segments=True)[0], painted[0])
    loaded = _reopen(win, qtbot, folder, tmp_path)
    assert loaded is not None and failures == []
    np.testing.assert_array_equal(doc.labelmap.array, painted)
    assert [lab.name for lab in doc.labelmap.table] == ["heart"]
    assert win.viewer.single_view.layers["annotation"].item.isVisible()


@pytest.mark.parametrize("kind", ["Enhanced CT", "multi-frame MR", "MR", "CT with gaps",
                                  "CR spacing 0\\0", "CR without spacing"])
def test_a_correction_on_each_kind_of_source_reopens_in_the_viewer(make_main_window, qtbot,
                                                                   tmp_path, kind):
    from tests.core.annotations.test_seg_conformance import SOURCES

    SOURCES[kind](tmp_path / "source")
    win = _window(make_main_window, qtbot, tmp_path / "source")
    doc, ctl = win.document, win.annotate
    failures = []
    ctl.sigFailed.connect(failures.append)
    doc.add_label("lesion")
    ctl.set_tool("brush")
    ctl.set_brush(radius_mm=4.0)
    rows, cols = doc.labelmap.shape[1:]
    _, painted = _paint(win, [(cols // 4, rows // 3), (cols // 2, rows // 2)])
    assert painted.any()
    _save(win, qtbot)
    assert _reopen(win, qtbot, tmp_path / "source", tmp_path) is not None
    assert failures == []
    np.testing.assert_array_equal(doc.labelmap.array, painted)


def _segments(path) -> dict[str, tuple]:
    out = {}
    for s in pydicom.dcmread(path).SegmentSequence:
        algo = s.get("SegmentationAlgorithmIdentificationSequence")
        out[str(s.SegmentLabel)] = (s.SegmentAlgorithmType, (algo[0].AlgorithmName,
                                                             algo[0].AlgorithmVersion)
                                    if algo else None)
    return out


def test_drawn_accepted_and_corrected_segments_are_saved_as_such_and_come_back(
        make_main_window, qtbot, ct_series_dir, monkeypatch, request, tmp_path):
    from scipy import ndimage

    monkeypatch.setenv("MEDVIEWER_MODELS_DIR", str(request.getfixturevalue("models_dir")))
    win = _window(make_main_window, qtbot, ct_series_dir)
    doc, ctl = win.document, win.annotate
    _run(win, qtbot, lambda: win.ai.run_model("test-seg", scope="series"))
    assert ctl.accept_prediction()
    accepted, table = doc.labelmap.array.copy(), doc.labelmap.table
    bone = table.by_name("bone").value
    k = int(np.argmax((accepted == bone).sum(axis=(1, 2))))
    doc.set_slice(k)
    rows, cols = np.nonzero(accepted[k] == bone)
    ctl.set_tool("eraser")  # the reader takes a bit off the model's bone
    ctl.set_brush(radius_mm=RADIUS)
    _paint(win, [(int(cols[0]), int(rows[0])), (int(cols[0]) + 1, int(rows[0]))])
    doc.add_label("lesion")  # and draws a lesion of their own, on background
    ctl.set_tool("brush")
    row, col = np.unravel_index(np.argmax(ndimage.distance_transform_edt(accepted[k] == 0)),
                                accepted[k].shape)
    _paint(win, [(int(col), int(row)), (int(col), int(row))])
    final, model = doc.labelmap.array, ("test-seg", "1.0.0")
    assert (final == doc.labelmap.table.by_name("lesion").value).any()
    expected = {"lesion": ("MANUAL", None)}
    for name in ("bone", "soft tissue"):  # a model's label whose voxels changed: corrected
        v = doc.labelmap.table.by_name(name).value
        edited = not np.array_equal(accepted == v, final == v)
        expected[name] = ("SEMIAUTOMATIC" if edited else "AUTOMATIC", model)
    assert expected["bone"][0] == "SEMIAUTOMATIC"
    table_widget = ctl.panel.labels_table  # the dock tells the reader what the SEG will say
    tips = {table_widget.item(r, 1).text(): table_widget.item(r, 1).toolTip()
            for r in range(table_widget.rowCount())}
    assert "test-seg 1.0.0" in tips["bone"] and "corrected" in tips["bone"]
    assert "Drawn by hand" in tips["lesion"]
    seg_path = _save(win, qtbot)[0]
    assert _segments(seg_path) == expected
    _reopen(win, qtbot, ct_series_dir, tmp_path)
    assert {lab.name: (lab.algorithm_type, lab.algorithm) for lab in doc.labelmap.table} == \
        expected
    seg_again = _save(win, qtbot)[0]  # saved again untouched: still what it was
    assert _segments(seg_again) == expected


def test_an_untouched_prediction_is_automatic_and_names_its_model(make_main_window, qtbot,
                                                                   ct_series_dir, monkeypatch,
                                                                   request):
    monkeypatch.setenv("MEDVIEWER_MODELS_DIR", str(request.getfixturevalue("models_dir")))
    win = _window(make_main_window, qtbot, ct_series_dir)
    _run(win, qtbot, lambda: win.ai.run_model("test-seg", scope="series"))
    assert win.annotate.accept_prediction()
    segments = _segments(_save(win, qtbot)[0])
    assert segments and all(v == ("AUTOMATIC", ("test-seg", "1.0.0"))
                            for v in segments.values())


@pytest.mark.parametrize("paint", [True, False])
def test_empty_labels_are_not_saved_and_the_status_bar_says_so(make_main_window, qtbot,
                                                               ct_series_dir, paint):
    win = _window(make_main_window, qtbot, ct_series_dir)
    doc, ctl = win.document, win.annotate
    doc.add_label("spine")  # added, never painted
    doc.add_label("lesion")
    if paint:
        ctl.set_tool("brush")
        ctl.set_brush(radius_mm=RADIUS)
        _paint(win, [(20, 20), (30, 30)])
    paths = _save(win, qtbot)
    status = win.status_label.text()
    if paint:
        assert "'spine' not saved: no voxels" in status
        assert [str(s.SegmentLabel) for s in pydicom.dcmread(paths[0]).SegmentSequence] == \
            ["lesion"]
    else:
        assert "no SEG written: 'spine' and 'lesion' have no voxels" in status
        assert [p.name for p in paths] == ["annotations.dcm"]  # the SR alone
        assert not list(paths[0].parent.glob("segmentation*.dcm"))
    assert not doc.annotation.dirty  # nothing was lost: the save is complete
