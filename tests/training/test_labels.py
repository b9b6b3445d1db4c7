"""Excluded segments are ignored, not background: in the loss, the scores and the job file
(issue 11.17)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medviewer.training.errors import TrainingError
from medviewer.training.job import load_job
from medviewer.training.labels import IGNORE, Segment, auto_label, target_value, unmapped
from medviewer.training.metrics import segmentation_scores
from medviewer.training.recipes import batch_loss

LABELS = ["background", "body", "lung", "nodule", "spine"]


def test_ignored_voxels_change_neither_the_loss_nor_its_gradient():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 8, 8, requires_grad=True)
    target = torch.randint(0, 5, (2, 8, 8))
    marked = target.clone()
    marked[:, :3] = IGNORE  # an excluded pen mark over three rows
    # the same voxels left out by hand: rows 3.. only
    expected = batch_loss("segmentation", logits[:, :, 3:], target[:, 3:])
    got = batch_loss("segmentation", logits, marked)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    got.backward()
    assert torch.count_nonzero(logits.grad[:, :, :3]) == 0


def test_ignored_voxels_are_not_scored():
    truth = np.array([[0, 1, 1, IGNORE]])
    pred = np.array([[0, 1, 1, 1]])  # the model says 1 where the reader excluded a mark
    assert segmentation_scores([pred], [truth], ["background", "lesion"])["dice"] == 1.0


def test_names_any_case_codes_and_the_jobs_choice():
    lung = ("SCT", "39607008", "Lung")
    assert auto_label("Nodule", None, LABELS) == "nodule"
    assert auto_label("left lung", lung, LABELS) == "lung"
    assert auto_label("segment 1", ("SCT", "85756007", "Tissue"), LABELS) is None
    assert target_value("segment 1", None, LABELS, {"Segment 1": "Nodule"}) == 3
    assert target_value("lung", None, LABELS, {"LUNG": None}) == IGNORE  # the job wins
    assert target_value("segment 1", None, LABELS, {}) is None
    segments = [Segment("segment 1", 40), Segment("segment 2", 0), Segment("lung", 9)]
    assert [s.name for s in unmapped(segments, LABELS, {})] == ["segment 1"]  # empty: fine
    assert unmapped(segments, LABELS, {"segment 1": None}) == []


def test_the_job_file_takes_a_mapping_and_refuses_a_malformed_one(tmp_path):
    def job(mapping):
        path = tmp_path / "job.json"
        path.write_text(json.dumps({"model": "lab4-chest-unet",
                                    "data": {"demo": 2, "segment_labels": mapping}}))
        return path

    assert load_job(job({"segment 1": "nodule", "pen": None})).data.segment_labels == \
        {"segment 1": "nodule", "pen": None}
    with pytest.raises(TrainingError, match="'segment 1' to 3"):
        load_job(job({"segment 1": 3}))
    with pytest.raises(TrainingError, match="segment_labels' must be an object"):
        load_job(job(["segment 1"]))


def test_segments_of_a_fractional_seg_from_another_tool(tmp_path):
    """A FRACTIONAL SEG written by highdicom as another tool would (two segments, one coded
    Lung, frames of one segment only on some slices): names, codes and voxel counts."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    from medviewer.core import synthetic as syn
    from medviewer.training.labels import read_segments

    hu, _ = syn.ct_chest_phantom((4, 32, 32), (5.0, 2.0, 2.0), seed=1, nodules=())
    syn.write_series(tmp_path / "ct", hu, spacing=(5.0, 2.0, 2.0), seed=1)
    sources = sorted((pydicom.dcmread(p) for p in (tmp_path / "ct").iterdir()),
                     key=lambda ds: float(ds.ImagePositionPatient[2]))
    masks = np.zeros((4, 32, 32, 2), np.float32)
    masks[1, 4:10, 4:10, 0] = 0.6  # 36 voxels of "Left lung"
    masks[2, 20:22, 20:25, 1] = 1.0  # 10 voxels of "Marker"
    algorithm = hd.AlgorithmIdentificationSequence(
        name="other tool", version="1", family=codes.cid7162.ArtificialIntelligence)
    descriptions = [
        hd.seg.SegmentDescription(1, "Left lung", codes.SCT.AnatomicalStructure,
                                  codes.SCT.Lung, hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                                  algorithm),
        hd.seg.SegmentDescription(2, "Marker", codes.SCT.Tissue, codes.SCT.Tissue,
                                  hd.seg.SegmentAlgorithmTypeValues.MANUAL)]
    seg = hd.seg.Segmentation(sources, masks, hd.seg.SegmentationTypeValues.FRACTIONAL,
                              descriptions, hd.UID(), 99, hd.UID(), 1, "Other", "Tool", "1",
                              "0", max_fractional_value=255)
    seg.save_as(tmp_path / "seg.dcm")
    found = {s.name: s for s in read_segments(tmp_path / "seg.dcm")}
    assert found["Left lung"].voxels == 36 and found["Marker"].voxels == 10
    assert auto_label("Left lung", found["Left lung"].code, LABELS) == "lung"
    assert [s.name for s in unmapped(found.values(), LABELS, {})] == ["Marker"]
