"""A stand-in for `medviewer train JOB.json`: prints contract events with short sleeps.

The dialog tests run it as the child so they need no torch and no minutes of CPU. What it does
comes from the environment (the child inherits the test's):
  FAKE_TRAIN_MODE = ok (default) | fail | slow | noise
  FAKE_TRAIN_STEP_S = seconds between events (default 0.02)
  FAKE_TRAIN_GATE = a path: after epoch 1 the child waits until this file exists (the test's
    viewer creates it from its event loop), so what the viewer does in between is ordered
    between the child's events; it gives up after FAKE_TRAIN_GATE_S seconds (default 60) with
    an error event and exit 1 (a viewer whose event loop is blocked never opens the gate)
ok: start, steps and epochs with falling loss and rising metric, export, compare (writes
compare.json and a candidate folder), done, exit 0. fail: a few steps, an error event, a
traceback on stderr, exit 1. slow: steps for a minute (to be cancelled); it records its pid in
the run folder. noise: like ok, with non-JSON lines and a JSON line written in two pieces.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path

EPOCHS, STEPS = 2, 4


def emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def pause() -> None:
    time.sleep(float(os.environ.get("FAKE_TRAIN_STEP_S", "0.02")))


def gate_opened() -> bool:
    """FAKE_TRAIN_GATE: wait for the file; True when it appeared (or no gate was asked for)."""
    gate = os.environ.get("FAKE_TRAIN_GATE")
    if not gate:
        return True
    deadline = time.monotonic() + float(os.environ.get("FAKE_TRAIN_GATE_S", "60"))
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def per_case() -> tuple[dict, dict]:
    """FAKE_TRAIN_CASES validation cases (default 2): the candidate's average is higher, by
    less than the cases disagree (+0.02, -0.01, +0.02, -0.01, ...)."""
    n = int(os.environ.get("FAKE_TRAIN_CASES", "2"))
    old = {f"case {i + 1}": 0.7 + 0.01 * i for i in range(n)}
    return old, {c: v + (0.02 if i % 2 == 0 else -0.01) for i, (c, v) in enumerate(old.items())}


def compare_file(run_dir: Path) -> Path:
    roc = {"fpr": [0.0, 0.1, 0.3, 1.0], "tpr": [0.0, 0.6, 0.9, 1.0]}
    old, new = per_case()
    data = {"main_metric": "roc_auc", "split": {"train": 6, "validation": 2},
            "current": {"version": "1.0.0", "folder": "models/x", "per_case": old,
                        "metrics": {"roc_auc": 0.81, "accuracy": 0.75, "f1": 0.7},
                        "roc": {"fpr": [0.0, 0.4, 1.0], "tpr": [0.0, 0.6, 1.0]},
                        "confusion": {"labels": ["no", "yes"], "matrix": [[3, 1], [1, 3]]}},
            "candidate": {"version": "1.1.0", "folder": str(run_dir / "candidate"),
                          "per_case": new,
                          "metrics": {"roc_auc": 0.9, "accuracy": 0.75, "f1": 0.65},
                          "roc": roc,
                          "confusion": {"labels": ["no", "yes"], "matrix": [[4, 0], [1, 3]]}},
            "better": True}
    path = run_dir / "compare.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def train(job: dict, run_dir: Path, mode: str) -> int:
    emit({"event": "start", "model": job["model"], "from_version": None, "init": job["init"],
          "message": "Training from scratch: no starting weights" if job["init"] == "scratch"
          else f"Fine-tuning {job['model']} 1.0.0", "run_dir": str(run_dir),
          "epochs": EPOCHS, "steps_per_epoch": STEPS, "train_cases": 6, "validation_cases": 2,
          "train_samples": 6, "validation_samples": 2, "device": "cpu", "world_size": 1})
    total = EPOCHS * STEPS * (1000 if mode == "slow" else 1)
    for i in range(total):
        epoch, step = i // STEPS + 1, i % STEPS + 1
        pause()
        emit({"event": "step", "epoch": epoch, "step": step, "steps": STEPS,
              "loss": 1.0 / (1 + i), "samples_per_s": 100.0, "eta_s": 0.5 * (total - i),
              "progress": (i + 1) / total})
        if mode == "noise" and i == 1:
            print("a library printed this to stdout", flush=True)
            half = json.dumps({"event": "log", "level": "warning", "message": "split line"})
            sys.stdout.write(half[:10])
            sys.stdout.flush()
            time.sleep(0.2)
            sys.stdout.write(half[10:] + "\n")
            sys.stdout.flush()
        if mode == "fail" and i == 2:
            print("Traceback (most recent call last):\n  ValueError: boom", file=sys.stderr)
            emit({"event": "error", "message": "The validation split is empty: add cases."})
            return 1
        if step == STEPS:
            emit({"event": "epoch", "epoch": epoch, "epochs": EPOCHS,
                  "train_loss": 1.0 / epoch, "val_loss": 1.2 / epoch,
                  "metrics": {"roc_auc": 1 - 0.3 / epoch, "accuracy": 0.5 + 0.1 * epoch},
                  "main_metric": "roc_auc", "best": True, "lr": job["lr"],
                  "eta_s": 0.1 * (total - i), "progress": (i + 1) / total})
            if epoch == 1 and not gate_opened():
                emit({"event": "error", "message": "The viewer never opened the gate."})
                return 1
    candidate = run_dir / "candidate"
    candidate.mkdir(exist_ok=True)
    emit({"event": "export", "folder": str(candidate), "parity": 1e-7})
    emit({"event": "compare", "file": str(compare_file(run_dir)), "main_metric": "roc_auc",
          "current": {"version": "1.0.0", "metrics": {}},
          "candidate": {"version": "1.1.0", "metrics": {}}, "better": True})
    emit({"event": "done", "candidate": str(candidate), "run_dir": str(run_dir),
          "seconds": math.pi})
    return 0


def on_terminate(_signum, _frame) -> None:
    """What `medviewer train` does when cancelled: one "cancelled" event, exit 143."""
    emit({"event": "cancelled", "level": "info",
          "message": "Training was cancelled; no new version was made."})
    sys.exit(143)


def main() -> int:
    signal.signal(signal.SIGTERM, on_terminate)
    job_path = Path(sys.argv[1])
    job = json.loads(job_path.read_text(encoding="utf-8"))
    run_dir = Path(job.get("out") or job_path.parent)
    (run_dir / "fake.pid").write_text(str(os.getpid()))
    return train(job, run_dir, os.environ.get("FAKE_TRAIN_MODE", "ok"))


if __name__ == "__main__":
    sys.exit(main())
