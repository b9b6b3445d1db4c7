"""Saved annotations come back as the reader left them, whatever the source and whatever else
went wrong: on a multi-frame image read from the SR alone (no JSON sidecar) every box, class
and ruler is on the slice it was drawn on; a SEG the source cannot have (a legacy multi-frame
image) does not stop the SR, and a SEG that cannot be read does not hide the SR's content.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from medviewer.core import synthetic as syn
from medviewer.core.annotations import load_autosave, read_sr
from medviewer.core.annotations.workspace import Workspace
from medviewer.ui.annotate.boxes import slice_to_plane
from medviewer.ui.viewing.measure_tools import DistanceMeasurement
from tests.ui.gui import RADIUS, _drag, _open, _paint, _window


def _multiframe(folder, enhanced=True):
    """One multi-frame CT file, its frames stored out of spatial order when enhanced."""
    voxels, _ = syn.ct_chest_phantom((5, 48, 48), (5.0, 5.0, 5.0), seed=2)
    if enhanced:
        syn.write_multiframe(folder, voxels, spacing=(5.0, 5.0, 5.0), shuffle_frames=True,
                             seed=3)
    else:  # a classic multi-frame Secondary Capture: no functional groups
        syn.write_multiframe(folder, voxels, spacing=(5.0, 5.0, 5.0), enhanced=False, seed=3)
    return folder


def _slice_drag(win, points) -> None:
    view = win.viewer.single_view
    _drag(view, [slice_to_plane(view.plane, x, y) for x, y in points])


def _draw_box_class_and_ruler(win, k):
    doc, ctl = win.document, win.annotate
    doc.set_slice(k)
    ctl.set_tool("box")
    _slice_drag(win, [(8, 10), (14, 16), (20, 24)])
    (box,) = doc.annotation.boxes
    ctl.boxes.set_class("cardiomegaly", k)
    ctl.set_tool(None)
    win.viewer.set_tool("distance")
    _slice_drag(win, [(5, 30), (20, 34), (35, 40)])
    win.viewer.set_tool(None)
    return box


def _ctrl_s(win):
    QTest.keyClick(win, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)


def _reopen(win, qtbot, folder, elsewhere):
    voxels, _ = syn.ct_chest_phantom((4, 32, 32), (5.0, 5.0, 5.0), seed=4)
    syn.write_series(elsewhere, voxels, spacing=(5.0, 5.0, 5.0), seed=9)
    _open(win, qtbot, elsewhere)
    qtbot.waitUntil(lambda: "annotate-load" not in win.tasks.tasks, timeout=5_000)
    assert win.document.annotation is None
    with qtbot.waitSignal(win.annotate.sigLoaded, timeout=10_000):
        _open(win, qtbot, folder)


def test_a_multiframe_series_gets_its_annotations_back_on_their_slice_from_the_sr_alone(
        make_main_window, qtbot, tmp_path):
    folder = _multiframe(tmp_path / "enhanced")
    win = _window(make_main_window, qtbot, folder)
    doc, ctl = win.document, win.annotate
    k = 2  # neither the first slice nor the first frame
    assert doc.volume.sources[k].frame != 0
    box = _draw_box_class_and_ruler(win, k)
    with qtbot.waitSignal(ctl.sigSaved, timeout=10_000) as saved:
        _ctrl_s(win)
    sr_path = saved.args[0][-1]
    sr_path.with_suffix(".json").unlink()  # what a PACS or another viewer gives back
    _reopen(win, qtbot, folder, tmp_path / "other")
    (back,) = doc.annotation.boxes
    assert (back.uid, back.slice_index, back.label) == (box.uid, k, box.label)
    assert np.allclose([back.x0, back.y0, back.x1, back.y1],
                       [box.x0, box.y0, box.x1, box.y1], atol=1e-3)
    assert doc.annotation.boxes.class_of(k).label == "cardiomegaly"
    doc.set_slice(k)
    rulers = [m for m in win.viewer.single_view.measurements.items
              if isinstance(m, DistanceMeasurement)]
    assert len(rulers) == 1 and rulers[0].k == k
    assert box.uid in ctl.box_overlay.items  # on screen on its slice
    assert ctl.panel.box_panel.slice_class_combo.currentText() == "cardiomegaly"


def test_a_refused_seg_still_saves_the_sr_and_keeps_the_painting_in_the_autosave(
        fast_autosave, make_main_window, qtbot, tmp_path):
    folder = _multiframe(tmp_path / "legacy", enhanced=False)
    win = _window(make_main_window, qtbot, folder)
    doc, ctl = win.document, win.annotate
    k = 3
    box = _draw_box_class_and_ruler(win, k)
    doc.add_label("lesion")
    ctl.set_tool("brush")
    ctl.set_brush(radius_mm=RADIUS)
    _, painted = _paint(win, [(20, 20), (30, 30)])
    assert painted.any()
    with qtbot.waitSignal(ctl.sigFailed, timeout=10_000) as failed:
        _ctrl_s(win)
    said = failed.args[0]
    assert "segmentation was NOT saved" in said and "legacy multi-frame" in said
    assert "boxes, classes and measurements were saved" in said
    workspace = Workspace.for_series(doc.volume)
    boxes, classes, lines, _ = read_sr(workspace.sr_path, doc.volume)
    assert [(b.uid, b.slice_index) for b in boxes] == [(box.uid, k)]
    assert [(c.label, c.slice_index) for c in classes] == [("cardiomegaly", k)]
    assert [line.slice_index for line in lines] == [k]
    assert not workspace.seg_path.exists()
    assert doc.annotation.dirty  # not all of it is saved: the close question still asks
    qtbot.waitUntil(lambda: workspace.autosave_path.exists(), timeout=5_000)
    qtbot.waitUntil(lambda: np.array_equal(
        load_autosave(workspace.autosave_path, doc.volume)[0].array, painted), timeout=5_000)


def _paint_lesion_and_save(win, qtbot) -> None:
    win.document.add_label("lesion")
    win.annotate.set_tool("brush")
    win.annotate.set_brush(radius_mm=RADIUS)
    _paint(win, [(20, 20), (30, 30)])
    with qtbot.waitSignal(win.annotate.sigSaved, timeout=10_000):
        _ctrl_s(win)


def test_an_unreadable_seg_does_not_take_the_boxes_classes_and_rulers_with_it(
        make_main_window, qtbot, tmp_path, ct_series_dir):
    win = _window(make_main_window, qtbot, ct_series_dir)
    doc, ctl = win.document, win.annotate
    k = doc.slice_index
    box = _draw_box_class_and_ruler(win, k)
    _paint_lesion_and_save(win, qtbot)
    seg = Workspace.for_series(doc.volume).seg_path
    damaged = seg.read_bytes()[:1000]  # a copy cut short
    seg.write_bytes(damaged)
    with qtbot.waitSignal(ctl.sigFailed, timeout=10_000) as failed:
        _reopen(win, qtbot, ct_series_dir, tmp_path / "other")
    assert "segmentation could not be read" in failed.args[0]
    (back,) = doc.annotation.boxes
    assert (back.uid, back.slice_index) == (box.uid, k)
    assert doc.annotation.boxes.class_of(k).label == "cardiomegaly"
    assert len(doc.measurements) == 1
    assert not doc.annotation.dirty
    (kept,) = seg.parent.glob("segmentation.unreadable-*.dcm")
    assert kept.name in failed.args[0] and kept.read_bytes() == damaged
    # painting again and saving writes a new SEG beside it: the damaged one is never replaced
    _paint_lesion_and_save(win, qtbot)
    assert seg.read_bytes() != damaged and kept.read_bytes() == damaged


def test_closing_with_save_keeps_what_the_seg_could_not_hold_in_the_autosave(
        make_main_window, qtbot, tmp_path):
    from medviewer.ui.annotate import autosave as annotate_autosave

    folder = _multiframe(tmp_path / "legacy", enhanced=False)
    win = _window(make_main_window, qtbot, folder)
    doc, ctl = win.document, win.annotate
    doc.add_label("lesion")
    ctl.set_tool("brush")
    ctl.set_brush(radius_mm=RADIUS)
    _, painted = _paint(win, [(20, 20), (30, 30)])
    workspace = Workspace.for_series(doc.volume)
    assert not workspace.autosave_path.exists()  # the 30 s autosave has not run yet
    ctl.safety.ask_unsaved = lambda n: annotate_autosave.SAVE
    volume = doc.volume
    win.close()
    assert workspace.sr_path.exists()  # what could be saved is
    labelmap, _ = load_autosave(workspace.autosave_path, volume)
    assert np.array_equal(labelmap.array, painted)  # the rest waits for the next start


def _cr_without_pixel_size(folder):
    import pydicom
    from pydicom.uid import ComputedRadiographyImageStorage

    path, _ = syn.write_chest_xray(folder, size=64, seed=5)
    ds = pydicom.dcmread(path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    ds.Modality, ds.PixelSpacing = "CR", [0, 0]  # as some digitisers write it
    del ds.ImagerPixelSpacing
    ds.save_as(path)
    return folder


def test_a_ruler_on_an_image_without_pixel_size_is_saved_and_read_back_in_pixels(
        make_main_window, qtbot, tmp_path):
    import highdicom as hd

    folder = _cr_without_pixel_size(tmp_path / "cr")
    win = _window(make_main_window, qtbot, folder)
    doc, ctl, view = win.document, win.annotate, win.viewer.single_view
    win.viewer.set_tool("distance")
    _slice_drag(win, [(10, 10), (20, 20), (40, 50)])
    (ruler,) = [m for m in view.measurements.items if isinstance(m, DistanceMeasurement)]
    shown = ruler.label.toPlainText()
    assert shown.endswith(" px")
    with qtbot.waitSignal(ctl.sigSaved, timeout=10_000) as saved:
        _ctrl_s(win)
    sr_path = saved.args[0][-1]
    report = hd.sr.MeasurementReport.from_sequence([hd.sr.srread(sr_path)])
    (length,) = [m for g in report.get_planar_roi_measurement_groups()
                 for m in g.get_measurements()]
    assert length.unit.value == "{pixels}"
    assert f"{float(length.value):.1f} px" == shown  # the number the reader saw, in px
    sr_path.with_suffix(".json").unlink()
    _, _, (line,), _ = read_sr(sr_path, doc.volume)
    assert line.unit == "px" and line.length_mm == pytest.approx(float(length.value))
    _reopen(win, qtbot, folder, tmp_path / "other")
    (back,) = [m for m in view.measurements.items if isinstance(m, DistanceMeasurement)]
    assert back.label.toPlainText() == shown


def test_an_unreadable_sr_does_not_take_the_segmentation_with_it(tmp_path, ct_series_dir):
    """The other way round, as the load worker does it: the SEG's labels come back, the
    reason names the SR, and the damaged SR is left as it is."""
    from medviewer.core.annotations import BoxSet, LabelMap
    from medviewer.core.dicom import load_series, scan
    from medviewer.ui.annotate.storage import load_task, save_task

    volume = load_series(scan(ct_series_dir, cache=False).all_series()[0])
    labelmap = LabelMap.for_volume(volume)
    lesion = labelmap.table.add("lesion")
    labelmap.array[3, 10:20, 10:20] = lesion.value
    save_task(None, volume, labelmap.array, labelmap.table, BoxSet(), None, "J")
    sr = Workspace.for_series(volume).sr_path
    sr.write_bytes(b"not an SR" * 30)
    annotation, _, notes = load_task(None, volume)
    assert np.array_equal(annotation.labelmap.array, labelmap.array)
    assert [label.name for label in annotation.labelmap.table] == ["lesion"]
    assert len(notes) == 1 and notes[0].startswith("the boxes, classes and measurements could "
                                                   "not be read")
    (kept,) = sr.parent.glob("annotations.unreadable-*.dcm")
    assert kept.name in notes[0] and kept.read_bytes() == b"not an SR" * 30
    assert kept.with_suffix(".json").is_file() and not sr.exists()  # its sidecar went with it
