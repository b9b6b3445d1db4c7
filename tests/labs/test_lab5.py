"""Lab 5: the film preparation, the detection metrics, the demo data, and the shipped heart
detector on the demo study's two radiographs (right box, right label, film pixels)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from medviewer.inference import detection_metrics as dm
from medviewer.inference import load_manifest, open_model
from medviewer.labs.lab5.plugin import PLUGIN, FilmDetector, film_to_unit, prepare_film

ROOT = Path(__file__).resolve().parents[2]
DETECTOR = ROOT / "models" / "lab5-heart-frcnn"
CPU = ["CPUExecutionProvider"]
needs_detector = pytest.mark.skipif(not DETECTOR.is_dir(), reason="lab5 demo model not built")


# --- preparation ---------------------------------------------------------------------------

def test_film_preparation_is_the_labs() -> None:
    from medviewer.core.synthetic import chest_xray_phantom

    pixels, truth = chest_xray_phantom(256, seed=4)
    x = prepare_film(pixels, (128, 128))
    assert x.shape == (3, 128, 128) and x.dtype == np.float32
    assert np.array_equal(x[0], x[2]) and 0.0 <= x.min() and x.max() <= 1.0
    x0, y0, x1, y1 = (v // 2 for v in truth["heart_box"])
    lung = x[0, 60:80, 25:40].mean()  # left of the heart, in the right lung field
    assert x[0, y0 + 5:y1 - 5, x0 + 5:x1 - 5].mean() > lung + 0.2  # the heart is bright
    stored_inverted = 4095 - pixels  # MONOCHROME1 keeps bright as low values
    assert np.allclose(film_to_unit(stored_inverted, inverted=True), film_to_unit(pixels),
                       atol=1e-6)


def test_plugin_names_its_pipeline() -> None:
    assert PLUGIN.lab == 5 and PLUGIN.pipelines["detection"] is FilmDetector


# --- detection metrics ---------------------------------------------------------------------

def boxes(rows, labels, scores=()):
    return dm.ImageBoxes(np.array(rows, float), labels, scores)


def test_box_iou_against_areas() -> None:
    a, b = [0, 0, 10, 10], [5, 0, 15, 10]
    assert dm.box_iou(a, b)[0, 0] == pytest.approx(50 / 150)
    assert dm.box_iou(a, [20, 20, 30, 30])[0, 0] == 0.0
    assert dm.box_iou([a, b], [a]).shape == (2, 1)


def test_average_precision_and_recall() -> None:
    truth = [boxes([[0, 0, 10, 10]], [0]), boxes([[50, 50, 70, 70]], [1])]
    perfect = [boxes([[0, 0, 10, 10]], [0], [0.9]), boxes([[50, 50, 70, 71]], [1], [0.8])]
    assert dm.average_precision(perfect, truth, label=0) == 1.0
    # a confident false positive ranked above the one true positive halves the precision
    fp_first = [boxes([[0, 0, 10, 10], [30, 30, 40, 40]], [0, 0], [0.5, 0.9]),
                boxes(np.zeros((0, 4)), [], [])]
    assert dm.average_precision(fp_first, truth, label=0) == pytest.approx(0.5)
    assert dm.average_precision(fp_first, truth, label=1) == 0.0
    wrong_label = [boxes([[0, 0, 10, 10]], [1], [0.9]), boxes([[50, 50, 70, 70]], [1], [0.3])]
    assert dm.recall(wrong_label, truth, score_threshold=0.5) == 0.0
    assert dm.recall(wrong_label, truth, score_threshold=0.2) == 0.5
    assert dm.average_precision(wrong_label, truth) == 1.0  # class-agnostic: both found
    report = dm.detection_report(perfect, truth, ["cardiomegaly", "normal heart"])
    assert report["map50"] == 1.0 and report["top_box_correct"] == 1.0


def test_a_truth_box_is_matched_once() -> None:
    truth = [boxes([[0, 0, 10, 10]], [0])]
    twice = [boxes([[0, 0, 10, 10], [0, 0, 10, 11]], [0, 0], [0.9, 0.8])]
    assert dm.recall(twice, truth, score_threshold=0.0) == 1.0
    assert dm.average_precision(twice, truth, label=0) == 1.0  # the duplicate comes after


# --- demo data -------------------------------------------------------------------------------

def test_demo_films_are_labelled_by_ctr_and_held_out() -> None:
    from medviewer.labs.lab5 import demo

    films = demo.make_films(range(30_000, 30_006), size=64)
    assert films.images.shape == (6, 3, 64, 64)
    assert np.array_equal(films.labels, np.where(films.ctrs > 0.5, 0, 1))
    assert ((films.boxes >= 0) & (films.boxes <= 64)).all()
    assert (films.boxes[:, 2:] > films.boxes[:, :2]).all()
    assert not set(demo.TRAIN_SEEDS) & set(demo.VALIDATION_SEEDS)
    assert not {2, 3} & (set(demo.TRAIN_SEEDS) | set(demo.VALIDATION_SEEDS))  # demo study


def test_a_few_training_steps_run_in_the_training_loop() -> None:
    torch = pytest.importorskip("torch")
    from dataclasses import replace

    from medviewer.labs.lab5 import demo
    from medviewer.labs.lab5.models import build_light

    torch.manual_seed(0)
    films = demo.make_films(range(30_000, 30_004), size=128)
    model = build_light()
    outcome = demo.fit(model, films, replace(demo.PLAN, epochs=2, batch=2, warmup=2))
    losses = [epoch["train_loss"] for epoch in outcome.history]
    assert len(losses) == 2 and np.isfinite(losses).all()
    assert not model.training and len(demo.predict(model, films.images[:1])) == 1


def test_detector_weights_are_keyed_as_torchvision_writes_them(tmp_path) -> None:
    """No wrapper prefix: a course state dict fits the full detector, and weights written
    with the old `detector.` prefix (the shipped light model's) still load."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    from medviewer.labs.lab5.models import build_full, build_light
    from medviewer.training.export import load_weights

    with torch.device("meta"):
        course = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3)
        assert list(build_full(2).state_dict()) == list(course.state_dict())
    model = build_light()
    prefixed = {f"detector.{k}": v.clone() + 1 for k, v in model.state_dict().items()}
    save_file(prefixed, str(tmp_path / "old.safetensors"))
    load_weights(build_light(), tmp_path / "old.safetensors")  # strict
    again = load_weights(model, tmp_path / "old.safetensors").state_dict()
    assert all(torch.equal(again[k.removeprefix("detector.")], v) for k, v in prefixed.items())
    assert model.detector.backbone is model.backbone


