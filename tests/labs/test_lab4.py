"""Lab 4: Dice / IoU units, label-map upsampling, and the shipped chest CT U-Net at work."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage

from medviewer.core.synthetic import (
    CHEST_LABELS,
    DEMO_NODULES,
    ct_chest_labels,
    ct_chest_phantom,
)
from medviewer.inference.metrics import dice, iou, per_label_scores, scores_against_mask
from medviewer.labs.lab4.plugin import PLUGIN, label_logits, upsample_labels

MODEL_ID = "lab4-chest-unet"
LUNG, NODULE = CHEST_LABELS["lung"], CHEST_LABELS["nodule"]


# --- Dice and IoU ---------------------------------------------------------------------------

def test_dice_and_iou_of_known_overlap():
    pred = np.zeros((10, 10), np.uint8)
    truth = np.zeros((10, 10), np.uint8)
    pred[0:4, 0:5] = 2  # 20 voxels
    truth[2:6, 0:5] = 2  # 20 voxels, 10 shared
    assert dice(pred, truth, 2) == pytest.approx(2 * 10 / 40)
    assert iou(pred, truth, 2) == pytest.approx(10 / 30)


def test_empty_label_scores_one_when_absent_from_both_and_zero_when_missing():
    a = np.zeros((4, 4), np.uint8)
    b = a.copy()
    b[1, 1] = 3
    assert dice(a, a, 3) == 1.0 and iou(a, a, 3) == 1.0
    assert dice(a, b, 3) == 0.0 and iou(b, a, 3) == 0.0


def test_per_label_scores_names_labels_by_index_and_skips_background():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, (6, 8, 8)).astype(np.uint8)
    pred = truth.copy()
    pred[0] = 0
    scores = per_label_scores(pred, truth, ["background", "body", "lung"])
    assert set(scores) == {"body", "lung"}
    for value, name in ((1, "body"), (2, "lung")):
        assert scores[name]["dice"] == pytest.approx(dice(pred, truth, value))
        assert scores[name]["iou"] == pytest.approx(iou(pred, truth, value))
        assert scores[name]["truth_voxels"] == int((truth == value).sum())
        assert scores[name]["dice"] < 1.0


def test_scores_refuse_maps_of_different_shapes():
    with pytest.raises(ValueError):
        dice(np.zeros((2, 3)), np.zeros((3, 2)), 1)


# --- upsampling of the model's label map ------------------------------------------------------

def test_upsampled_labels_match_bilinear_logits_everywhere():
    rng = np.random.default_rng(1)
    logits = ndimage.gaussian_filter(rng.standard_normal((2, 4, 16, 16)), (0, 0, 2, 2))
    logits = logits.astype(np.float32)
    for size in ((64, 64), (40, 24)):
        full = ndimage.zoom(logits, (1, 1, size[0] / 16, size[1] / 16), order=1,
                            mode="nearest", grid_mode=True).argmax(axis=1)
        assert np.array_equal(upsample_labels(logits, size), full)
    assert np.array_equal(upsample_labels(logits, (16, 16)), logits.argmax(axis=1))


# --- a binary network: one output channel, the foreground logit ----------------------------

def test_a_one_channel_output_is_foreground_where_its_logit_is_positive():
    logit = np.array([[[[-2.0, -0.0, 0.0, 1e-6], [3.0, -1e-6, 0.5, -7.0]]]], np.float32)
    labels = label_logits(logit).argmax(axis=1)
    assert np.array_equal(labels[0], (logit[0, 0] > 0).astype(labels.dtype))
    many = np.random.default_rng(0).standard_normal((1, 3, 2, 4)).astype(np.float32)
    assert label_logits(many) is many  # one logit per label: argmax as it is


@pytest.mark.parametrize("pipeline", ["segmentation", "chest-segmenter"])
def test_both_pipelines_label_a_binary_nets_foreground(pipeline):
    manifest = SimpleNamespace(onnx_outputs=["logits"], options={"pipeline": pipeline},
                               task="segmentation", folder=None)
    segmenter = PLUGIN.pipeline_for(manifest, None)
    logit = np.full((1, 1, 8, 8), -3.0, np.float32)
    logit[0, 0, 2:6, 2:6] = 4.0
    result = SimpleNamespace(label_map=None)
    segmenter.postprocess({"logits": logit}, [0], np.zeros((1, 16, 16), np.int16), result)
    assert set(np.unique(result.label_map)) == {0, 1}
    assert np.array_equal(np.argwhere(result.label_map[0] == 1).min(0), [4, 4])


# --- the shipped model --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chest_model():
    from medviewer.inference import open_model

    return open_model(MODEL_ID, threads=2)


@pytest.fixture(scope="module")
def demo_run(chest_model, demo_study):
    from medviewer.core.dicom import load_series

    volume = load_series(demo_study / "DEMO-0001" / "CT_CHEST")
    truth = json.loads((demo_study / "ground_truth.json").read_text())["chest_ct"]
    return SimpleNamespace(volume=volume, truth=truth, result=chest_model.run(volume))


def test_manifest_reports_held_out_dice_and_iou_per_label(chest_model):
    m = chest_model.manifest
    assert m.task == "segmentation" and m.label_names == list(CHEST_LABELS)
    per_label = m.metrics["per_label"]
    assert set(per_label) == {"body", "lung", "nodule", "spine"}
    assert all(0.0 <= s["dice"] <= 1.0 and 0.0 <= s["iou"] <= s["dice"] + 1e-9
               for s in per_label.values())
    assert "disjoint" in m.metrics["split"]
    assert m.provenance["command"] == "python -m medviewer.labs.lab4.demo"


def test_whole_demo_ct_is_segmented_on_its_own_grid(demo_run):
    result, volume = demo_run.result, demo_run.volume
    assert result.label_map.shape == volume.voxels.shape
    assert result.label_map.dtype == np.uint8
    assert result.slice_indices == list(range(volume.voxels.shape[0]))
    assert set(result.timings) >= {"preprocess", "inference", "postprocess", "total"}


def test_demo_ct_lungs_match_the_phantom_truth(demo_run):
    truth = ct_chest_labels(demo_run.volume.voxels.shape, (2.5, 0.7, 0.7), nodules=DEMO_NODULES)
    result = demo_run.result
    scores = scores_against_mask(result.label_map, result.labels, truth, result.labels)
    assert scores["lung"]["dice"] > 0.95
    assert scores["body"]["dice"] > 0.9
    assert scores["spine"]["dice"] > 0.7


@pytest.mark.parametrize("diameter", [15.0, 20.0])
def test_demo_ct_nodules_are_labelled_where_the_ground_truth_puts_them(demo_run, diameter):
    nodule = next(n for n in demo_run.truth["nodules"] if n["diameter_mm"] == diameter)
    k, r, c = (int(round(v)) for v in nodule["center_voxel"])
    radius = int(nodule["diameter_mm"] / 2 / 0.7)
    window = demo_run.result.label_map[k, r - radius:r + radius + 1, c - radius:c + radius + 1]
    disc = np.hypot(*np.mgrid[-radius:radius + 1, -radius:radius + 1]) <= radius
    assert (window[disc] == NODULE).mean() > 0.6  # most of the true disc is labelled nodule
    assert demo_run.result.label_map[k, r, c] == NODULE


def test_no_nodule_is_invented_on_a_held_out_phantom_without_nodules(chest_model):
    hu, _ = ct_chest_phantom((24, 256, 256), (12.5, 1.4, 1.4), seed=424242, nodules=())
    result = chest_model.run(SimpleNamespace(voxels=hu, modality="CT"))
    truth = ct_chest_labels(hu.shape, (12.5, 1.4, 1.4), nodules=())
    assert (result.label_map == NODULE).sum() < 20
    assert dice(result.label_map, truth, LUNG) > 0.9


def test_a_held_out_nodule_is_found(chest_model):
    spec = (("test", 1, 0.5, 0.1, -0.1, 18.0),)
    shape, spacing = (40, 256, 256), (7.5, 1.4, 1.4)
    hu, truth = ct_chest_phantom(shape, spacing, seed=777, noise_hu=12.0, nodules=spec)
    result = chest_model.run(SimpleNamespace(voxels=hu, modality="CT"))
    labels = ct_chest_labels(shape, spacing, nodules=spec)
    assert truth["nodules"], "the test nodule must fit in the lung"
    assert dice(result.label_map, labels, NODULE) > 0.5


def test_series_of_another_modality_is_refused(chest_model):
    from medviewer.inference import ModelError

    with pytest.raises(ModelError, match="CT"):
        chest_model.run(SimpleNamespace(voxels=np.zeros((2, 32, 32), np.int16), modality="MR"))


def test_plugin_and_data_import_no_torch():
    import subprocess
    import sys

    code = ("import sys, medviewer.labs.lab4.plugin, medviewer.labs.lab4.data; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'PySide6')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_binary_net_trains_on_binary_cross_entropy_plus_dice():
    torch = pytest.importorskip("torch")
    from medviewer.training.recipes import batch_loss

    g = torch.Generator().manual_seed(0)
    logit = torch.randn(2, 1, 8, 8, generator=g, requires_grad=True)
    target = (torch.rand(2, 8, 8, generator=g) > 0.5).long()
    loss = batch_loss("segmentation", logit, target)
    two = torch.cat([torch.zeros_like(logit), logit], dim=1)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logit[:, 0], target.float())
    assert torch.allclose(loss, batch_loss("segmentation", two, target))
    assert torch.allclose(torch.nn.functional.cross_entropy(two, target), bce)
    loss.backward()
    assert torch.isfinite(logit.grad).all() and logit.grad.abs().sum() > 0


def test_a_binary_nets_validation_counts_its_foreground():
    from medviewer.training.evaluate import Collector

    target = np.zeros((2, 8, 8), np.int64)
    target[:, 2:6, 2:6] = 1
    logit = np.where(target[:, None] == 1, 3.0, -3.0).astype(np.float32)  # (2, 1, 8, 8)
    collector = Collector("segmentation", ["background", "nodule"])
    collector.add_logits(logit, target, ["a", "b"])
    scores = collector.scores()
    assert scores["dice_nodule"] == pytest.approx(1.0) and scores["per_case"]["a"] == 1.0


def test_remeasure_rescores_the_shipped_weights_and_rewrites_only_the_metrics(tmp_path):
    """`python -m medviewer.labs.lab4.demo --remeasure`: the manifest's numbers are those of
    the weights the viewer runs, with today's metrics; graph, weights and provenance stay."""
    import shutil
    from dataclasses import replace

    from medviewer.inference import load_manifest, write_manifest
    from medviewer.inference.registry import shipped_models_dir
    from medviewer.labs.lab4 import demo

    folder = tmp_path / "lab4-chest-unet"
    shutil.copytree(shipped_models_dir() / "lab4-chest-unet", folder)
    shipped = load_manifest(folder)
    write_manifest(replace(shipped, metrics={"dice_nodule": 0.1}), folder)  # stale numbers
    demo.main(["--out", str(tmp_path), "--remeasure", "--model", "lab4-chest-unet"])
    again = load_manifest(folder)
    assert again.metrics["dice_nodule"] == shipped.metrics["dice_nodule"]  # same phantoms
    nodule = again.metrics["demo_ct"]["per_label"]["nodule"]
    assert nodule["dice"] > 0.95 and nodule["unit"] == "mm" and "hd95" in nodule
    assert again.files == shipped.files and again.provenance["command"] == \
        shipped.provenance["command"]
    assert again.provenance["metrics_command"].endswith("--remeasure --model lab4-chest-unet")
