"""Lab 1: digits features, the shipped SimpleNN on the demo's DIGITS series, the submission CSV."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medviewer.core import demo
from medviewer.core.dicom import load_series, scan
from medviewer.inference import ModelError, open_model
from medviewer.labs.lab1.plugin import DIGIT_SIZE, INK, digit_features, write_submission

MODEL_ID = "lab1-digits-mlp"


@pytest.fixture(scope="module")
def digits_truth(demo_study: Path) -> dict:
    return json.loads((demo_study / demo.TRUTH_FILE).read_text())["digits"]


@pytest.fixture(scope="module")
def digits_volume(demo_study: Path, digits_truth: dict):
    folder = demo_study / digits_truth["folder"]
    (series,) = scan(folder).all_series()
    return load_series(series)


@pytest.fixture(scope="module")
def digits_run(digits_volume):
    model = open_model(MODEL_ID)
    return model, model.run(digits_volume)


def test_features_undo_the_demo_series_upscaling_whatever_the_value_range():
    _, test_images, _, _ = demo.digits_split()
    images = test_images[:5]
    stretched = (images - images.min(axis=(1, 2), keepdims=True))
    stretched = stretched / stretched.max(axis=(1, 2), keepdims=True) * INK
    for gain in (1, 255):  # 0..16 as scikit-learn has it, 0..4080 as the demo stores it
        big = np.kron(images * gain, np.ones((8, 8)))  # 64 x 64, nearest
        got = digit_features(big)
        assert got.shape == (5, 64) and got.dtype == np.float32
        np.testing.assert_allclose(got, stretched.reshape(5, 64), atol=1e-4)


def test_a_blank_slice_gives_zeros_not_nan():
    assert not digit_features(np.full((1, 16, 16), 7.0)).any()


def test_demo_series_holds_held_out_digits_only(digits_volume, digits_truth):
    train_images, test_images, _, test_labels = demo.digits_split()
    voxels = digits_volume.voxels
    assert voxels.shape == (len(digits_truth["labels"]), 64, 64)
    assert digits_volume.modality == "OT" and voxels.shape[0] < demo.CT_SHAPE[0]
    digits = voxels[:, ::8, ::8] / demo.DIGITS_GAIN  # the nearest upscale, undone
    seen = {im.tobytes() for im in train_images}
    assert not any(d.tobytes() in seen for d in digits)
    test_index = {im.tobytes(): int(label) for im, label in zip(test_images, test_labels,
                                                                 strict=True)}
    assert [test_index[d.tobytes()] for d in digits] == digits_truth["labels"]
    assert np.bincount(digits_truth["labels"], minlength=10).min() > 0


def test_shipped_model_reads_the_demo_digits(digits_run, digits_truth, digits_volume):
    model, result = digits_run
    assert model.manifest.input.size == DIGIT_SIZE
    labels = digits_truth["labels"]
    assert result.scores.shape == (len(labels), 10)
    np.testing.assert_allclose(result.scores.sum(axis=1), 1.0, rtol=1e-5)
    predicted = [int(result.predicted(row)[0]) for row in range(len(labels))]
    accuracy = np.mean(np.array(predicted) == np.array(labels))
    assert accuracy > 0.9
    assert result.sop_instance_uids == [s.sop_instance_uid for s in digits_volume.sources]


def test_manifest_metrics_are_the_held_out_split(digits_run):
    """The recorded accuracy is what the ONNX model scores on the whole held-out split."""
    model, _ = digits_run
    _, test_images, _, test_labels = demo.digits_split()
    logits = model.session.run({"image": digit_features(test_images)})["logits"]
    accuracy = float(np.mean(logits.argmax(axis=1) == test_labels))
    metrics = model.manifest.metrics
    assert metrics["n"] == len(test_labels)
    assert metrics["accuracy"] == pytest.approx(accuracy, abs=1e-3)
    assert 0.9 < metrics["f1_macro"] <= 1.0
    assert model.manifest.provenance["command"] == "python -m medviewer.labs.lab1.demo"


def test_submission_csv_has_a_running_id_and_the_predicted_digit(digits_run, tmp_path):
    _, result = digits_run
    path = write_submission(result, tmp_path / "out" / "submission.csv")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "label"]
    assert [int(r[0]) for r in rows[1:]] == list(range(1, len(result.slice_indices) + 1))
    assert [r[1] for r in rows[1:]] == [result.predicted(i)[0] for i in range(len(rows) - 1)]
    assert [p.name for p in path.parent.iterdir()] == ["submission.csv"]  # no temp file left


def test_submission_of_some_slices_names_them_by_slice_number(digits_volume, tmp_path):
    result = open_model(MODEL_ID).run(digits_volume, [4, 0, 9])
    path = write_submission(result, tmp_path / "some.csv")
    lines = path.read_text().splitlines()
    assert [line.split(",")[0] for line in lines] == ["id", "5", "1", "10"]


def test_the_model_refuses_a_ct(ct_series):
    (series,) = scan(ct_series.folder).all_series()
    volume = load_series(series)
    with pytest.raises(ModelError, match="OT"):
        open_model(MODEL_ID).run(volume, [0])


def test_plugin_imports_no_torch():
    code = ("import sys, medviewer.labs.lab1.plugin, medviewer.labs.lab2.plugin, "
            "medviewer.labs.lab2.data; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False"


def test_training_recipe_reproduces_the_shipped_accuracy(tmp_path, digits_run):
    from medviewer.labs.lab1.demo import train

    (folder,) = train(tmp_path, model="mlp")
    retrained = json.loads((folder / "manifest.json").read_text())["metrics"]
    shipped = digits_run[0].manifest.metrics
    assert retrained["n"] == shipped["n"]
    assert retrained["accuracy"] == pytest.approx(shipped["accuracy"], abs=0.02)


def test_medviewer_infer_writes_the_course_submission_file(demo_study, digits_truth, tmp_path):
    from medviewer.cli import main

    folder = demo_study / digits_truth["folder"]
    assert main(["infer", "--model", "lab1-digits-mlp", str(folder), "--out",
                 str(tmp_path)]) == 0
    (submission,) = tmp_path.glob("*_submission.csv")
    rows = list(csv.reader(submission.read_text(encoding="utf-8").splitlines()))
    assert rows[0] == ["id", "label"]
    labels = [int(label) for _, label in rows[1:]]
    assert [int(i) for i, _ in rows[1:]] == list(range(1, len(labels) + 1))
    assert np.mean(np.equal(labels, digits_truth["labels"])) >= 0.9


class CourseSimpleNN:
    """Lab 1's notebook network with its own names (fc1, bn1, ...): Linear, BatchNorm, ReLU,
    Dropout per hidden layer, as the course describes SimpleNN."""

    @staticmethod
    def build():
        import torch
        from torch import nn

        class SimpleNN(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.fc1, self.bn1 = nn.Linear(64, 256), nn.BatchNorm1d(256)
                self.fc2, self.bn2 = nn.Linear(256, 32), nn.BatchNorm1d(32)
                self.fc3 = nn.Linear(32, 10)
                self.drop = nn.Dropout(0.2)

            def forward(self, x):
                x = self.drop(torch.relu(self.bn1(self.fc1(x))))
                return self.fc3(self.drop(torch.relu(self.bn2(self.fc2(x)))))

        torch.manual_seed(3)
        net = SimpleNN()
        for bn in (net.bn1, net.bn2):  # trained running statistics, not the identity
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
        return net.eval()


def test_a_course_checkpoint_imports_with_its_own_names_and_runs_on_the_digits(
        digits_volume, tmp_path, capsys):
    """torch.save(model.state_dict()) of the notebook's SimpleNN -> medviewer export with no
    --arch: the names fit lab1.simplenn, its digit calls match the course module's."""
    import torch

    from medviewer.cli import main
    from medviewer.inference import load_manifest

    net = CourseSimpleNN.build()
    path = tmp_path / "simplenn.pth"
    torch.save(net.state_dict(), path)
    out = tmp_path / "model"
    assert main(["export", str(path), "--out", str(out),
                 "--labels", ",".join(map(str, range(10)))]) == 0
    printed = capsys.readouterr().out
    assert "lab1.simplenn" in printed and "16 of 16 tensors loaded" in printed
    assert load_manifest(out).arch == "lab1.simplenn"
    result = open_model(out).run(digits_volume)
    features = torch.from_numpy(digit_features(digits_volume.voxels))
    with torch.no_grad():
        expected = net(features).argmax(1).numpy()
    assert result.scores.argmax(axis=1).tolist() == expected.tolist()
    assert len(set(expected.tolist())) > 3  # a real comparison: the net calls several digits