def test_eval_and_train_reach_the_torchvision_detector() -> None:
    pytest.importorskip("torch")
    from medviewer.labs.lab5.models import build_light

    model = build_light().eval()
    assert not model.detector.training and not model.detector.roi_heads.training
    model.train()
    assert model.detector.training and model.detector.rpn.training


# --- the shipped heart detector ----------------------------------------------------------

@pytest.fixture(scope="module")
def radiographs(demo_study: Path):
    from medviewer.core.dicom import load_series, scan

    truth = json.loads((demo_study / "ground_truth.json").read_text())
    by_uid = {truth[k]["series_instance_uid"]: truth[k] for k in ("chest_dx", "cardio_dx")}
    return [(load_series(s), by_uid[s.series_instance_uid])
            for s in scan(demo_study).all_series() if s.series_instance_uid in by_uid]


@needs_detector
def test_shipped_detector_finds_the_heart_with_the_right_label(radiographs) -> None:
    model = open_model(DETECTOR, CPU)
    assert len(radiographs) == 2
    for volume, truth in radiographs:
        result = model.run(volume)
        top = result.boxes[0]
        assert top.label == ("cardiomegaly" if truth["enlarged_heart"] else "normal heart")
        # pixel coordinates of the 1024 px film, not of the model's 256 px grid
        assert dm.box_iou([top.x0, top.y0, top.x1, top.y1], truth["heart_box"])[0, 0] > 0.5
        assert (top.slice_index, volume.voxels.shape[1:]) == (0, (1024, 1024))
        scores = [b.score for b in result.boxes]
        assert scores == sorted(scores, reverse=True) and min(scores) >= 0.05


@needs_detector
def test_shipped_detector_reads_a_monochrome1_film_alike(radiographs) -> None:
    model = open_model(DETECTOR, CPU)
    volume, truth = radiographs[0]
    inverted = SimpleNamespace(voxels=4095 - volume.voxels, photometric="MONOCHROME1",
                               modality=volume.modality, sources=volume.sources, series=None)
    a, b = model.run(volume).boxes[0], model.run(inverted).boxes[0]
    assert a.label == b.label
    assert dm.box_iou([a.x0, a.y0, a.x1, a.y1], [b.x0, b.y0, b.x1, b.y1])[0, 0] > 0.95


