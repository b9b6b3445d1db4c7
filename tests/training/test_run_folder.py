"""The run folder and the baseline before training (issue 12): a baseline whose weights do not
load is a bad model (exit 2) before anything runs; one run writes a folder at a time; what a
killed run left (temporary files, half an event line, staging folders) is removed by the next;
replacing an earlier candidate never shows half of one, even killed."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from medviewer.inference import manifest as mf
from medviewer.inference import registry, staging, versions
from medviewer.training import run, rundir

ROOT = Path(__file__).resolve().parents[2]
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="flock and SIGKILL are POSIX")
LAB1 = "lab1-digits-mlp"


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDVIEWER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv(registry.MODELS_ENV, raising=False)
    return tmp_path / "data"


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _damaged_baseline(tmp_path: Path, weights: bytes, version: str = "1.0.0") -> Path:
    """Lab 1 with other weight bytes, its manifest re-sealed: the checksum matches."""
    folder = tmp_path / "baseline"
    shutil.copytree(registry.shipped_models_dir() / LAB1, folder)
    (folder / mf.WEIGHTS_FILE).write_bytes(weights)
    mf.write_manifest(replace(mf.load_manifest(folder, verify=False), version=version), folder)
    mf.load_manifest(folder, verify=True)  # the checksums pass: only loading can tell
    return folder


def _wrong_shapes() -> bytes:
    import torch
    from safetensors.torch import save

    return save({"layer.weight": torch.zeros(3, 3)})


def _write_job(tmp_path: Path, model: str, out: Path) -> Path:
    job = {"model": model, "init": "current", "data": {"demo": 4}, "epochs": 1,
           "device": "cpu", "out": str(out)}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job), encoding="utf-8")
    return path


@pytest.mark.parametrize("weights", [b"\x08\x00\x00\x00\x00\x00\x00\x00{not json", b"",
                                     "wrong shapes"], ids=["malformed", "empty", "shapes"])
def test_a_baseline_whose_weights_do_not_load_is_a_bad_model_before_training(
        data: Path, tmp_path: Path, capsys: pytest.CaptureFixture, weights: bytes | str) -> None:
    folder = _damaged_baseline(tmp_path, _wrong_shapes() if weights == "wrong shapes"
                               else weights)
    out = io.StringIO()
    job = _write_job(tmp_path, str(folder), tmp_path / "run")
    assert run.run_job(job, stream=out) == run.EXIT_BAD_JOB
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["error"]  # no "start": nothing trained
    message = events[0]["message"]
    assert f"{LAB1} 1.0.0" in message and str(folder / mf.WEIGHTS_FILE) in message
    assert "init" in message and "scratch" in message  # what to do about it
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_train_with_a_published_damaged_version_exits_2_from_the_command_line(
        data: Path, tmp_path: Path) -> None:
    versions.publish(_damaged_baseline(tmp_path, b"\x08\x00\x00\x00\x00\x00\x00\x00{not json",
                                       version="1.1.0"))  # active now
    job = _write_job(tmp_path, LAB1, tmp_path / "run")
    done = subprocess.run([sys.executable, "-m", "medviewer", "train", str(job)],
                          capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    weights = versions.store_dir() / LAB1 / "1.1.0" / mf.WEIGHTS_FILE
    assert f"{LAB1} 1.1.0" in done.stderr and str(weights) in done.stderr
    assert [json.loads(line)["event"] for line in done.stdout.splitlines()] == ["error"]
    assert not (tmp_path / "run").exists()


@POSIX
def test_a_second_run_in_a_folder_a_live_run_holds_is_a_bad_job(
        data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "job.json").write_text("the live run's", encoding="utf-8")
    (run_dir / ".split.json-abcd.tmp").write_text("the live run is writing it")
    import fcntl

    with open(run_dir / rundir.EVENTS, "a", encoding="utf-8") as live:
        fcntl.flock(live.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the live run holds it
        out = io.StringIO()
        assert run.run_job(_write_job(tmp_path, LAB1, run_dir), stream=out) == run.EXIT_BAD_JOB
    message = json.loads(out.getvalue().splitlines()[-1])["message"]
    assert "Another training run is writing to this folder" in message and '"out"' in message
    assert message in capsys.readouterr().err
    assert (run_dir / "job.json").read_text(encoding="utf-8") == "the live run's"
    assert (run_dir / ".split.json-abcd.tmp").exists()
    assert (run_dir / rundir.EVENTS).read_text(encoding="utf-8") == ""


def _dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


def _killed_run_folder(folder: Path) -> list[Path]:
    """What a run killed mid-write leaves: temporary files, a staging folder, half a line."""
    (folder / "candidate").mkdir(parents=True)
    (folder / rundir.EVENTS).write_text('{"event": "start"}\n{"event": "ep', encoding="utf-8")
    left = [folder / ".job.json-k2j4l5m6.tmp", folder / f".best.safetensors-{_dead_pid()}.tmp",
            folder / "candidate" / ".manifest.json-a1b2c3d4.tmp",
            folder / f".candidate-{staging.host_tag()}-{_dead_pid()}-abcd1234"]
    for path in left[:3]:
        path.write_bytes(b"half")
    left[3].mkdir()
    return left


@POSIX
def test_the_next_run_removes_what_killed_runs_left_in_the_runs_folder(data: Path) -> None:
    runs = data / "runs"
    dead, live = runs / "lab1-killed", runs / "lab1-live"
    dead_left, live_left = _killed_run_folder(dead), _killed_run_folder(live)
    kept = [runs / "notes" / ".x.tmp", dead / "best.safetensors"]  # not ours / a result
    kept[0].parent.mkdir()
    for path in kept:
        path.write_bytes(b"kept")
    import fcntl

    with open(live / rundir.EVENTS, "a", encoding="utf-8") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        rundir.tidy_runs(runs)
    assert not [p for p in dead_left if p.exists()]
    assert [p for p in live_left if p.exists()] == live_left[:3]  # the staging: pid is gone
    assert all(p.exists() for p in kept)
    # the half line stays until a run appends to that file (it cuts it then)
    assert (dead / rundir.EVENTS).read_text(encoding="utf-8").endswith('"ep')


@pytest.mark.parametrize(("text", "kept"), [
    ("", ""),
    ('{"a": 1}\n', '{"a": 1}\n'),
    ('{"a": 1}\n{"b"', '{"a": 1}\n'),
    ('{"b"', ""),
    ('{"a": 1}\n' + "x" * 200_000, '{"a": 1}\n'),  # a tail longer than one read
])
def test_opening_the_events_cuts_a_line_a_kill_left_half_written(tmp_path: Path, text: str,
                                                                 kept: str) -> None:
    (tmp_path / rundir.EVENTS).write_text(text, encoding="utf-8")
    events = rundir.open_events(tmp_path)
    try:
        events.write('{"event": "start"}\n')
    finally:
        events.close()
    written = (tmp_path / rundir.EVENTS).read_text(encoding="utf-8")
    assert written == kept + '{"event": "start"}\n'
    [json.loads(line) for line in written.splitlines()]


KILL_WHILE_REPLACING = """
import os, shutil, signal, sys
from pathlib import Path
from medviewer.inference import manifest as mf, registry
from medviewer.training import export, recipes

