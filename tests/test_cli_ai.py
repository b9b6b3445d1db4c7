"""`medviewer models / infer / export`, the result files, and the example third-party plugin.

The models here are tiny torch modules registered as `test.*` architectures with weights a
test can reason about (a two-threshold segmenter, a mean-brightness classifier), exported
through the CLI itself, so nothing depends on the labs' shipped models.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

import medviewer.core.synthetic as syn
from medviewer.cli import main
from medviewer.core.annotations import read_seg
from medviewer.core.atomic import shareable_mode
from medviewer.core.dicom import load_series, scan
from medviewer.inference import Box, Plugin, Result, load_manifest, register_plugin
from medviewer.inference.outputs import write_result_files
from medviewer.inference.pipelines import SliceClassifier, SliceSegmenter
from medviewer.labs.architectures import ARCHITECTURES, Architecture

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64  # the synthetic CT's slice size: no resizing, so expected masks are exact
WINDOW = (0.0, 2000.0)  # HU -1000..1000 -> 0..1
SOFT_HU, BONE_HU = -500.5, 300.5  # the segmenter's thresholds, between whole HU values


def _unit(hu: float) -> float:
    return (hu - (WINDOW[0] - WINDOW[1] / 2)) / WINDOW[1]


class Thresholds(nn.Module):
    """1x1 conv whose argmax is 0 below SOFT_HU, 1 ("soft") up to BONE_HU, 2 ("bone") above."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.head = nn.Conv2d(1, num_classes, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(image)


def thresholds(num_classes: int = 3) -> Thresholds:
    model = Thresholds(num_classes)
    a, s, b = 50.0, _unit(SOFT_HU), _unit(BONE_HU)
    with torch.no_grad():  # c1 = a (x - s); c2 = c1 + a (x - b): crosses c1 exactly at b
        model.head.weight.copy_(torch.tensor([0.0, a, 2 * a]).view(3, 1, 1, 1))
        model.head.bias.copy_(torch.tensor([0.0, -a * s, -a * s - a * b]))
    return model


class MeanBrightness(nn.Module):
    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(1, num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(image).flatten(1))


