"""How each segment was made, from the first stroke to the SEG and back: a label drawn by hand
is MANUAL, a model's accepted label AUTOMATIC, and once a person edits its voxels SEMIAUTOMATIC;
undo, autosave and the SEG all keep it. Also: what a save leaves out (empty labels, an empty
map) and that highdicom's INFO lines stay off the log."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medviewer.core.annotations import (
    AnnotationError,
    History,
    LabelMap,
    accept_prediction,
    brush,
    erase,
    load_autosave,
    read_seg_table,
    save_autosave,
    write_seg,
)
from medviewer.core.annotations.workspace import Workspace
from medviewer.core.dicom import load_series, scan

MODEL = ("lab4-chest-unet", "1.1.0")


@pytest.fixture
def volume(ct_series_dir: Path):
    return load_series(scan(ct_series_dir, cache=False).all_series()[0])


def _accepted(volume) -> tuple[LabelMap, History]:
    """A model's 'lung' and 'heart' accepted into a map that already has a drawn 'lesion'."""
    labelmap = LabelMap.for_volume(volume)
    history = History(labelmap)
    prediction = np.zeros(labelmap.shape, np.uint8)
    prediction[5:9, 10:30, 10:30] = 1
    prediction[5:9, 40:50, 40:50] = 2
    accept_prediction(labelmap, history, prediction, ["background", "lung", "heart"],
                      algorithm=MODEL)
    with history.stroke("add label"):
        labelmap.table.add("lesion")
    brush(labelmap, history, (12, 30, 30), 8.0, labelmap.table.by_name("lesion").value)
    return labelmap, history


def _origins(labelmap: LabelMap) -> dict[str, tuple]:
    return {lab.name: (lab.algorithm_type, lab.algorithm) for lab in labelmap.table}


def test_drawn_accepted_and_corrected_labels_say_how_they_were_made(volume):
    labelmap, history = _accepted(volume)
    assert _origins(labelmap) == {"lung": ("AUTOMATIC", MODEL), "heart": ("AUTOMATIC", MODEL),
                                  "lesion": ("MANUAL", None)}
    lung = labelmap.table.by_name("lung").value
    brush(labelmap, history, (6, 31, 20), 8.0, lung)  # the reader fixes the lung's edge
    assert _origins(labelmap)["lung"] == ("SEMIAUTOMATIC", MODEL)
    assert _origins(labelmap)["heart"] == ("AUTOMATIC", MODEL)  # untouched
    history.undo()
    assert _origins(labelmap)["lung"] == ("AUTOMATIC", MODEL)  # undo: the model's again
    history.redo()
    assert _origins(labelmap)["lung"] == ("SEMIAUTOMATIC", MODEL)


def test_painting_over_or_erasing_a_models_label_corrects_it_but_empty_space_does_not(volume):
    labelmap, history = _accepted(volume)
    erase(labelmap, history, (0, 5, 5), 8.0)  # nothing there: no edit, no correction
    assert _origins(labelmap)["heart"] == ("AUTOMATIC", MODEL)
    lesion = labelmap.table.by_name("lesion").value
    brush(labelmap, history, (6, 45, 45), 5.0, lesion)  # a drawn label over the heart
    assert _origins(labelmap)["heart"] == ("SEMIAUTOMATIC", MODEL)
    assert _origins(labelmap)["lesion"] == ("MANUAL", None)
    erase(labelmap, history, (6, 20, 20), 5.0)
    assert _origins(labelmap)["lung"] == ("SEMIAUTOMATIC", MODEL)


def test_the_seg_says_how_each_segment_was_made_and_reads_back_the_same(volume, tmp_path):
    labelmap, history = _accepted(volume)
    brush(labelmap, history, (6, 31, 20), 8.0, labelmap.table.by_name("lung").value)
    path, notes = Workspace.for_series(volume).save_labels(labelmap.array, volume,
                                                           labelmap.table, annotator="jdoe")
    assert notes == []
    segments = {s.SegmentLabel: s for s in pydicom.dcmread(path).SegmentSequence}
    assert {n: s.SegmentAlgorithmType for n, s in segments.items()} == {
        "lung": "SEMIAUTOMATIC", "heart": "AUTOMATIC", "lesion": "MANUAL"}
    assert "SegmentationAlgorithmIdentificationSequence" not in segments["lesion"]
    for name in ("lung", "heart"):
        algo = segments[name].SegmentationAlgorithmIdentificationSequence[0]
        assert (algo.AlgorithmName, algo.AlgorithmVersion) == MODEL
        assert algo.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    back, table = read_seg_table(path, volume)
    np.testing.assert_array_equal(back, labelmap.array)
    assert {lab.name: (lab.algorithm_type, lab.algorithm) for lab in table} == \
        _origins(labelmap)


