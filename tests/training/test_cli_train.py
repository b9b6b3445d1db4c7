"""`medviewer train JOB.json` as the dialog runs it: a child process streaming JSON lines."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from medviewer.inference.registry import shipped_models_dir, user_models_dir
from medviewer.training import run

ROOT = Path(__file__).resolve().parents[2]


def write_job(folder: Path, **kw: object) -> Path:
    job = {"model": "lab1-digits-mlp", "init": "scratch", "data": {"demo": 4}, "epochs": 1,
           "batch_size": 16, "lr": 0.003, "device": "cpu", "out": str(folder / "run"), **kw}
    path = folder / "job.json"
    path.write_text(json.dumps(job), encoding="utf-8")
    return path


def train_command(job: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "medviewer", "train", str(job), *extra]


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def store_snapshot() -> dict[str, str]:
    """sha256 of every file of the shipped models and the user's model store."""
    out = {}
    for root in (shipped_models_dir(), user_models_dir()):
        for path in sorted(root.rglob("*")) if root.exists() else []:
            if path.is_file():
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_bad_job_file_exits_2_with_the_sentence_on_stderr_and_an_error_event(
        tmp_path: Path) -> None:
    job = write_job(tmp_path, epoch=3)  # a typo of "epochs"
    done = subprocess.run(train_command(job), capture_output=True, text=True, cwd=ROOT,
                          env=child_env(), timeout=120)
    assert done.returncode == 2
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["event"] for e in events] == ["error"]
    assert "Unknown key epoch" in events[0]["message"] and str(job) in events[0]["message"]
    assert events[0]["message"] in done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("change", "words"), [
    ({"model": "no-such-model"}, ["no-such-model", "medviewer models"]),
    ({"data": {"demo": 0}}, ["has no data"]),
    ({"data": {"series": [], "demo": 0, "max_cases": 1}}, ["has no data"]),
])
def test_missing_model_or_data_is_a_bad_job(tmp_path: Path, capsys: pytest.CaptureFixture,
                                            change: dict, words: list[str]) -> None:
    out = io.StringIO()
    assert run.run_job(write_job(tmp_path, **change), stream=out) == run.EXIT_BAD_JOB
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["error"]
    for word in words:
        assert word in events[0]["message"]
    assert events[0]["message"] in capsys.readouterr().err


def test_train_prints_only_json_lines_and_ends_with_done(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDVIEWER_DATA_DIR", str(tmp_path / "data"))  # its own model store
    done = subprocess.run(train_command(write_job(tmp_path)), capture_output=True, text=True,
                          cwd=ROOT, env=child_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in done.stdout.splitlines()]  # every line parses
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    assert Path(events[-1]["candidate"], "model.onnx").is_file()
    compare = next(e for e in events if e["event"] == "compare")  # issue 11.18: evidence
    paired = compare["paired"]
    assert paired["n"] < paired["min_cases"] and paired["verdict"] == "too few cases"
    assert compare["better"] is False
    record = json.loads((tmp_path / "run" / "compare.json").read_text(encoding="utf-8"))
    assert len(record["paired"]["differences"]) == paired["n"]
    manifest = json.loads(Path(events[-1]["candidate"], "manifest.json").read_text())
    versus = manifest["metrics"]["versus_baseline"]  # issue 11.20: the same-set comparison
    assert versus["version"] == "1.0.0" and versus["verdict"] == "too few cases"
    assert manifest["provenance"]["created"][:4].isdigit()
    # the candidate is published from the command line, then rolled back
    models = [sys.executable, "-m", "medviewer", "models", "--json"]
    published = subprocess.run([*models, "--publish", events[-1]["candidate"]],
                               capture_output=True, text=True, env=child_env(), timeout=120)
    rows = json.loads(published.stdout)["versions"]
    assert [(r["version"], r["active"]) for r in rows] == [("1.0.0", False), ("1.1.0", True)]
    back = subprocess.run([*models, "--use", "lab1-digits-mlp", "1.0.0"], capture_output=True,
                          text=True, env=child_env(), timeout=120)
    assert [r["active"] for r in json.loads(back.stdout)["versions"]] == [True, False]


def test_cancel_mid_epoch_leaves_no_candidate_and_the_store_untouched(tmp_path: Path) -> None:
    before = store_snapshot()
    job = write_job(tmp_path, epochs=5000, data={"demo": 6})  # far longer than the test
    child = subprocess.Popen(train_command(job), stdout=subprocess.PIPE, text=True, cwd=ROOT,
                             env=child_env(), stderr=subprocess.PIPE)
    seen = []
    try:
        for line in child.stdout:
            seen.append(json.loads(line))
            if seen[-1]["event"] == "step":
                break
        child.send_signal(signal.SIGTERM)
        rest, errors = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    seen += [json.loads(line) for line in rest.splitlines()]
    assert child.returncode == run.EXIT_TERMINATED
    assert seen[-1]["event"] == "cancelled" and "cancelled" in seen[-1]["message"]
    assert "error" not in [e["event"] for e in seen]  # what the user asked for: no error
    assert "done" not in [e["event"] for e in seen]
    assert "cancelled" not in errors  # said once, on stdout, not again as an error
    run_dir = tmp_path / "run"
    assert not (run_dir / "candidate").exists()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".candidate")]
    assert store_snapshot() == before
