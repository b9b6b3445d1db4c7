"""The training loop and a whole job in-process, on the labs' demo cases (tiny, CPU)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from medviewer.inference.manifest import load_manifest
from medviewer.inference.registry import user_models_dir
from medviewer.training import loop, recipes, run
from medviewer.training.distributed import World

EVENT_KEYS = {
    "start": {"model", "from_version", "init", "message", "run_dir", "epochs",
              "steps_per_epoch", "train_cases", "validation_cases", "train_samples",
              "validation_samples", "device", "world_size"},
    "step": {"epoch", "step", "steps", "loss", "samples_per_s", "eta_s", "progress"},
    "epoch": {"epoch", "epochs", "train_loss", "val_loss", "metrics", "main_metric", "best",
              "lr", "eta_s", "progress"},
    "export": {"folder", "parity"},
    "compare": {"file", "main_metric", "current", "candidate", "better"},
    "done": {"candidate", "run_dir", "seconds"},
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_job(folder: Path, **kw: object) -> Path:
    job = {"model": "lab1-digits-mlp", "init": "scratch", "data": {"demo": 6}, "epochs": 3,
           "batch_size": 16, "lr": 0.003, "device": "cpu", "out": str(folder / "run"), **kw}
    path = folder / "job.json"
    path.write_text(json.dumps(job), encoding="utf-8")
    return path


def run_events(path: Path) -> tuple[int, list[dict]]:
    out = io.StringIO()
    code = run.run_job(path, stream=out)
    return code, [json.loads(line) for line in out.getvalue().splitlines()]


def test_short_run_lowers_the_loss_and_beats_the_untrained_model(tmp_path: Path) -> None:
    p = run.prepare(write_job(tmp_path, epochs=4), World())
    torch.manual_seed(0)
    built = recipes.build_model(p.manifest, "scratch")
    setup = run.make_setup(p, World(), built, torch.device("cpu"))
    _, untrained = loop.validate(setup)
    events: list[dict] = []
    outcome = loop.fit(setup, events.append)
    epochs = [e for e in events if e["event"] == "epoch"]
    assert len(epochs) == 4 and outcome.epochs_run == 4
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    name = outcome.main_metric
    assert name == "roc_auc"
    assert outcome.best_metric > untrained[name]
    assert epochs[-1]["metrics"]["accuracy"] > untrained["accuracy"] + 0.2
    assert (tmp_path / "run" / loop.BEST_FILE).is_file()


def test_a_job_writes_its_run_folder_and_compares_on_one_split(tmp_path: Path) -> None:
    store_before = sorted(user_models_dir().rglob("*")) if user_models_dir().exists() else []
    code, events = run_events(write_job(tmp_path, epochs=2))
    assert code == 0
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-3:] == ["export", "compare", "done"]
    assert kinds.count("epoch") == 2 and "step" in kinds
    for e in events:
        assert EVENT_KEYS.get(e["event"], set()) <= set(e), e
    assert 0 < events[1]["progress"] <= 1 and events[-4]["progress"] == 1.0
    run_dir = tmp_path / "run"
    lines = (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == events
    compare = json.loads((run_dir / "compare.json").read_text(encoding="utf-8"))
    assert compare["current"]["version"] == "1.0.0"
    assert compare["candidate"]["version"] == "1.1.0"
    split = json.loads((run_dir / "split.json").read_text(encoding="utf-8"))
    assert not set(split["train"]) & set(split["validation"])
    # both versions scored on the same validation samples
    n = events[0]["validation_samples"]
    assert compare["current"]["metrics"]["n"] == compare["candidate"]["metrics"]["n"] == n
    assert compare["current"]["confusion"]["labels"] == [str(d) for d in range(10)]
    assert compare["better"] == (compare["candidate"]["metrics"]["roc_auc"]
                                 > compare["current"]["metrics"]["roc_auc"])
    candidate = load_manifest(run_dir / "candidate", verify=True)
    assert candidate.provenance["init"] == "scratch" and candidate.provenance["epochs"] == 2
    assert candidate.metrics["accuracy"] == pytest.approx(
        compare["candidate"]["metrics"]["accuracy"], abs=0.02)  # torch vs ONNX Runtime
    after = sorted(user_models_dir().rglob("*")) if user_models_dir().exists() else []
    assert after == store_before  # nothing published


def test_early_stopping_ends_a_run_that_stopped_improving(tmp_path: Path) -> None:
    job = write_job(tmp_path, epochs=6, lr=1e-9, max_steps_per_epoch=1,
                    early_stopping={"patience": 1, "min_delta": 0.01}, init="current")
    code, events = run_events(job)
    assert code == 0
    epochs = [e for e in events if e["event"] == "epoch"]
    stops = [e for e in events if e["event"] == "early_stop"]
    assert len(epochs) == 2 and len(stops) == 1 and stops[0]["epoch"] == 2
    assert epochs[0]["best"] and not epochs[1]["best"]


@pytest.mark.parametrize(("model", "metric"), [("lab4-chest-unet", "dice"),
                                               ("lab5-heart-frcnn", "ap50")])
def test_segmentation_and_detection_jobs_run_end_to_end(tmp_path: Path, model: str,
                                                        metric: str) -> None:
    code, events = run_events(write_job(tmp_path, model=model, init="current",
                                        data={"demo": 4}, epochs=1, batch_size=2,
                                        lr=1e-4, max_steps_per_epoch=2))
    assert code == 0, events[-1]
    epoch = next(e for e in events if e["event"] == "epoch")
    assert epoch["main_metric"] == metric and 0 <= epoch["metrics"][metric] <= 1
    compare = json.loads((tmp_path / "run" / "compare.json").read_text(encoding="utf-8"))
    assert compare["main_metric"] == metric
    for side in ("current", "candidate"):
        assert metric in compare[side]["metrics"]
    if metric == "dice":
        assert compare["candidate"]["per_case"].keys() == compare["current"]["per_case"].keys()
    else:
        assert epoch["val_loss"] is None  # torchvision's detector has no eval-mode loss


def test_scratch_training_takes_a_local_pretrained_backbone_and_says_so(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from safetensors.torch import save_file

    conv = torch.full((64, 3, 7, 7), 0.25)  # a recognisable "pretrained" first convolution
    save_file({"conv1.weight": conv}, str(tmp_path / "resnet50.safetensors"))
    manifest = SimpleNamespace(arch="lab2.resnet50_agesex", options={}, labels=["no", "yes"],
                               id="x", version="1")
    built = recipes.build_model(manifest, "scratch",
                                backbone_weights=str(tmp_path / "resnet50.safetensors"))
    assert torch.equal(built.model.backbone.conv1.weight, conv)
    assert "backbone from" in built.message and "resnet50.safetensors" in built.message
    assert "no pretrained backbone" in recipes.build_model(manifest, "scratch").message