@needs_detector
def test_score_threshold_lives_in_the_graph() -> None:
    """Noise gives few or no boxes, and none below the 0.05 threshold the graph keeps."""
    model = open_model(DETECTOR, CPU)
    noise = np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)
    out = model.session.run({"image": noise})
    assert (out["scores"] >= 0.05).all() and len(out["scores"]) <= 20


@needs_detector
def test_shipped_manifest_is_honest_and_small() -> None:
    m = load_manifest(DETECTOR)
    assert (m.arch, m.task, m.label_names) == ("lab5.fasterrcnn_light", "detection",
                                                ["cardiomegaly", "normal heart"])
    for key in ("map50", "ap50_any_label", "recall", "split", "n"):
        assert key in m.metrics
    assert "held-out" in m.metrics["split"] and m.metrics["n"] >= 32
    assert m.provenance["command"] == "python -m medviewer.labs.lab5.demo"
    assert m.provenance["pretrained"].startswith("none")
    size = sum(p.stat().st_size for p in DETECTOR.iterdir())
    assert size < 8 * 2 ** 20


@needs_detector
def test_shipped_detector_is_the_gathering_export_of_its_weights() -> None:
    """The shipped model.onnx is exported by today's lab 5 export (levels gathered, not
    scattered) from the weights beside it: torch on those weights gives its boxes."""
    import onnx
    import torch

    from medviewer.inference.quantize import demo_feeds, demo_volume
    from medviewer.labs import architectures
    from medviewer.training.export import load_weights

    loaded = open_model(DETECTOR, CPU)
    m = loaded.manifest
    graph = onnx.load(str(m.path("model.onnx"))).graph
    assert sum(n.op_type in ("ScatterElements", "Scatter") for n in graph.node) == 1
    arch = architectures.get(m.arch)
    model = load_weights(arch.build(num_classes=len(m.labels), **arch.default_options),
                         m.path("weights.safetensors")).eval()
    image = demo_feeds(loaded.pipeline, demo_volume(m, 1, seed=3), batch=1)[0]["image"]
    with torch.inference_mode():
        expected = model(torch.from_numpy(image))[0].numpy()
    boxes = loaded.session.run({"image": image})["boxes"]
    assert len(expected) >= 1
    np.testing.assert_allclose(boxes, expected, rtol=1e-4, atol=1e-3)


def test_exported_detector_merges_roi_levels_by_gathering(tmp_path) -> None:
    """The ONNX graph gathers the FPN levels' pooled RoIs into place (one 1-D scatter for
    the order) instead of scattering each level through an index the size of the features;
    export_model's parity check against torch still holds, and eager torch is untouched."""
    import onnx
    import torch
    from torchvision.ops import poolers

    from medviewer.labs import architectures
    from medviewer.training.export import export_model

    arch = architectures.get("lab5.fasterrcnn_light")
    torch.manual_seed(0)
    model = arch.build(**arch.default_options).eval()
    before = poolers._onnx_merge_levels
    fields = {"id": "t-det", "title": "t", "plugin": "lab5", "version": "0.0.1",
              "labels": [{"name": n} for n in ("cardiomegaly", "normal heart")],
              "input": {"channels": 3, "size": [256, 256], "modalities": ["DX"]}}
    image = torch.rand((1, 3, 256, 256), generator=torch.Generator().manual_seed(1))
    manifest = export_model(model, arch, tmp_path / "m", fields, (image,))  # parity-checked
    graph = onnx.load(str(manifest.path("model.onnx"))).graph
    scatters = [n for n in graph.node if n.op_type in ("ScatterElements", "Scatter")]
    assert len(scatters) == 1 and any(n.op_type == "Gather" for n in graph.node)
    assert poolers._onnx_merge_levels is before  # restored once the export is traced
    boxes = open_model(manifest.folder, CPU).session.run({"image": image.numpy()})["boxes"]
    with torch.inference_mode():
        expected = model(image)[0].numpy()
    np.testing.assert_allclose(boxes, expected, rtol=1e-4, atol=1e-3)