def _arch(name: str, lab: int, task: str, build) -> Architecture:
    arch = Architecture(name=name, lab=lab, task=task, build=build,
                        example_inputs=lambda: (torch.rand(2, 1, 16, 16),),
                        input_names=("image",), output_names=("logits",),
                        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    return ARCHITECTURES.setdefault(name, arch)


SEG_ARCH = _arch("test.thresholds", 4, "segmentation", thresholds)
CLS_ARCH = _arch("test.mean_brightness", 2, "classification", MeanBrightness)
register_plugin(Plugin(name="testlab", lab=0, title="Test plugin", pipelines={
    "segmentation": SliceSegmenter, "classification": SliceClassifier}))


def _checkpoint(model: nn.Module, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _export_args(checkpoint: Path, arch: Architecture, out: Path, labels: str) -> list[str]:
    return ["export", str(checkpoint), "--lab", str(arch.lab), "--arch", arch.name,
            "--out", str(out), "--plugin", "testlab", "--labels", labels,
            "--size", str(SIZE), str(SIZE), "--window", *map(str, WINDOW),
            "--modalities", "CT", "--id", out.name]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """The two test models exported through `medviewer export`, in one models folder."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    seg = _checkpoint(thresholds(), root / "seg.safetensors")
    cls = _checkpoint(MeanBrightness(), root / "cls.safetensors")
    assert main(_export_args(seg, SEG_ARCH, root / "test-seg", "background,soft,bone")) == 0
    assert main(_export_args(cls, CLS_ARCH, root / "test-cls", "dark,bright")) == 0
    return {"root": root, "seg": root / "test-seg", "cls": root / "test-cls"}


@pytest.fixture
def study(tmp_path, ct_series_dir) -> Path:
    """A folder: the small chest CT, an MR series, and a CT file that cannot be decoded."""
    folder = ct_series_dir.parent
    syn.write_series(folder / "mr", np.full((3, 32, 32), 100, np.int16), modality="MR", seed=3)
    syn.write_broken(folder / "broken")
    return folder


# --- infer --------------------------------------------------------------------------------------

def test_infer_segmentation_writes_a_seg_that_reads_back(models, study, tmp_path, capsys):
    out = tmp_path / "results"
    code = main(["infer", "--model", str(models["seg"]), str(study), "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 1  # the undecodable series failed; the others still ran
    assert "FAILED" in text and "BROKEN FILES" in text
    assert "not for this model" in text and "(MR)" in text
    assert "on CPU" in text and "load " in text
    volume = load_series([s for s in scan(study / "ct").all_series()][0])
    segs = sorted(out.glob("*.seg.dcm"))
    assert len(segs) == 1
    label_map, labels = read_seg(segs[0], volume)
    hu = volume.voxels
    expected = (hu > SOFT_HU).astype(np.uint8) + (hu > BONE_HU)
    assert labels == ["background", "soft", "bone"] and (expected == 2).sum() > 50
    np.testing.assert_array_equal(label_map, expected)
    summary = json.loads(segs[0].with_name(segs[0].name.replace(".seg.dcm", ".json"))
                         .read_text())
    bone = summary["labels"][1]
    voxel_ml = np.prod(volume.spacing) / 1000
    assert bone["voxels"] == int((expected == 2).sum())
    assert bone["volume_ml"] == pytest.approx(bone["voxels"] * voxel_ml, rel=1e-3)


def test_a_segmentation_that_finds_nothing_writes_no_empty_seg(models, tmp_path):
    air = tmp_path / "air"
    syn.write_series(air, np.full((3, 32, 32), -1000, np.int16), spacing=(2.5, 1.0, 1.0))
    out = tmp_path / "results"
    assert main(["infer", "--model", str(models["seg"]), str(air), "--out", str(out)]) == 0
    assert not list(out.glob("*.seg.dcm"))  # no segment has voxels: no all-zero frames
    (summary,) = out.glob("*.json")
    assert all(label["voxels"] == 0 for label in json.loads(summary.read_text())["labels"])


def test_infer_classification_csv_has_one_row_per_slice(models, ct_series_dir, tmp_path):
    out = tmp_path / "results"
    assert main(["infer", "--model", str(models["cls"]), str(ct_series_dir), "--out", str(out),
                 "--slices", "5:12", "--provider", "cpu"]) == 0
    (csv_path,) = out.glob("*.csv")
    rows = list(csv.DictReader(csv_path.open()))
    volume = load_series(scan(ct_series_dir).all_series()[0])
    assert [int(r["slice"]) for r in rows] == list(range(5, 12))
    assert [r["sop_instance_uid"] for r in rows] == [
        volume.sources[k].sop_instance_uid for k in range(5, 12)]
    probs = np.array([[float(r["score_dark"]), float(r["score_bright"])] for r in rows])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert all(r["label"] == ("dark", "bright")[int(np.argmax(p))] for r, p in zip(
        rows, probs, strict=True))
    assert main(["infer", "--model", str(models["cls"]), str(ct_series_dir), "--out",
                 str(out)]) == 0
    assert len(list(csv.DictReader(csv_path.open()))) == volume.voxels.shape[0]


def test_infer_refuses_a_bad_model_and_the_source_folder(models, ct_series_dir, tmp_path,
                                                         capsys):
    assert main(["infer", "--model", "no-such-model", str(ct_series_dir), "--out",
                 str(tmp_path / "r")]) == 2
    assert "No model 'no-such-model'" in capsys.readouterr().err
    damaged = tmp_path / "damaged"
    import shutil

    shutil.copytree(models["seg"], damaged)
    (damaged / "model.onnx").write_bytes(b"not a model")
    assert main(["infer", "--model", str(damaged), str(ct_series_dir), "--out",
                 str(tmp_path / "r")]) == 2
    assert "does not match the checksum" in capsys.readouterr().err
    assert main(["infer", "--model", str(models["seg"]), str(ct_series_dir), "--out",
                 str(ct_series_dir)]) == 2
    assert "beside or over the source" in capsys.readouterr().err
    assert main(["infer", "--model", str(models["seg"]), str(ct_series_dir), "--out",
                 str(tmp_path / "r"), "--slices", "40:50"]) == 1
    assert "selects no slice" in capsys.readouterr().out


def test_infer_scores_each_segmentation_against_its_truth_seg(models, study, tmp_path,
                                                              capsys):
    from medviewer.core.annotations import write_seg

    volume = load_series(scan(study / "ct").all_series()[0])
    hu = volume.voxels
    pred = (hu > SOFT_HU).astype(np.uint8) + (hu > BONE_HU)  # what the model answers
    truth = pred.copy()
    half = len(truth) // 2
    truth[half:][truth[half:] == 2] = 0  # the reader drew bone on the upper half only
    masks = tmp_path / "masks"
    write_seg(truth, volume, ["background", "Soft", "bone"], masks / "reader.seg.dcm")
    (masks / "notes.txt").write_text("not DICOM")  # skipped, like any non-SEG file
    out = tmp_path / "results"
    assert main(["infer", "--model", str(models["seg"]), str(study / "ct"), "--out", str(out),
                 "--truth", str(masks)]) == 0
    text = capsys.readouterr().out
    assert "against reader.seg.dcm" in text and "BF1 (2 mm)" in text and "HD95 (mm)" in text
    assert "pixel accuracy" in text and "mean IoU" in text
    (scored,) = out.glob("*_vs_truth.json")
    report = json.loads(scored.read_text())["against_truth"][0]
    soft, bone = report["labels"]["soft"], report["labels"]["bone"]
    assert (soft["dice"], soft["hd95"], soft["boundary_f1"]) == (1.0, 0.0, 1.0)
    assert bone["recall"] == 1.0
    assert bone["precision"] == pytest.approx((truth == 2).sum() / (pred == 2).sum())
    assert bone["hd95"] > 0 and report["unit"] == "mm" and report["tolerance"] == 2.0
    assert report["overall"]["pixel_accuracy"] == pytest.approx(np.mean(pred == truth))


def test_infer_truth_is_for_segmentations_and_must_exist(models, ct_series_dir, tmp_path,
                                                         capsys):
    assert main(["infer", "--model", str(models["cls"]), str(ct_series_dir), "--out",
                 str(tmp_path / "r"), "--truth", str(ct_series_dir)]) == 2
    assert "--truth scores segmentations" in capsys.readouterr().err
    assert main(["infer", "--model", str(models["seg"]), str(ct_series_dir), "--out",
                 str(tmp_path / "r"), "--truth", str(ct_series_dir)]) == 2
    err = capsys.readouterr().err
    assert "No DICOM SEG" in err and "Traceback" not in err


def test_infer_with_cuda_asked_for_where_it_does_not_work(models, ct_series_dir, tmp_path,
                                                         capsys):
    from medviewer.inference import working_providers

    if "CUDAExecutionProvider" in working_providers():
        pytest.skip("CUDA works here")
    assert main(["infer", "--model", str(models["seg"]), str(ct_series_dir), "--out",
                 str(tmp_path / "r"), "--provider", "cuda"]) == 2
    assert "--provider cpu" in capsys.readouterr().err


def test_infer_runs_the_backend_asked_for_and_says_when_it_cannot(models, ct_series_dir,
                                                                  tmp_path, capsys,
                                                                  monkeypatch):
    monkeypatch.delenv("MEDVIEWER_BACKEND", raising=False)
    args = ["infer", "--model", str(models["cls"]), str(ct_series_dir), "--slices", "0:3"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert "ONNX Runtime fp32: 1 series" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "b"), "--backend", "int8"]) == 0
    out = capsys.readouterr().out  # this model has no int8 file: fp32, and the reason
    assert "ONNX Runtime fp32: 1 series" in out and "has no int8 version" in out
    for run in ("a", "b"):  # the result files say what ran, not what was asked for
        summary = json.loads(next((tmp_path / run).glob("*.json")).read_text())
        assert (summary["provider"], summary["runtime"]) == ("CPUExecutionProvider",
                                                             "ONNX Runtime fp32")
    assert main([*args, "--out", str(tmp_path / "c"), "--backend", "fast"]) == 2
    err = capsys.readouterr().err
    assert "Unknown backend 'fast'" in err and "Traceback" not in err
    if importlib.util.find_spec("openvino") is not None:
        assert main([*args, "--out", str(tmp_path / "d"), "--backend", "openvino"]) == 0
        assert "OpenVINO fp32: 1 series" in capsys.readouterr().out
        labels = [[r["label"] for r in csv.DictReader(next((tmp_path / k).glob("*.csv")).open())]
                  for k in ("a", "d")]
        assert len(labels[0]) == 3 and labels[0] == labels[1]  # same verdicts either way


# --- models -------------------------------------------------------------------------------------

def test_models_lists_models_plugins_and_providers(models, monkeypatch, capsys):
    monkeypatch.setenv("MEDVIEWER_MODELS_DIR", str(models["root"]))
    assert main(["models", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    by_id = {m["id"]: m for m in out["models"]}
    assert by_id["test-seg"]["task"] == "segmentation"
    assert by_id["test-seg"]["runtime"] == "ONNX Runtime fp32"  # no int8 file: nothing else
    assert Path(by_id["test-cls"]["folder"]) == models["cls"]
    assert {f"lab{n}" for n in range(1, 6)} <= {p["name"] for p in out["plugins"]}
    assert out["providers"][-1] == "CPUExecutionProvider"
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "test-seg 1.0.0" in text and "providers that work here" in text


def test_models_sums_up_per_label_scores_in_one_average_each(capsys):
    """The shipped lab 4 model stores Dice and IoU per label only: the line gives their
    mean, not one number per label."""
    from medviewer.inference import list_models

    lab4 = next(m for m in list_models()[0] if m.id == "lab4-chest-unet")
    labels = [k[5:] for k in lab4.metrics if k.startswith("dice_")]
    assert main(["models"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "lab4-chest-unet" in x)
    mean = np.mean([lab4.metrics[f"dice_{x}"] for x in labels])
    assert f"dice (mean of {len(labels)} labels) {mean:.3g}" in line
    assert "dice_lung" not in line


def test_listing_models_imports_no_model_code():
    code = ("import sys; from medviewer.cli import main; main(['models', '--json']); "
            "print('LOADED', sorted(m for m in sys.modules if m == 'torch' or "
            "m.startswith('medviewer.labs.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip().splitlines()[-1] == "LOADED []"


# --- export -------------------------------------------------------------------------------------

def test_export_round_trip_matches_torch(tmp_path, capsys):
    import onnxruntime as ort

    torch.manual_seed(1)
    model = thresholds()
    torch.nn.init.normal_(model.head.weight)  # weights that are not the fixed thresholds
    checkpoint = _checkpoint(model, tmp_path / "w.safetensors")
    out = tmp_path / "exported"
    assert main(_export_args(checkpoint, SEG_ARCH, out, "background,soft,bone")) == 0
    printed = capsys.readouterr()
    assert "ONNX Runtime matches torch" in printed.out
    assert "Warning" not in printed.err  # the exporter's notes are not the user's business
    m = load_manifest(out)  # checksums verified
    assert (m.arch, m.task, m.plugin, m.input.size) == (SEG_ARCH.name, "segmentation",
                                                        "testlab", (SIZE, SIZE))
    assert m.label_names == ["background", "soft", "bone"]
    assert m.provenance["checkpoint_sha256"] and "medviewer" in m.provenance["command"]
    x = torch.rand(3, 1, SIZE, SIZE)
    got = ort.InferenceSession(str(out / "model.onnx")).run(None, {"image": x.numpy()})[0]
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_export_like_copies_the_input_spec_and_labels(models, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDVIEWER_MODELS_DIR", str(models["root"]))
    checkpoint = _checkpoint(thresholds(), tmp_path / "v2.safetensors")
    out = tmp_path / "v2"
    assert main(["export", str(checkpoint), "--lab", "4", "--arch", SEG_ARCH.name, "--out",
                 str(out), "--like", "test-seg", "--version", "2.0.0"]) == 0
    new, old = load_manifest(out), load_manifest(models["seg"])
    assert (new.input, new.labels, new.plugin) == (old.input, old.labels, old.plugin)
    assert new.version == "2.0.0"


def test_export_with_the_wrong_architecture_says_so(models, tmp_path, capsys):
    checkpoint = _checkpoint(MeanBrightness(), tmp_path / "cls.safetensors")
    out = tmp_path / "wrong"
    assert main(_export_args(checkpoint, SEG_ARCH, out, "background,soft,bone")) == 2
    err = capsys.readouterr().err
    assert "do not fit the architecture" in err and "Pick the architecture" in err
    assert not out.exists()
    assert main(_export_args(checkpoint, CLS_ARCH, out, "dark,bright")[:4] + [
        "--arch", "no.such.arch", "--size", "8", "8", "--labels", "a,b"]) == 2
    assert "unknown architecture 'no.such.arch'" in capsys.readouterr().err


class Marker:
    """Unpickling it runs os.system, which would create the marker file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        import os

        return os.system, (f"touch '{self.path}'",)


def test_export_reads_state_dicts_and_refuses_code(tmp_path, capsys):
    checkpoint = tmp_path / "model.pt"
    torch.save({"state_dict": thresholds().state_dict(), "epoch": 3}, checkpoint)
    args = _export_args(checkpoint, SEG_ARCH, tmp_path / "from-pickle", "background,soft,bone")
    assert main(args) == 0  # weights_only: no code runs, so no trust is needed
    assert load_manifest(tmp_path / "from-pickle").arch == SEG_ARCH.name
    assert main(args) == 2 and "--force" in capsys.readouterr().err  # no silent overwrite
    marker, evil = tmp_path / "ran", tmp_path / "evil.pt"
    torch.save({"state_dict": thresholds().state_dict(), "hook": Marker(marker)}, evil)
    args = _export_args(evil, SEG_ARCH, tmp_path / "evil", "background,soft,bone")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "run code" in err and "--trust-pickle" in err and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "evil").exists()


def test_export_opens_a_whole_pickled_module_only_when_trusted(tmp_path, capsys):
    checkpoint = tmp_path / "whole.pt"
    torch.save(thresholds(), checkpoint)
    args = _export_args(checkpoint, SEG_ARCH, tmp_path / "whole", "background,soft,bone")
    assert main(args) == 2
    assert "whole pickled model" in capsys.readouterr().err
    assert main([*args, "--trust-pickle"]) == 0
    assert "whole pickled model" in capsys.readouterr().out  # said again, as a note
    assert load_manifest(tmp_path / "whole").arch == SEG_ARCH.name


class Wrapped(nn.Module):
    """The thresholds network under another script's names: `model.conv` for `head`."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Module()
        self.model.conv = thresholds().head


def test_export_guesses_the_architecture_and_renames_with_a_report(tmp_path, capsys):
    checkpoint = _checkpoint(Wrapped(), tmp_path / "wrapped.safetensors")
    args = _export_args(checkpoint, SEG_ARCH, tmp_path / "guessed", "background,soft,bone")
    assert main([a for i, a in enumerate(args) if i not in (2, 3, 4, 5)]) == 0  # no lab/arch
    out = capsys.readouterr().out
    assert f"architecture: {SEG_ARCH.name} (guessed from the weights; 100% of tensors fit)" in out
    assert "key report: 2 of 2 tensors loaded; renamed model.conv.* -> head.*" in out
    assert load_manifest(tmp_path / "guessed").arch == SEG_ARCH.name


def test_export_maps_prefixes_the_user_gives(tmp_path, capsys):
    twin = Wrapped()
    twin.model.other = thresholds().head  # two modules of one shape: no automatic pairing
    checkpoint = _checkpoint(twin, tmp_path / "twin.safetensors")
    args = _export_args(checkpoint, SEG_ARCH, tmp_path / "mapped", "background,soft,bone")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "0 of 2 tensors loaded; missing: head.bias, head.weight; unexpected: " \
           "model.conv.bias, model.conv.weight, model.other.bias, model.other.weight" in err
    assert "--map OLD_PREFIX=NEW_PREFIX" in err
    assert main([*args, "--map", "model.conv=head"]) == 2  # the file's names in the report
    assert "2 of 2 tensors loaded; unexpected: model.other.bias, model.other.weight" in \
        capsys.readouterr().err
    twin.model.other = nn.Identity()
    checkpoint = _checkpoint(twin, tmp_path / "twin.safetensors")
    assert main([*args, "--map", "model.conv=head"]) == 0
    assert "key report: 2 of 2 tensors loaded" in capsys.readouterr().out


def test_export_takes_an_onnx_file_without_an_architecture(tmp_path, capsys):
    model = thresholds().eval()
    path = tmp_path / "theirs.onnx"
    torch.onnx.export(model, (torch.rand(1, 1, SIZE, SIZE),), str(path), input_names=["x"],
                      output_names=["y"], opset_version=17, dynamo=False)
    args = _export_args(path, SEG_ARCH, tmp_path / "from-onnx", "background,soft,bone")
    assert main([a for i, a in enumerate(args) if i not in (2, 3, 4, 5)]) == 0  # lab guessed
    assert "key report" not in capsys.readouterr().out  # no torch weights to fit
    m = load_manifest(tmp_path / "from-onnx")
    assert (m.lab, m.task, m.arch, m.input.size) == (4, "segmentation", "external.onnx",
                                                     (SIZE, SIZE))


# --- result files -------------------------------------------------------------------------------

def _result(task: str, **fields) -> Result:
    return Result(model_id="m", model_version="1", task=task, labels=["normal", "nodule"],
                  colours=["#00ff00", "#ff0000"], provider="CPUExecutionProvider", **fields)


def test_detection_files_carry_boxes_with_their_slice_uid(tmp_path):
    boxes = [Box(10, 20, 30, 40, "nodule", 0.9, 3), Box(1, 2, 3, 4, "nodule", 0.4, 5)]
    result = _result("detection", boxes=boxes, slice_indices=[3, 5],
                     sop_instance_uids=["1.2.3", "1.2.5"])
    paths = write_result_files(result, tmp_path, "det")
    assert [p.name for p in paths] == ["det.json", "det.csv"]
    rows = list(csv.DictReader((tmp_path / "det.csv").open()))
    assert [(r["slice"], r["sop_instance_uid"], r["x1"]) for r in rows] == [
        ("3", "1.2.3", "30.0"), ("5", "1.2.5", "3.0")]
    assert json.loads(paths[0].read_text())["boxes"][0]["score"] == 0.9
    assert all(p.stat().st_mode & 0o777 == shareable_mode() for p in paths)  # not mkstemp's 0600


def test_fusion_files_have_one_row_per_series_verdict(tmp_path):
    result = _result("fusion", scores=np.array([[0.2, 0.8]]), series_instance_uid="9.9")
    write_result_files(result, tmp_path, "fusion")
    (row,) = csv.DictReader((tmp_path / "fusion.csv").open())
    assert (row["series_instance_uid"], row["label"], float(row["score"]),
            float(row["score_nodule"])) == ("9.9", "nodule", 0.8, 0.8)


# --- the third-party example plugin ---------------------------------------------------------------

def test_example_plugin_exports_and_runs_without_installing(ct_series_dir, tmp_path,
                                                            monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "medviewer-example-plugin"))
    from medviewer_example import export as example_export
    from medviewer_example.plugin import PLUGIN

    plugin_has_no_torch = ("import medviewer_example.plugin, sys; "
                           "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", plugin_has_no_torch], capture_output=True,
                         text=True, check=True, cwd=ROOT / "examples" / "medviewer-example-plugin")
    assert out.stdout.strip() == "False"
    register_plugin(PLUGIN)
    manifest = example_export.export(tmp_path / "example-bright")
    assert manifest.plugin == "example" and manifest.task == "segmentation"
    out = tmp_path / "results"
    assert main(["infer", "--model", str(manifest.folder), str(ct_series_dir),
                 "--out", str(out)]) == 0
    volume = load_series(scan(ct_series_dir).all_series()[0])
    (seg,) = out.glob("*.seg.dcm")
    label_map, labels = read_seg(seg, volume)
    assert labels == ["background", "bone"]
    found = label_map == 1
    bright = volume.voxels > 300  # the example's threshold; its option drops specks < 4 px
    structures = np.zeros_like(bright)
    for k, mask in enumerate(bright):
        regions, _ = ndimage.label(mask)
        sizes = np.bincount(regions.ravel())
        structures[k] = mask & (sizes[regions] >= 4)
    assert structures.sum() > 100 and found.sum() < bright.sum()  # specks were dropped
    assert (found & structures).sum() >= 0.95 * structures.sum()
    assert (found & bright).sum() >= 0.9 * found.sum()


# --- python -m medviewer.labs.train_all -----------------------------------------------------------

def test_train_all_reports_missing_and_failing_labs_and_trains_the_rest(tmp_path, monkeypatch,
                                                                        capsys):
    from types import SimpleNamespace

    from medviewer.labs import train_all

    def train(out_dir: Path, *, seed: int = 0) -> list[Path]:
        folder = out_dir / f"fake-{seed}"
        folder.mkdir()
        return [folder]

    def broken(out_dir: Path, *, seed: int = 0) -> list[Path]:
        raise RuntimeError("out of phantoms")

    monkeypatch.setitem(sys.modules, "medviewer.labs.lab2.demo", None)  # import fails: missing
    monkeypatch.setitem(sys.modules, "medviewer.labs.lab3.demo", SimpleNamespace(train=train))
    monkeypatch.setitem(sys.modules, "medviewer.labs.lab5.demo", SimpleNamespace(train=broken))
    assert train_all.main(["--lab", "2", "--lab", "3", "--lab", "5", "--out", str(tmp_path),
                           "--seed", "7"]) == 1
    out = capsys.readouterr().out
    assert (tmp_path / "fake-7").is_dir()
    assert "lab 2 missing" in out and "lab 3 ok" in out and "out of phantoms" in out


def test_the_command_line_parser_does_not_load_the_training_job_runner():
    """Every `medviewer <command>` builds the whole parser; the `train` sub-command's runner
    (job files, model versions: 0.12 s of imports) loads only when a job runs."""
    import subprocess
    import sys

    code = ("import sys, medviewer.cli as c; c._subcommand_parser(); "
            "print('medviewer.training.run' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
