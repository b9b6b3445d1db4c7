"""The job file: strict validation, each problem a sentence naming the key (no torch run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medviewer.training.errors import TrainingError
from medviewer.training.job import Job, load_job


def write(tmp_path: Path, d: object) -> Path:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(d), encoding="utf-8")
    return path


def minimal(**kw: object) -> dict:
    return {"model": "lab1-digits-mlp", "data": {"demo": 4}, **kw}


def test_defaults_fill_a_minimal_job(tmp_path: Path) -> None:
    job = load_job(write(tmp_path, minimal()))
    assert (job.model, job.init, job.epochs, job.schedule, job.device) == (
        "lab1-digits-mlp", "current", 3, "cosine", "auto")
    assert job.optimizer is None  # the recipe picks: SGD for detection, Adam otherwise
    assert job.data.demo == 4 and job.data["demo"] == 4 and job.data.val_fraction == 0.25
    assert job.early_stopping is not None and job.early_stopping.patience == 3
    assert job.path == str(tmp_path / "job.json")
    assert job.lr == 1e-4  # fine-tuning
    assert load_job(write(tmp_path, minimal(init="scratch"))).lr == 1e-3


def test_round_trip_through_to_dict(tmp_path: Path) -> None:
    d = minimal(epochs=2, batch_size=4, lr=0.01, optimizer="sgd", schedule="step",
                early_stopping=None, augment=False, seed=3, device="cpu",
                max_steps_per_epoch=5, out=str(tmp_path / "run"))
    job = load_job(write(tmp_path, d))
    again = Job.from_dict(job.to_dict())
    assert again.to_dict() == job.to_dict()
    assert job.early_stopping is None and job.optimizer == "sgd" and job.lr == 0.01


def test_relative_paths_are_relative_to_the_job_file(tmp_path: Path) -> None:
    (tmp_path / "series").mkdir()
    job = load_job(write(tmp_path, {"model": "m", "data": {"series": ["series"]},
                                    "out": "runs/a"}))
    assert job.data.series == (str((tmp_path / "series").resolve()),)
    assert job.out == str((tmp_path / "runs" / "a").resolve())


@pytest.mark.parametrize(("d", "words"), [
    (minimal(epoch=3), ["Unknown key epoch", "epochs"]),
    (minimal(data={"demo": 2, "seriess": []}), ["Unknown key seriess in data"]),
    ({"data": {"demo": 2}}, ["names no model"]),
    ({"model": "", "data": {"demo": 2}}, ["names no model"]),
    ({"model": "m"}, ['no "data"']),
    (minimal(data={"demo": 0}), ["has no data"]),
    (minimal(data={"series": []}), ["has no data"]),
    (minimal(data={"series": ["/no/such/series"]}), ["do not exist", "/no/such/series"]),
    (minimal(epochs="3"), ["'epochs' must be a whole number"]),
    (minimal(epochs=0), ["'epochs' is 0", "at least 1"]),
    (minimal(epochs=True), ["'epochs' must be a whole number"]),
    (minimal(lr=0), ["'lr' is 0;", "above 0."]),
    (minimal(init="pretrained"), ['"pretrained"', "current, scratch"]),
    (minimal(optimizer="rmsprop"), ["adam, adamw, sgd"]),
    (minimal(early_stopping={"patience": 0}), ["'early_stopping.patience' is 0"]),
    (minimal(data={"demo": 2, "val_fraction": 1.0}), ["'data.val_fraction' is 1.0", "below 1."]),
    (minimal(augment="yes"), ["'augment' must be true or false"]),
    ([1, 2], ["must be a JSON object"]),
])
def test_bad_jobs_say_what_to_fix(tmp_path: Path, d: object, words: list[str]) -> None:
    path = write(tmp_path, d)
    with pytest.raises(TrainingError) as caught:
        load_job(path)
    assert caught.value.path == str(path)
    for word in words:
        assert word in caught.value.reason


def test_unreadable_job_files(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="does not exist"):
        load_job(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": "m",', encoding="utf-8")
    with pytest.raises(TrainingError, match="not valid JSON"):
        load_job(bad)


def test_a_pretrained_backbone_is_a_local_file_for_a_fresh_start(tmp_path: Path) -> None:
    (tmp_path / "bb.safetensors").write_bytes(b"x")
    job = load_job(write(tmp_path, minimal(init="scratch", backbone_weights="bb.safetensors")))
    assert job.backbone_weights == str(tmp_path / "bb.safetensors")
    with pytest.raises(TrainingError, match="init.*scratch"):
        load_job(write(tmp_path, minimal(backbone_weights="bb.safetensors")))
    with pytest.raises(TrainingError, match="never downloads"):
        load_job(write(tmp_path, minimal(init="scratch", backbone_weights="missing.pt")))


def test_one_series_of_a_folder_is_named_by_its_uid(tmp_path: Path) -> None:
    (tmp_path / "study").mkdir()
    job = load_job(write(tmp_path, minimal(data={"series": [
        "study", {"folder": "study", "uid": "1.2.3"}]})))
    assert job.data.series[0] == str(tmp_path / "study")
    assert (job.data.series[1].folder, job.data.series[1].uid) == (str(tmp_path / "study"),
                                                                   "1.2.3")
    assert Job.from_dict(job.to_dict()).to_dict() == job.to_dict()
    with pytest.raises(TrainingError, match="SeriesInstanceUID"):
        load_job(write(tmp_path, minimal(data={"series": [{"folder": "study"}]})))
