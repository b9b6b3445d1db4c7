"""SIGKILL at seeded random points of `medviewer train` (issue 12: the kill tests, training).

The real command runs a small fine-tuning job (lab 1, 20 short epochs, a few seconds) in its
own data folder whose model store holds a published version 1.1.0 (the active one), and is
killed 9 times (MEDVIEWER_KILLS=<n> for more): while it starts, trains, exports or compares.
After each kill the store is byte for byte as it was (training never writes it), every version
loads with its checksums, the run folder's candidate is absent or whole, and events.jsonl is
JSON lines up to its last newline. The next run in the folder removes what the killed one left
(temporary files, staging folders, half a line) before it starts, and a last run ends with
exit 0 and nothing left over.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from medviewer.inference import manifest as mf
from medviewer.inference import registry, versions

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
ROOT = Path(__file__).resolve().parents[2]
LAB1 = "lab1-digits-mlp"
KILLS = int(os.environ.get("MEDVIEWER_KILLS", "0") or 0)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data folder whose store holds lab 1 as 1.1.0 (other weight bytes), published."""
    monkeypatch.setenv("MEDVIEWER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv(registry.MODELS_ENV, raising=False)
    folder = tmp_path / "published"
    shutil.copytree(registry.shipped_models_dir() / LAB1, folder)
    weights = folder / mf.WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    mf.write_manifest(replace(mf.load_manifest(folder, verify=False), version="1.1.0"),
                      folder)
    versions.publish(folder)
    return versions.store_dir()


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _snapshot() -> dict[str, str]:
    """Every path of the store and the shipped models, with the sha256 of each file."""
    out = {}
    for root in (registry.shipped_models_dir(), versions.store_dir()):
        for path in sorted(root.rglob("*")):
            out[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest()
                              if path.is_file() else "folder")
    return out


def _job(tmp_path: Path, run_dir: Path) -> Path:
    job = {"model": LAB1, "init": "current", "data": {"demo": 4}, "epochs": 20,
           "batch_size": 16, "lr": 0.003, "device": "cpu", "early_stopping": None,
           "out": str(run_dir)}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job), encoding="utf-8")
    return path


def _litter(run_dir: Path) -> set[str]:
    """Hidden entries (temporary files, staging folders) of the run folder and candidate."""
    found = set()
    for folder in (run_dir, run_dir / "candidate"):
        if folder.is_dir():
            found |= {str(p) for p in folder.iterdir() if p.name.startswith(".")}
    return found


def _killed_run(job: Path, log: Path, rng: random.Random) -> tuple[bool, int | None]:
    """Start `medviewer train`, SIGKILL it at a seeded random moment: a third of the time
    counted from the launch (imports, the job, the data, the run folder's first files), else
    from its "start" event (training, export, comparison). (start seen, exit code if it ended
    before the kill)."""
    with open(log, "w", encoding="utf-8") as out:
        child = subprocess.Popen([sys.executable, "-m", "medviewer", "train", str(job)],
                                 stdout=out, stderr=subprocess.DEVNULL, cwd=ROOT, env=_env())
    launched = time.monotonic()
    if rng.random() < 1 / 3:
        deadline = launched + rng.uniform(0.5, 4.5)
    else:
        while child.poll() is None and '"start"' not in log.read_text(encoding="utf-8"):
            if time.monotonic() - launched > 120:
                break
            time.sleep(0.005)
        deadline = time.monotonic() + rng.uniform(0.0, 1.8)
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    started = '"start"' in log.read_text(encoding="utf-8")  # before the kill: it printed it
    ended = child.poll()
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    return started, ended


def _check_events(run_dir: Path) -> list[dict]:
    """Every line up to the last newline is one JSON object; only a cut tail may not be."""
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    *lines, _tail = path.read_text(encoding="utf-8").split("\n")
    return [json.loads(line) for line in lines]


def _check_candidate(run_dir: Path) -> bool:
    candidate = run_dir / "candidate"
    if not candidate.exists():
        return False
    manifest = mf.load_manifest(candidate, verify=True)  # whole: every checksum matches
    assert (manifest.id, manifest.version) == (LAB1, "1.2.0")
    assert {p.name for p in candidate.iterdir() if not p.name.startswith(".")} == {
        mf.MANIFEST, mf.ONNX_FILE, mf.WEIGHTS_FILE}
    return True


def _check_store(before: dict[str, str]) -> None:
    assert _snapshot() == before  # nothing written, nothing half-written, nothing left
    listed = versions.list_versions(LAB1)
    assert [(v.version, v.active) for v in listed] == [("1.0.0", False), ("1.1.0", True)]
    for version in listed:
        mf.load_manifest(version.folder, verify=True)


def test_a_killed_training_run_leaves_the_store_as_it_was_and_the_next_run_cleans_up(
        store: Path, tmp_path: Path) -> None:
    before = _snapshot()
    runs = store.parent / "runs"
    run_dir = runs / "lab1-kill"
    job = _job(tmp_path, run_dir)
    rng, stages = random.Random(2026), []
    for i in range(KILLS or 9):
        left = _litter(run_dir)  # what the previous killed run left
        started, ended = _killed_run(job, tmp_path / f"stdout-{i}.jsonl", rng)
        _check_store(before)
        events = _check_events(run_dir)
        if started:  # the run cleaned the folder before its "start" event
            assert not {p for p in left if os.path.lexists(p)}, left
        stages.append((started, ended, _check_candidate(run_dir),
                       events[-1]["event"] if events else None,
                       sorted(Path(p).name[:12] for p in _litter(run_dir))))
    assert [p.name for p in runs.iterdir()] == ["lab1-kill"]
    assert any(s[0] for s in stages) and not all(s[0] for s in stages), stages

    done = subprocess.run([sys.executable, "-m", "medviewer", "train", str(job)],
                          capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1])["event"] == "done"
    assert _check_events(run_dir)[-1]["event"] == "done"
    assert (run_dir / "events.jsonl").read_text(encoding="utf-8").endswith("\n")
    assert _litter(run_dir) == set()
    assert _check_candidate(run_dir)
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "best.safetensors", "candidate", "compare.json", "events.jsonl", "job.json",
        "split.json"]
    _check_store(before)
    listing = subprocess.run([sys.executable, "-m", "medviewer", "models", "--json",
                              "--versions", LAB1], capture_output=True, text=True,
                             cwd=ROOT, env=_env(), timeout=120)
    assert listing.returncode == 0, listing.stderr[-2000:]
    rows = json.loads(listing.stdout)["versions"]
    assert [(r["version"], r["active"]) for r in rows] == [("1.0.0", False), ("1.1.0", True)]