def test_an_autosave_keeps_how_each_label_was_made(volume):
    labelmap, history = _accepted(volume)
    brush(labelmap, history, (6, 31, 20), 8.0, labelmap.table.by_name("lung").value)
    path = save_autosave(Workspace.for_series(volume), labelmap, None)
    recovered, _ = load_autosave(path, volume)
    assert _origins(recovered) == _origins(labelmap)


def test_an_older_medviewer_seg_of_hand_drawn_labels_reads_as_manual(volume, tmp_path):
    """Before, hand-drawn segments were written SEMIAUTOMATIC by 'MedViewer manual'."""
    labels = np.zeros(volume.voxels.shape, np.uint8)
    labels[4, 10:20, 10:20] = 1
    path = write_seg(labels, volume, ["background", "lesion"], tmp_path / "old.dcm",
                     origins={1: ("SEMIAUTOMATIC", ("MedViewer manual", "1"))})
    _, table = read_seg_table(path, volume)
    assert (table[1].algorithm_type, table[1].algorithm) == ("MANUAL", None)


def test_empty_labels_are_left_out_and_said(volume):
    labelmap = LabelMap.for_volume(volume)
    for name in ("lung", "heart", "spine"):
        labelmap.table.add(name)
    labelmap.array[4, 10:20, 10:20] = labelmap.table.by_name("heart").value
    path, notes = Workspace.for_series(volume).save_labels(labelmap.array, volume,
                                                           labelmap.table)
    assert notes == ["'lung' and 'spine' not saved: no voxels"]
    ds = pydicom.dcmread(path)
    assert [(int(s.SegmentNumber), s.SegmentLabel) for s in ds.SegmentSequence] == \
        [(1, "heart")]
    assert ds.NumberOfFrames == 1  # one slice holds the heart: one frame


def test_a_map_without_voxels_writes_no_seg_and_replaces_the_last_one(volume, tmp_path):
    workspace = Workspace.for_series(volume)
    labelmap = LabelMap.for_volume(volume)
    labelmap.table.add("lung")
    labelmap.array[4, 10:20, 10:20] = 1
    first, _ = workspace.save_labels(labelmap.array, volume, labelmap.table)
    assert first.is_file()
    labelmap.array[...] = 0  # the reader erased it all, then saved
    path, notes = workspace.save_labels(labelmap.array, volume, labelmap.table)
    assert path is None and not first.exists()  # reopening must not bring the lung back
    assert notes == ["no SEG written: 'lung' has no voxels (the previous segmentation was "
                     "removed)"]
    with pytest.raises(AnnotationError, match="No label has any voxels"):
        write_seg(labelmap.array, volume, ["background", "lung"], tmp_path / "zero.dcm")
    assert not (tmp_path / "zero.dcm").exists()  # no 4 MB of all-zero frames


@pytest.fixture
def highdicom_as_installed():
    """highdicom's logger as a fresh interpreter has it (no level of its own)."""
    logger = logging.getLogger("highdicom")
    level = logger.level
    logger.setLevel(logging.NOTSET)
    yield
    logger.setLevel(level)


@pytest.mark.parametrize("what", ["SEG", "SR"])
def test_highdicom_info_lines_stay_off_the_log_on_every_save(volume, caplog, what,
                                                             highdicom_as_installed):
    from medviewer.core.annotations import BoxSet, ClassLabel

    caplog.set_level(logging.INFO)  # as the viewer configures logging
    workspace = Workspace.for_series(volume)
    if what == "SEG":
        labelmap = LabelMap.for_volume(volume)
        labelmap.table.add("lesion")
        labelmap.array[4, 10:20, 10:20] = 1
        path, _ = workspace.save_labels(labelmap.array, volume, labelmap.table)
        read_seg_table(path, volume)
    else:  # a class label alone: the SR is the whole save
        workspace.save_sr(volume, BoxSet([], [ClassLabel("pneumonia")]), annotator="J")
    chatter = [r.getMessage() for r in caplog.records if r.name.startswith("highdicom")
               and r.levelno < logging.WARNING]
    assert chatter == []
    assert logging.getLogger("highdicom").isEnabledFor(logging.WARNING)  # warnings still show