m = mf.load_manifest(registry.shipped_models_dir() / "lab1-digits-mlp")
built = recipes.build_model(m, "current")
fields = m.to_dict()
for key in ("format", "files", "onnx_inputs", "onnx_outputs", "lab", "task", "arch"):
    fields.pop(key, None)
fields["version"] = sys.argv[2]
if sys.argv[3] == "kill":
    def killed_while_deleting(path, *args, **kw):  # one file gone, then SIGKILL
        next(p for p in Path(path).iterdir()).unlink()
        os.kill(os.getpid(), signal.SIGKILL)
    shutil.rmtree = killed_while_deleting
export.export_model(built.model, built.arch, Path(sys.argv[1]), fields)
"""


@POSIX
def test_a_kill_while_an_earlier_candidate_is_replaced_never_shows_half_of_one(
        tmp_path: Path) -> None:
    folder = tmp_path / "run" / "candidate"
    code = [sys.executable, "-c", KILL_WHILE_REPLACING, str(folder)]
    first = subprocess.run([*code, "1.1.0", "-"], env=_env(), capture_output=True, timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    killed = subprocess.run([*code, "1.2.0", "kill"], env=_env(), capture_output=True,
                            timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert mf.load_manifest(folder, verify=True).version == "1.2.0"  # the new one, whole
    aside = [p for p in folder.parent.iterdir() if p.name.startswith(".candidate-")]
    assert len(aside) == 1  # the old one, hidden, half deleted
    assert staging.remove_stale(folder.parent, "candidate") == aside  # its process is gone