# --- MedicalCNN: the overview's conv -> pool -> conv -> pool -> fully connected network ------

CNN_ID = "lab1-digits-cnn"


@pytest.fixture(scope="module")
def cnn_run(digits_volume):
    model = open_model(CNN_ID)
    return model, model.run(digits_volume)


def test_medical_cnn_takes_mnist_and_scikit_learn_digits():
    import torch

    from medviewer.labs.architectures import get

    for name, size in (("lab1.medical_cnn", 28), ("lab1.medical_cnn_light", 8)):
        arch = get(name)
        net = arch.build(**arch.default_options).eval()
        convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        pools = [m for m in net.modules() if isinstance(m, torch.nn.MaxPool2d)]
        assert len(convs) == 2 and len(pools) == 2
        with torch.no_grad():
            assert net(torch.zeros(3, 1, size, size)).shape == (3, 10)
        # the options a checkpoint's shapes give rebuild the same network
        rebuilt = arch.options_from_weights(net.state_dict())
        assert rebuilt == {"num_classes": 10, "in_channels": 1, **arch.default_options}
    with pytest.raises(ValueError, match="multiple of 4"):
        get("lab1.medical_cnn").build(image_size=30)


def test_shipped_cnn_reads_the_demo_digits_as_images(cnn_run, digits_truth, digits_volume):
    model, result = cnn_run
    assert model.manifest.arch == "lab1.medical_cnn_light"
    assert model.manifest.onnx_inputs["image"] == ["batch", 1, 8, 8]
    labels = digits_truth["labels"]
    assert result.scores.shape == (len(labels), 10)
    assert np.mean(result.scores.argmax(axis=1) == np.array(labels)) > 0.9
    assert result.sop_instance_uids == [s.sop_instance_uid for s in digits_volume.sources]


