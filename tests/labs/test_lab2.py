"""Lab 2: phantom training data, the shipped nodule-slice model on the demo CT, local weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from medviewer.core import demo
from medviewer.core import synthetic as syn
from medviewer.core.dicom import load_series, scan
from medviewer.inference import ModelError, open_model
from medviewer.labs.lab2 import data
from medviewer.labs.lab2.models import SmallResNet, load_backbone_weights

MODEL_ID = "lab2-nodule-slice"


@pytest.fixture(scope="module")
def demo_ct(demo_study: Path):
    (series,) = [s for s in scan(demo_study / "DEMO-0001").all_series() if s.modality == "CT"]
    return load_series(series)


@pytest.fixture(scope="module")
def nodule_truth(demo_study: Path) -> list[dict]:
    return json.loads((demo_study / demo.TRUTH_FILE).read_text())["chest_ct"]["nodules"]


@pytest.fixture(scope="module")
def demo_run(demo_ct):
    model = open_model(MODEL_ID)
    return model, model.run(demo_ct)


def _nodule_score(result) -> np.ndarray:
    return result.scores[:, result.labels.index("nodule")]


# --- training data --------------------------------------------------------------------------

def test_phantom_case_marks_the_slices_its_nodules_cross():
    case = data.make_case(4242)
    spacing = case.spacing[0]
    assert case.nodules and case.hu.shape[1:] == (data.ROWS, data.ROWS)
    for nodule in case.nodules:
        assert case.nodule[round(nodule["center_voxel"][0])]
    positives = np.flatnonzero(case.nodule)
    nearest = [min(abs(k - n["center_voxel"][0]) * spacing - n["diameter_mm"] / 2
                   for n in case.nodules) for k in positives]
    assert max(nearest) < 0  # every positive slice cuts a nodule
    assert case.lung[positives].all() and not case.lung.all()


def test_training_slices_keep_every_positive_and_balance_the_rest():
    case = data.make_case(4243)
    chosen = data.training_slices(case, np.random.default_rng(0))
    assert set(np.flatnonzero(case.nodule)) <= set(chosen)
    negatives = (~case.nodule[chosen]).sum()
    assert case.nodule.sum() <= negatives <= 2 * case.nodule.sum() + 6
    images, extras, targets = data.samples(case, chosen[:3])
    assert images.shape == (3, 3, *data.INPUT.size) and 0 <= images.min() <= images.max() <= 1
    assert extras.shape == (3, 2) and targets.tolist() == case.nodule[chosen[:3]].tolist()


# --- the shipped model on the demo study ----------------------------------------------------

def test_demo_nodule_slices_score_above_slices_far_from_any_nodule(demo_run, nodule_truth):
    model, result = demo_run
    assert result.scores.shape == (demo.CT_SHAPE[0], 2)
    score = _nodule_score(result)
    slice_mm = demo.CT_SPACING[0]
    distance = np.min([np.abs(np.arange(len(score)) - n["center_voxel"][0]) * slice_mm
                       - n["diameter_mm"] / 2 for n in nodule_truth], axis=0)
    far = score[distance > 10.0]  # at least 10 mm beyond every nodule's edge
    assert len(far) > 40
    for nodule in nodule_truth:
        if nodule["diameter_mm"] >= 15:
            centre = score[round(nodule["center_voxel"][0])]
            assert centre > 0.5 and centre > far.max(), nodule["label"]


def test_manifest_demo_metrics_match_the_viewer_run(demo_run):
    """The demo CT numbers in the manifest are what the ONNX model gives through the plugin."""
    model, result = demo_run
    labels = syn.ct_chest_labels(demo.CT_SHAPE, demo.CT_SPACING)
    nodule = (labels == syn.CHEST_LABELS["nodule"]).any(axis=(1, 2))
    lung = (labels == syn.CHEST_LABELS["lung"]).any(axis=(1, 2)) | nodule
    score = _nodule_score(result)[lung]
    recorded = model.manifest.metrics["demo_ct"]
    assert recorded["n"] == lung.sum() and recorded["positives"] == nodule.sum()
    assert roc_auc_score(nodule[lung], score) == pytest.approx(recorded["roc_auc"], abs=0.01)
    accuracy = np.mean((score >= 0.5) == nodule[lung])
    assert accuracy == pytest.approx(recorded["accuracy"], abs=0.02)
    held_out = model.manifest.metrics
    assert held_out["n"] > held_out["positives"] > 0 and "seeds" in held_out["split"]


def test_inputs_are_prev_current_next_with_age_and_sex_from_the_header(demo_run, demo_ct):
    model, _ = demo_run
    inputs = model.pipeline.preprocess(model.pipeline.grey_voxels(demo_ct), [0, 60], demo_ct)
    assert inputs["image"].shape == (2, 3, *model.manifest.input.size)
    np.testing.assert_array_equal(inputs["image"][0, 0], inputs["image"][0, 1])  # no slice -1
    assert not np.array_equal(inputs["image"][1, 0], inputs["image"][1, 2])
    np.testing.assert_allclose(inputs["extras"], [[0.66, 1.0], [0.66, 1.0]])  # 066Y, M


def test_the_model_refuses_a_non_ct_series(demo_study):
    truth = json.loads((demo_study / demo.TRUTH_FILE).read_text())["digits"]
    (series,) = scan(demo_study / truth["folder"]).all_series()
    with pytest.raises(ModelError, match="CT"):
        open_model(MODEL_ID).run(load_series(series), [0])


# --- local pretrained weights ---------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_backbone_weights_load_from_a_local_file(tmp_path, suffix):
    from safetensors.torch import save_file

    source = SmallResNet((4, 8, 8, 8))
    state = {k: v.clone() for k, v in source.state_dict().items()}
    state["fc.weight"] = torch.ones(3, 3)  # a classifier head the backbone lacks: skipped
    path = tmp_path / f"w{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    target = load_backbone_weights(SmallResNet((4, 8, 8, 8)), path)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value)


def test_backbone_weights_of_another_network_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"unrelated.weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ModelError, match="fits the backbone"):
        load_backbone_weights(SmallResNet((4, 8, 8, 8)), tmp_path / "other.safetensors")
