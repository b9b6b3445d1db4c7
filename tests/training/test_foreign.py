"""Self-contained model files (issue 13 item 3): a foreign ONNX, TorchScript or torch.export
file becomes a MedViewer model folder the lab's plugin runs unchanged; a damaged or unfitting
file is a sentence and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medviewer.inference import ModelError
from medviewer.inference.manifest import load_manifest
from medviewer.training import foreign

SIZE = 32
CT_WINDOW = [-300.0, 2000.0]
# torch.jit.* and the TorchScript-based ONNX exporter (the project's, export.py) are deprecated
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning",
                                        "ignore::torch.jit.TracerWarning")


class Threshold(nn.Module):
    """Three labels from one 1x1 convolution: 'bright' where the windowed slice is above
    mid-grey, 'dark' below, 'never' nowhere: a foreign network with a checkable answer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 1)
        with torch.no_grad():
            self.conv.weight[:] = torch.tensor([-4.0, 4.0, 0.0]).view(3, 1, 1, 1)
            self.conv.bias[:] = torch.tensor([2.0, -2.0, -100.0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Classifier(nn.Module):
    def __init__(self, channels: int = 3, classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def onnx_file(model: nn.Module, path: Path, shapes, *, inputs=("input.1",), outputs=("out",),
              dynamic=None) -> Path:
    """Export as a user would: their own names, a fixed batch of one unless `dynamic`."""
    torch.manual_seed(0)
    example = tuple(torch.rand(s) for s in shapes)
    torch.onnx.export(model.eval(), example, str(path), input_names=list(inputs),
                      output_names=list(outputs), dynamic_axes=dynamic, opset_version=17,
                      dynamo=False)
    return path


def seg_fields(**extra) -> dict:
    return {"id": "foreign-seg", "title": "Foreign segmenter", "version": "1.0.0", "lab": 4,
            "plugin": "lab4",
            "labels": [{"name": n, "colour": c} for n, c in
                       (("dark", "#000000"), ("bright", "#ff0000"), ("never", "#00ff00"))],
            "input": {"size": [SIZE, SIZE], "channels": 1, "window": CT_WINDOW,
                      "mean": [0.0], "std": [1.0], "modalities": ["CT"]},
            "options": {}, "metrics": {"split": "not measured", "n": 0},
            "provenance": {}, "description": "", **extra}


def cls_fields(**extra) -> dict:
    return {"id": "foreign-cls", "title": "Foreign classifier", "version": "1.0.0", "lab": 2,
            "plugin": "lab2",
            "labels": [{"name": "no nodule", "colour": "#00ff00"},
                       {"name": "nodule", "colour": "#ff0000"}],
            "input": {"size": [SIZE, SIZE], "channels": 3, "context": "prev-current-next",
                      "window": [-600.0, 1500.0], "modalities": ["CT"]},
            "options": {}, "metrics": {"split": "not measured", "n": 0},
            "provenance": {}, "description": "", **extra}


def test_kind_of_reads_the_bytes_only(tmp_path: Path) -> None:
    net = Threshold()
    onnx_path = onnx_file(net, tmp_path / "m.bin", [(1, 1, 8, 8)])
    torch.jit.script(net).save(str(tmp_path / "ts.bin"))
    torch.export.save(torch.export.export(net, (torch.rand(1, 1, 8, 8),)), str(tmp_path / "e.bin"))
    torch.save(net.state_dict(), tmp_path / "sd.bin")
    from safetensors.torch import save_file

    save_file(net.state_dict(), str(tmp_path / "st.bin"))
    (tmp_path / "junk.bin").write_bytes(b"\x08\x07hello")
    assert foreign.kind_of(onnx_path) == "onnx"
    assert foreign.kind_of(tmp_path / "ts.bin") == "torchscript"
    assert foreign.kind_of(tmp_path / "e.bin") == "exported-program"
    assert foreign.kind_of(tmp_path / "sd.bin") is None
    assert foreign.kind_of(tmp_path / "st.bin") is None
    assert foreign.kind_of(tmp_path / "junk.bin") is None
    assert foreign.kind_of(tmp_path / "missing.bin") is None
    import zipfile

    for name, members, kind in (("old.pt2", ["serialized_exported_program.json", "version"],
                                 "exported-program"), ("other.zip", ["a/b.txt"], None)):
        with zipfile.ZipFile(tmp_path / name, "w") as z:
            for member in members:
                z.writestr(member, "{}")
        assert foreign.kind_of(tmp_path / name) == kind


def test_foreign_onnx_segmenter_is_wired_to_lab4_and_infers_a_seg(
        tmp_path: Path, ct_series_dir: Path) -> None:
    """A network exported by its owner (names "input.1"/"out", batch fixed at one) is read,
    renamed to lab 4's "image"/"logits", freed to the plugin's batches, and `medviewer infer`
    writes a SEG whose labels are the network's answer on the plugin's own preprocessing."""
    from medviewer.cli import main
    from medviewer.core.dicom import load_series, scan
    from medviewer.inference import open_model
    from medviewer.inference import preprocess as pp

    net = Threshold()
    path = onnx_file(net, tmp_path / "theirs.onnx", [(1, 1, SIZE, SIZE)])
    seen = foreign.inspect_file(path, foreign.kind_of(path))
    assert (seen.lab, seen.task, seen.num_classes) == (4, "segmentation", 3)
    assert seen.inputs == {"input.1": [1, 1, SIZE, SIZE]}
    assert seen.outputs == {"out": [1, 3, SIZE, SIZE]}

    steps = []
    manifest = foreign.export_self_contained(path, "onnx", seg_fields(), tmp_path / "model",
                                             progress=lambda what, done: steps.append(done))
    assert steps[0] == 0.0 and steps[-1] == 1.0
    assert manifest.arch == "external.onnx" and manifest.task == "segmentation"
    assert manifest.onnx_inputs == {"image": ["batch", 1, SIZE, SIZE]}
    assert manifest.onnx_outputs == ("logits",)
    assert manifest.provenance["renamed"] == {"input.1": "image", "out": "logits"}
    assert not (tmp_path / "model" / "weights.safetensors").exists()
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["manifest.json",
                                                                     "model.onnx"]

    volume = load_series(scan(ct_series_dir).all_series()[0])
    result = open_model(tmp_path / "model").run(volume)
    spec = manifest.input
    voxels = volume.voxels
    x = torch.from_numpy(pp.prepare_slices(voxels, list(range(voxels.shape[0])), spec))
    with torch.no_grad():
        expected = net(x).argmax(1).numpy().astype(np.uint8)
    expected = np.stack([pp.resize(m, voxels.shape[1:], order=0) for m in expected])
    np.testing.assert_array_equal(result.label_map, expected)
    assert set(np.unique(expected)) == {0, 1}  # both labels present: a real answer

    out = tmp_path / "results"
    assert main(["infer", str(ct_series_dir), "--model", str(tmp_path / "model"),
                 "--out", str(out)]) == 0
    import pydicom

    segs = [pydicom.dcmread(p) for p in out.rglob("*.dcm")]
    assert [s.Modality for s in segs] == ["SEG"]


def ct_volume(folder: Path):
    from medviewer.core.dicom import load_series, scan

    return load_series(scan(folder).all_series()[0])


def test_torchscript_classifier_is_converted_and_parity_checked(
        tmp_path: Path, ct_series_dir: Path) -> None:
    from medviewer.inference import open_model
    from medviewer.inference import preprocess as pp
    from medviewer.training.export import relative_error

    torch.manual_seed(1)
    net = Classifier().eval()
    path = tmp_path / "classifier.pt"
    torch.jit.script(net).save(str(path))
    seen = foreign.inspect_file(path, foreign.kind_of(path))
    assert (seen.kind, seen.lab, seen.task, seen.num_classes) == ("torchscript", 2,
                                                                  "classification", 2)
    assert seen.inputs == {"x": ["batch", 3, "rows", "columns"]}  # a probe's: sizes not fixed
    assert seen.warnings  # and it says so

    manifest = foreign.export_self_contained(path, "torchscript", cls_fields(),
                                             tmp_path / "model")
    assert manifest.arch == "external.torchscript"
    assert 0 <= manifest.provenance["parity_max_relative_error"] <= 1e-4
    assert manifest.onnx_inputs == {"image": ["batch", 3, SIZE, SIZE]}
    assert manifest.onnx_outputs == ("logits",)

    volume = ct_volume(ct_series_dir)
    result = open_model(tmp_path / "model").run(volume)
    x = pp.prepare_slices(volume.voxels, list(range(volume.voxels.shape[0])), manifest.input)
    with torch.no_grad():
        expected = pp.softmax(net(torch.from_numpy(x)).numpy().astype(np.float64))
    assert result.scores.shape == (volume.voxels.shape[0], 2)
    assert relative_error(expected, result.scores) <= 1e-4


def test_an_imported_model_says_why_it_has_no_cam_and_no_retraining(tmp_path: Path,
                                                                    ct_series_dir: Path) -> None:
    from medviewer.explain import explain
    from medviewer.training import recipes
    from medviewer.training.errors import TrainingError

    path = tmp_path / "classifier.pt"
    torch.jit.script(Classifier().eval()).save(str(path))
    manifest = foreign.export_self_contained(path, "torchscript", cls_fields(),
                                             tmp_path / "model")
    with pytest.raises(ModelError, match="imported from a TorchScript file: it has no torch "
                       "layers for a class activation map"):
        explain(manifest, ct_volume(ct_series_dir), 3)
    with pytest.raises(TrainingError, match="cannot be retrained in MedViewer. Import a "
                       "checkpoint of a registered architecture"):
        recipes.build_model(manifest, "current")


class AgeSexClassifier(nn.Module):
    def forward(self, extras: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return image.mean(dim=(2, 3))[:, :2] + extras * torch.tensor([1.0, -1.0])


def test_exported_program_with_extras_in_its_own_order(tmp_path: Path) -> None:
    """A .pt2 fixed to a batch of one whose extras come first: inputs matched by shape, the
    batch freed and checked, torch and ONNX Runtime agree."""
    import onnxruntime as ort

    net = AgeSexClassifier()
    ep = torch.export.export(net, (torch.rand(1, 2), torch.rand(1, 3, SIZE, SIZE)))
    path = tmp_path / "agesex.pt2"
    torch.export.save(ep, str(path))
    seen = foreign.inspect_file(path, foreign.kind_of(path))
    assert (seen.kind, seen.lab, seen.num_classes) == ("exported-program", 2, 2)
    assert list(seen.inputs.values()) == [[1, 2], [1, 3, SIZE, SIZE]]

    fields = cls_fields()
    fields["input"]["extras"] = ["age", "sex"]
    manifest = foreign.export_self_contained(path, "exported-program", fields,
                                             tmp_path / "model")
    assert set(manifest.onnx_inputs) == {"image", "extras"}
    assert manifest.provenance["parity_max_relative_error"] <= 1e-4
    session = ort.InferenceSession(str(tmp_path / "model" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    image, extras = np.random.default_rng(2).random((3, 3, SIZE, SIZE), dtype=np.float32), \
        np.array([[0.4, 1.0], [0.7, 0.0], [0.5, 0.5]], np.float32)
    (got,) = session.run(None, {"image": image, "extras": extras})
    expected = net(torch.from_numpy(extras), torch.from_numpy(image)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


class BatchMixer(nn.Module):
    """Each answer depends on the other samples of its batch (a train-mode BatchNorm's bug)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean()).mean(dim=(2, 3))[:, :2]


def refused(tmp_path: Path, path: Path, kind: str, fields: dict) -> str:
    """The sentence of the ModelError, after checking nothing was left beside the target."""
    parent = tmp_path / "store"
    parent.mkdir()
    with pytest.raises(ModelError) as err:
        foreign.export_self_contained(path, kind, fields, parent / "model")
    assert list(parent.iterdir()) == []  # no model, no staging folder
    text = err.value.reason
    assert "Traceback" not in text and text.endswith(".")
    return text


def test_an_onnx_file_cut_short_anywhere_is_a_sentence(tmp_path: Path) -> None:
    from medviewer.training.foreign_graph import load_onnx

    whole = onnx_file(Threshold(), tmp_path / "whole.onnx", [(1, 1, SIZE, SIZE)]).read_bytes()
    cut = tmp_path / "cut.onnx"
    for end in range(1, len(whole)):
        cut.write_bytes(whole[:end])
        with pytest.raises(ModelError, match="export it again"):
            load_onnx(cut)
    cut.write_bytes(whole[:len(whole) // 2])
    text = refused(tmp_path, cut, "onnx", seg_fields())
    assert "not a readable ONNX file" in text


def test_a_file_that_is_not_onnx_is_a_sentence(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all" * 100)
    assert foreign.kind_of(junk) is None
    assert "not a readable ONNX file" in refused(tmp_path, junk, "onnx", seg_fields())
    with pytest.raises(ModelError, match="not a readable ONNX file"):
        foreign.inspect_file(junk, "onnx")


def test_nan_weights_are_refused(tmp_path: Path) -> None:
    net = Threshold()
    with torch.no_grad():
        net.conv.weight[1, 0, 0, 0] = float("nan")
    path = onnx_file(net, tmp_path / "nan.onnx", [(1, 1, SIZE, SIZE)])
    assert "weights hold NaN" in refused(tmp_path, path, "onnx", seg_fields())
    script = tmp_path / "nan.pt"
    torch.jit.script(net).save(str(script))
    (tmp_path / "store").rmdir()
    assert "weights hold NaN" in refused(tmp_path, script, "torchscript", seg_fields())


def test_a_fixed_input_size_other_than_the_spec_names_both(tmp_path: Path) -> None:
    path = onnx_file(Threshold(), tmp_path / "fixed.onnx", [(1, 1, SIZE, SIZE)])
    fields = seg_fields()
    fields["input"]["size"] = [64, 64]
    text = refused(tmp_path, path, "onnx", fields)
    assert f"[1, 1, {SIZE}, {SIZE}]" in text and "[2, 1, 64, 64]" in text


def test_a_graph_whose_answers_depend_on_the_batch_is_refused(tmp_path: Path) -> None:
    path = onnx_file(BatchMixer(), tmp_path / "mixer.onnx", [(1, 3, SIZE, SIZE)])
    assert "batch of two slices differently" in refused(tmp_path, path, "onnx", cls_fields())


def test_outputs_that_do_not_suit_the_lab_or_labels_are_refused(tmp_path: Path) -> None:
    path = onnx_file(Threshold(), tmp_path / "seg.onnx", [(1, 1, SIZE, SIZE)])
    fields = cls_fields()
    fields["input"]["channels"] = 1
    assert "(batch, classes)" in refused(tmp_path, path, "onnx", fields)
    (tmp_path / "store").rmdir()
    two = seg_fields()
    two["labels"] = two["labels"][:2]
    text = refused(tmp_path, path, "onnx", two)
    assert "with 2 labels" in text and "(2, 3, 32, 32)" in text


def test_weights_in_external_files_are_refused(tmp_path: Path) -> None:
    import onnx

    path = onnx_file(Threshold(), tmp_path / "seg.onnx", [(1, 1, SIZE, SIZE)])
    model = onnx.load(str(path))
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    assert "external data" in refused(tmp_path, path, "onnx", seg_fields())


def test_an_existing_model_is_replaced_only_when_forced(tmp_path: Path) -> None:
    path = onnx_file(Threshold(), tmp_path / "seg.onnx", [(1, 1, SIZE, SIZE)])
    out = tmp_path / "model"
    foreign.export_self_contained(path, "onnx", seg_fields(), out)
    with pytest.raises(ModelError, match="--force"):
        foreign.export_self_contained(path, "onnx", seg_fields(version="2.0.0"), out)
    assert foreign.export_self_contained(path, "onnx", seg_fields(version="2.0.0"), out,
                                         force=True).version == "2.0.0"


def test_a_model_without_torch_weights_publishes_and_stays_checked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No weights.safetensors: the folder verifies and publishes into the store; a manifest
    that records weights still needs them (the record is under the manifest's checksum)."""
    monkeypatch.setenv("MEDVIEWER_DATA_DIR", str(tmp_path / "data"))  # a store of its own
    import shutil

    from medviewer.inference.versions import publish

    path = onnx_file(Threshold(), tmp_path / "seg.onnx", [(1, 1, SIZE, SIZE)])
    out = tmp_path / "model"
    foreign.export_self_contained(path, "onnx", seg_fields(id="foreign-publish"), out)
    published = publish(out)
    assert load_manifest(published.folder, verify=True).files.keys() == {"model.onnx"}
    assert not (published.folder / "weights.safetensors").exists()

    shipped = tmp_path / "shipped"
    shutil.copytree(Path(__file__).parents[2] / "models" / "lab1-digits-mlp", shipped)
    (shipped / "weights.safetensors").unlink()
    with pytest.raises(ModelError, match="weights.safetensors is missing"):
        load_manifest(shipped, verify=True)


class Boxes(nn.Module):
    """Two boxes whose scores follow the image, answered in torchvision's dict order (boxes,
    labels, scores), not the lab 5 plugin's (boxes, scores, labels)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = x.mean()
        boxes = torch.stack([torch.tensor([2.0, 2.0, 10.0, 12.0]) * (1 + m),
                             torch.tensor([4.0, 4.0, 20.0, 20.0])])
        return boxes, torch.tensor([2, 1]), torch.stack([m.sigmoid(), 1 - m.sigmoid()])


@pytest.mark.parametrize("shape", [(1, 3, SIZE, SIZE), (3, SIZE, SIZE)])
def test_a_detector_answering_in_its_own_order_feeds_the_lab5_plugin(
        tmp_path: Path, ct_series_dir: Path, shape: tuple[int, ...]) -> None:
    """Outputs put in the plugin's order; an input of one image without a batch axis (what
    torchvision's detectors export: (3, H, W)) takes the plugin's (1, 3, H, W)."""
    from medviewer.inference import open_model
    from medviewer.labs.lab5.plugin import prepare_film

    path = onnx_file(Boxes(), tmp_path / "boxes.onnx", [shape], inputs=("images",),
                     outputs=("boxes", "labels", "scores"))
    seen = foreign.inspect_file(path, "onnx")
    assert (seen.lab, seen.task) == (5, "detection") and seen.warnings
    fields = {**seg_fields(id="foreign-det", lab=5, plugin="lab5"),
              "labels": [{"name": "cardiomegaly", "colour": "#ff0000"},
                         {"name": "normal heart", "colour": "#00ff00"}],
              "input": {"size": [SIZE, SIZE], "channels": 3}}
    manifest = foreign.export_self_contained(path, "onnx", fields, tmp_path / "model")
    assert manifest.onnx_outputs == ("boxes", "scores", "labels")
    assert manifest.onnx_inputs == {"image": [1, 3, SIZE, SIZE]}
    assert manifest.provenance["renamed"]["images"] == "image"

    volume = ct_volume(ct_series_dir)
    result = open_model(tmp_path / "model").run(volume, [5])
    film = prepare_film(volume.voxels[5], (SIZE, SIZE), 3)
    boxes, labels, scores = Boxes()(torch.from_numpy(film)[None])
    assert sorted((b.label, round(b.score, 5)) for b in result.boxes) == sorted(
        (fields["labels"][int(k) - 1]["name"], round(float(s), 5))
        for k, s in zip(labels, scores, strict=True))


class Digits(nn.Module):
    """A digit classifier over (batch, 1, 8, 8) images; lab 1's plugin feeds (batch, 64)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(),
                                 nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_a_digit_image_input_is_fed_lab1s_flat_rows(tmp_path: Path) -> None:
    import onnxruntime as ort

    net = Digits().eval()
    path = onnx_file(net, tmp_path / "digits.onnx", [(1, 1, 8, 8)])
    seen = foreign.inspect_file(path, "onnx")
    assert (seen.lab, seen.num_classes) == (1, 10)
    fields = {**seg_fields(id="foreign-digits", lab=1, plugin="lab1"),
              "labels": [{"name": str(i), "colour": "#ff0000"} for i in range(10)],
              "input": {"size": [8, 8]}}
    manifest = foreign.export_self_contained(path, "onnx", fields, tmp_path / "model")
    assert manifest.onnx_inputs == {"image": ["batch", 64]}
    rows = np.random.default_rng(4).random((5, 64), dtype=np.float32) * 16
    session = ort.InferenceSession(str(tmp_path / "model" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": rows})
    with torch.no_grad():
        expected = net(torch.from_numpy(rows).view(5, 1, 8, 8)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_a_one_channel_segmenter_is_taken_as_a_foreground_logit(tmp_path: Path,
                                                                 ct_series_dir: Path) -> None:
    from medviewer.inference import open_model
    from medviewer.inference import preprocess as pp

    net = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        net.weight.fill_(4.0)
        net.bias.fill_(-2.0)  # foreground where the windowed slice is above mid-grey
    path = onnx_file(net, tmp_path / "fg.onnx", [(1, 1, SIZE, SIZE)],
                     dynamic={"input.1": {0: "n"}, "out": {0: "n"}})
    seen = foreign.inspect_file(path, "onnx")
    assert (seen.task, seen.num_classes) == ("segmentation", 2)
    assert any("foreground logit" in w for w in seen.warnings)
    fields = seg_fields()
    fields["labels"] = fields["labels"][:2]
    manifest = foreign.export_self_contained(path, "onnx", fields, tmp_path / "model")
    assert manifest.onnx_inputs == {"image": ["n", 1, SIZE, SIZE]}
    volume = ct_volume(ct_series_dir)
    result = open_model(tmp_path / "model").run(volume)
    x = pp.prepare_slices(volume.voxels, list(range(volume.voxels.shape[0])), manifest.input)
    expected = np.stack([pp.resize((m[0] > 0.5).astype(np.uint8), volume.voxels.shape[1:],
                                   order=0) for m in x])
    np.testing.assert_array_equal(result.label_map, expected)
    assert expected.any() and not expected.all()


def test_cli_exports_a_torchscript_classifier_and_infers_with_it(
        tmp_path: Path, ct_series_dir: Path, capsys) -> None:
    """`medviewer export model.pt` (no --arch) then `medviewer infer`: one row per slice."""
    import csv

    from medviewer.cli import main

    path = tmp_path / "classifier.pt"
    torch.jit.script(Classifier().eval()).save(str(path))
    out = tmp_path / "model"
    assert main(["export", str(path), "--lab", "2", "--out", str(out), "--labels",
                 "no nodule,nodule", "--size", str(SIZE), str(SIZE), "--channels", "3",
                 "--context", "prev-current-next", "--window", "-600", "1500",
                 "--modalities", "CT"]) == 0  # lab2-nodule-slice's age/sex extras not borrowed
    printed = capsys.readouterr().out
    assert "external.torchscript" in printed and "ONNX Runtime matches torch" in printed
    results = tmp_path / "results"
    assert main(["infer", str(ct_series_dir), "--model", str(out), "--out",
                 str(results)]) == 0
    (table,) = results.rglob("*.csv")
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 20  # the series' slices (conftest CT_SERIES_SHAPE)


def test_cli_refuses_a_truncated_onnx_file_with_a_sentence(tmp_path: Path, capsys) -> None:
    from medviewer.cli import main

    whole = onnx_file(Threshold(), tmp_path / "whole.onnx", [(1, 1, SIZE, SIZE)])
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(whole.read_bytes()[:len(whole.read_bytes()) // 2])
    assert main(["export", str(cut), "--lab", "4", "--out", str(tmp_path / "model"),
                 "--labels", "dark,bright,never", "--size", str(SIZE), str(SIZE)]) == 2
    err = capsys.readouterr().err
    assert "not a readable ONNX file" in err and "Traceback" not in err
    assert not (tmp_path / "model").exists()


def test_a_fusion_graph_gets_lab3s_slices_and_one_verdict(tmp_path: Path,
                                                          ct_series_dir: Path) -> None:
    from medviewer.inference import open_model

    torch.manual_seed(5)
    net = Classifier(channels=6).eval()
    path = onnx_file(net, tmp_path / "fusion.onnx", [(1, 6, SIZE, SIZE)], inputs=("volume",),
                     outputs=("verdict",))
    seen = foreign.inspect_file(path, "onnx")
    assert (seen.lab, seen.task, seen.num_classes) == (3, "fusion", 2)
    fields = {**cls_fields(id="foreign-fusion", lab=3, plugin="lab3"),
              "input": {"size": [SIZE, SIZE], "channels": 6, "context": "volume:6",
                        "window": [-600.0, 1500.0]},
              "options": {"pipeline": "fusion", "projection": "mip"}}
    manifest = foreign.export_self_contained(path, "onnx", fields, tmp_path / "model")
    assert manifest.onnx_inputs == {"slices": [1, 6, SIZE, SIZE]}
    result = open_model(tmp_path / "model").run(ct_volume(ct_series_dir))
    assert result.scores.shape == (1, 2)
    fields["input"]["context"] = "volume:8"  # the plugin would feed 8 slabs to a 6-slab graph
    (tmp_path / "store").mkdir()
    with pytest.raises(ModelError, match=r"fixed at \[1, 6, 32, 32\].*feeds \[1, 8, 32, 32\]"):
        foreign.export_self_contained(path, "onnx", fields, tmp_path / "store" / "model")
    assert list((tmp_path / "store").iterdir()) == []


class SixSlabs(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != 6:
            raise ValueError("six slabs expected")
        return x.mean(dim=(2, 3))[:, :2]


def test_a_torchscript_no_probe_fits_is_inspected_blank_and_exported_at_the_spec(
        tmp_path: Path) -> None:
    """No usual shape runs: the Inspection says so without guessing; the export, told the
    lab and spec, runs at the spec's shape."""
    path = tmp_path / "six.pt"
    torch.jit.script(SixSlabs()).save(str(path))
    seen = foreign.inspect_file(path, "torchscript")
    assert (seen.lab, seen.task, seen.outputs) == (None, None, {})
    assert "set the lab and the input spec" in seen.warnings[0]
    fields = {**cls_fields(id="six", lab=3, plugin="lab3"),
              "input": {"size": [SIZE, SIZE], "channels": 6, "context": "volume:6"}}
    manifest = foreign.export_self_contained(path, "torchscript", fields, tmp_path / "model")
    assert manifest.onnx_inputs == {"slices": [1, 6, SIZE, SIZE]}


def test_a_conversion_onnx_runtime_does_not_reproduce_is_refused(tmp_path: Path,
                                                                  monkeypatch) -> None:
    """The parity gate: an ONNX graph that answers otherwise than the TorchScript it came
    from (here another network swapped in after conversion) writes nothing."""
    real = foreign.torch_to_onnx

    def swapped(module, inputs, path, batched, source):
        real(module, inputs, path, batched, source)
        torch.manual_seed(99)
        torch.onnx.export(Classifier().eval(), tuple(torch.from_numpy(a) for a in inputs),
                          str(path), input_names=["input0"], output_names=["output0"],
                          opset_version=17, dynamo=False)

    monkeypatch.setattr(foreign, "torch_to_onnx", swapped)
    path = tmp_path / "classifier.pt"
    torch.manual_seed(1)
    torch.jit.script(Classifier().eval()).save(str(path))
    text = refused(tmp_path, path, "torchscript", cls_fields())
    assert "ONNX Runtime differs from torch" in text and "not trustworthy" in text


def test_an_absurd_input_size_is_refused_before_any_probe(tmp_path: Path) -> None:
    path = onnx_file(Threshold(), tmp_path / "seg.onnx", [(1, 1, SIZE, SIZE)],
                     dynamic={"input.1": {0: "n", 2: "h", 3: "w"}, "out": {0: "n", 2: "h",
                                                                        3: "w"}})
    fields = seg_fields()
    fields["input"].update(size=[8192, 8192], channels=3)
    assert "would take 1536 MB" in refused(tmp_path, path, "onnx", fields)


def test_nan_in_a_sparse_initializer_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    values = helper.make_tensor("w_values", TensorProto.FLOAT, [2], [1.0, float("nan")])
    indices = helper.make_tensor("w_indices", TensorProto.INT64, [2], [0, 5])
    weights = helper.make_sparse_tensor(values, indices, [1, 3, SIZE, SIZE])
    weights.values.name = "w"
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "sparse",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        sparse_initializer=[weights])
    path = tmp_path / "sparse.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert "weights hold NaN or infinite values (w)" in refused(tmp_path, path, "onnx",
                                                                 seg_fields())


def test_weights_listed_as_graph_inputs_keep_their_shapes(tmp_path: Path,
                                                          ct_series_dir: Path) -> None:
    """Older exporters list the weights among the graph's inputs: only the image input is
    the lab's "image" with a freed batch; the model still runs in the plugin."""
    import onnx

    from medviewer.inference import open_model

    path = tmp_path / "old.onnx"
    torch.onnx.export(Threshold().eval(), (torch.rand(1, 1, SIZE, SIZE),), str(path),
                      input_names=["input.1"], output_names=["out"], opset_version=17,
                      dynamo=False, keep_initializers_as_inputs=True)
    manifest = foreign.export_self_contained(path, "onnx", seg_fields(), tmp_path / "model")
    assert manifest.onnx_inputs == {"image": ["batch", 1, SIZE, SIZE]}
    graph = onnx.load(str(tmp_path / "model" / "model.onnx")).graph
    shapes = {v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
              for v in graph.input}
    assert shapes["conv.weight"] == [3, 1, 1, 1]
    assert open_model(tmp_path / "model").run(ct_volume(ct_series_dir)).label_map.any()


class Undefined(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(x.expand(-1, 3, -1, -1) - 2)


def test_a_model_answering_nan_on_the_probe_is_refused(tmp_path: Path) -> None:
    path = onnx_file(Undefined(), tmp_path / "nan-out.onnx", [(1, 1, SIZE, SIZE)])
    assert "answers NaN or infinity on a probe input" in refused(tmp_path, path, "onnx",
                                                                 seg_fields())


class DictSegmenter(nn.Module):
    """Answers as torchvision's segmentation models do: {"out": logits, "aux": ...}."""

    def __init__(self) -> None:
        super().__init__()
        self.head = Threshold()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.head(x), "aux": x.mean(dim=(1, 2, 3))}


def test_a_pt2_answering_a_dict_is_converted_and_its_dict_as_torchscript_is_a_sentence(
        tmp_path: Path) -> None:
    net = DictSegmenter().eval()
    path = tmp_path / "dict.pt2"
    torch.export.save(torch.export.export(net, (torch.rand(1, 1, SIZE, SIZE),)), str(path))
    manifest = foreign.export_self_contained(path, "exported-program", seg_fields(),
                                             tmp_path / "model")
    assert manifest.onnx_outputs == ("logits",)
    assert manifest.provenance["parity_max_relative_error"] <= 1e-4
    script = tmp_path / "dict.pt"
    torch.jit.script(net).save(str(script))
    text = refused(tmp_path, script, "torchscript", seg_fields())
    assert "answers a dict" in text and "model(x)['out']" in text


def test_names_that_clash_with_the_labs_are_swapped_and_moved_aside(tmp_path: Path) -> None:
    """An input called "logits" and an inner tensor called "image" end up as the lab's names
    without two values sharing one (the inner one moves aside)."""
    import onnx
    import onnxruntime as ort

    net = Classifier().eval()
    path = onnx_file(net, tmp_path / "clash.onnx", [(1, 3, SIZE, SIZE)], inputs=("logits",),
                     outputs=("y",))
    model = onnx.load(str(path))
    inner = model.graph.node[0].output[0]
    for node in model.graph.node:
        node.input[:] = ["image" if n == inner else n for n in node.input]
        node.output[:] = ["image" if n == inner else n for n in node.output]
    onnx.save(model, str(path))
    manifest = foreign.export_self_contained(path, "onnx", cls_fields(), tmp_path / "model")
    assert manifest.provenance["renamed"] == {"logits": "image", "y": "logits"}
    x = np.random.default_rng(6).random((2, 3, SIZE, SIZE), dtype=np.float32)
    session = ort.InferenceSession(str(tmp_path / "model" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {"image": x})
    with torch.no_grad():
        np.testing.assert_allclose(got, net(torch.from_numpy(x)).numpy(), rtol=1e-5,
                                   atol=1e-6)