def test_cnn_manifest_metrics_are_the_held_out_split(cnn_run):
    model, _ = cnn_run
    _, test_images, _, test_labels = demo.digits_split()
    images = digit_features(test_images).reshape(-1, 1, *DIGIT_SIZE)
    logits = model.session.run({"image": images})["logits"]
    metrics = model.manifest.metrics
    assert metrics["n"] == len(test_labels)
    assert metrics["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == test_labels), abs=1e-3)
    assert model.manifest.provenance["command"] == "python -m medviewer.labs.lab1.demo --model cnn"


def test_cnn_training_recipe_reproduces_the_shipped_accuracy(tmp_path, cnn_run):
    from medviewer.labs.lab1.demo import main

    main(["--model", "cnn", "--out", str(tmp_path)])
    retrained = json.loads((tmp_path / CNN_ID / "manifest.json").read_text())["metrics"]
    assert retrained["accuracy"] == pytest.approx(cnn_run[0].manifest.metrics["accuracy"],
                                                  abs=0.02)


def test_a_course_cnn_checkpoint_imports_with_its_own_names(digits_volume, tmp_path, capsys):
    """The overview's network written with its own names (conv1, conv2, fc1, fc2) at 8 x 8:
    `medviewer export` with no --arch finds MedicalCNN and the viewer's calls match it."""
    import torch
    from torch import nn

    from medviewer.cli import main
    from medviewer.inference import load_manifest

    class CourseCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.fc1, self.fc2 = nn.Linear(32 * 2 * 2, 64), nn.Linear(64, 10)

        def forward(self, x):
            x = self.pool(torch.relu(self.conv1(x)))
            x = self.pool(torch.relu(self.conv2(x)))
            return self.fc2(torch.relu(self.fc1(x.flatten(1))))

    torch.manual_seed(5)
    net = CourseCNN().eval()
    torch.save(net.state_dict(), tmp_path / "cnn.pth")
    out = tmp_path / "model"
    assert main(["export", str(tmp_path / "cnn.pth"), "--out", str(out),
                 "--labels", ",".join(map(str, range(10)))]) == 0
    assert "lab1.medical_cnn" in capsys.readouterr().out
    manifest = load_manifest(out)
    assert manifest.arch.startswith("lab1.medical_cnn") and manifest.input.size == DIGIT_SIZE
    result = open_model(out).run(digits_volume)
    images = torch.from_numpy(digit_features(digits_volume.voxels).reshape(-1, 1, 8, 8))
    with torch.no_grad():
        expected = net(images).argmax(1).numpy()
    assert result.scores.argmax(axis=1).tolist() == expected.tolist()


def test_the_cnn_retrains_from_its_current_weights(tmp_path):
    """Model > Retrain's job on the shipped CNN: the training package builds its (1, 8, 8)
    images through the plugin, and the candidate exports and matches ONNX Runtime."""
    import io

    from medviewer.inference import load_manifest
    from medviewer.training import run

    job = {"model": CNN_ID, "init": "current", "data": {"demo": 4}, "epochs": 1,
           "batch_size": 16, "lr": 0.001, "device": "cpu", "out": str(tmp_path / "run")}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job), encoding="utf-8")
    out = io.StringIO()
    assert run.run_job(path, stream=out) == 0
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    (done,) = [e for e in events if e["event"] == "done"]
    candidate = load_manifest(done["candidate"])
    assert candidate.arch == "lab1.medical_cnn_light"
    assert candidate.onnx_inputs["image"] == ["batch", 1, 8, 8]
    assert candidate.provenance["parity_max_relative_error"] <= 1e-4


def test_grad_cam_explains_the_cnn_on_the_slice_grid(digits_volume, cnn_run):
    """The CNN reads a 2D image through convolutions, so Grad-CAM applies (the MLP has none):
    a heatmap over the whole slice, for the digit the model predicted there."""
    from medviewer.explain import explain, methods_for

    model, result = cnn_run
    assert methods_for(model.manifest) == ["Grad-CAM"]
    assert methods_for(open_model(MODEL_ID).manifest) == []
    explanation = explain(CNN_ID, digits_volume, 3)
    assert explanation.heatmap.shape == digits_volume.voxels.shape[1:]
    assert 0.0 <= explanation.heatmap.min() < explanation.heatmap.max() <= 1.0
    assert explanation.target == result.predicted(3)[0]


def test_medviewer_models_lists_the_cnn_with_its_held_out_metrics(capsys):
    from medviewer.cli import main

    assert main(["models", "--json"]) == 0
    listed = {m["id"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    cnn = listed[CNN_ID]
    assert (cnn["lab"], cnn["task"], cnn["arch"]) == (1, "classification",
                                                      "lab1.medical_cnn_light")
    assert cnn["metrics"]["accuracy"] > 0.95 and "held-out" in cnn["metrics"]["split"]
