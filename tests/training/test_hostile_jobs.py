"""Hostile job files: each is a bad job (exit 2, one "error" event, the sentence on stderr),
never a run that fails later with exit 1 or trains on NaN (issue 12, item 8)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from medviewer.inference.staging import host_tag
from medviewer.training import run
from medviewer.training.job import load_job

ROOT = Path(__file__).resolve().parents[2]


def _job_text(**kw: str) -> str:
    """A job as text, so values JSON cannot write (NaN, 1e999, 5000 digits) can be put in."""
    fields = {"model": '"lab1-digits-mlp"', "init": '"scratch"', "data": '{"demo": 4}',
              "epochs": "1", "device": '"cpu"', **kw}
    return "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"


BAD = [
    ({"lr": "NaN"}, "'lr' is nan"),
    ({"lr": "Infinity"}, "'lr' is inf"),
    ({"lr": "1e999"}, "'lr' is inf"),
    ({"seed": str(2**70)}, "'seed' is 1180591620717411303424"),
    ({"data": '{"demo": 4, "split_seed": ' + str(2**64) + "}"}, "'data.split_seed'"),
    ({"early_stopping": '{"min_delta": NaN}'}, "'early_stopping.min_delta' is nan"),
    ({"early_stopping": '{"min_delta": -Infinity}'}, "'early_stopping.min_delta'"),
    ({"epochs": str(2**70)}, "'epochs' is"),
    ({"batch_size": str(10**30)}, "'batch_size' is"),
    ({"data": '{"demo": 4, "val_fraction": NaN}'}, "'data.val_fraction' is nan"),
    ({"data": "[" * 100_000 + "]" * 100_000}, "cannot be read (it nests too deep)"),
    ({"data": '{"demo": 4, "series": [' + "[" * 900 + "]" * 900 + "]}"}, "[[[[..."),
    ({"lr": "1" * 5000}, "cannot be read"),
]


@pytest.mark.parametrize(("change", "words"), BAD, ids=[next(iter(c)) + str(i)
                                                        for i, (c, _) in enumerate(BAD)])
def test_a_hostile_job_is_a_bad_job(tmp_path, capsys, change, words):
    path = tmp_path / "job.json"
    path.write_text(_job_text(out=json.dumps(str(tmp_path / "run")), **change))
    out = io.StringIO()
    assert run.run_job(path, stream=out) == run.EXIT_BAD_JOB
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["error"]
    assert words in events[0]["message"] and str(path) in events[0]["message"]
    assert len(events[0]["message"]) < len(str(path)) + 400  # a sentence, not the file
    assert events[0]["message"] in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_train_with_lr_nan_exits_2_from_the_command_line(tmp_path):
    path = tmp_path / "job.json"
    path.write_text(_job_text(lr="NaN", out=json.dumps(str(tmp_path / "run"))))
    done = subprocess.run([sys.executable, "-m", "medviewer", "train", str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2
    assert "'lr' is nan" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_an_unwritable_out_folder_is_a_bad_job(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    path = tmp_path / "job.json"
    path.write_text(_job_text(out=json.dumps(str(blocker / "run"))))
    out = io.StringIO()
    assert run.run_job(path, stream=out) == run.EXIT_BAD_JOB
    message = json.loads(out.getvalue().splitlines()[-1])["message"]
    assert "cannot be written" in message and '"out"' in message
    assert message in capsys.readouterr().err


def test_opening_a_run_removes_candidate_staging_of_killed_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDVIEWER_DATA_DIR", str(tmp_path / "data"))
    runs = tmp_path / "data" / "runs"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    here = host_tag()
    dead = runs / "lab1-old" / f".candidate-{here}-{gone.pid}-abcd1234"
    mine = runs / "lab1-live" / f".candidate-{here}-{os.getpid()}-abcd1234"  # a live export
    for folder in (dead, mine):
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(b"half")
    path = tmp_path / "job.json"
    path.write_text(_job_text())
    prepared = run.Prepared(load_job(path), SimpleNamespace(folder="baseline"),
                            SimpleNamespace(split={}), runs / "lab1-new")
    run.open_run_dir(prepared, run.Reporter(io.StringIO()))
    assert not dead.exists() and mine.exists()
    assert (runs / "lab1-new" / "job.json").is_file()
