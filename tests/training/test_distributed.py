"""Two CPU processes through torchrun (gloo): both ranks end with the same weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from medviewer.training.distributed import DIGEST_ENV, torchrun_command

ROOT = Path(__file__).resolve().parents[2]


def test_torchrun_command_single_machine_and_cluster() -> None:
    one = torchrun_command("job.json", 2)
    assert one[1:4] == ["-m", "torch.distributed.run", "--nproc-per-node"] and "2" in one
    assert "--standalone" in one and one[-3:] == ["medviewer.training", "job.json",
                                                  "--distributed"]
    many = torchrun_command("job.json", 4, nnodes="2", node_rank=1,
                            rdzv_endpoint="node0:29500", rdzv_id="retrain")
    assert "--standalone" not in many
    for flag, value in (("--nnodes", "2"), ("--node-rank", "1"),
                        ("--rdzv-endpoint", "node0:29500"), ("--rdzv-id", "retrain")):
        assert many[many.index(flag) + 1] == value


def test_two_cpu_processes_finish_with_identical_weights(tmp_path: Path) -> None:
    job = tmp_path / "job.json"
    job.write_text(json.dumps({
        "model": "lab1-digits-mlp", "init": "scratch", "data": {"demo": 6}, "epochs": 2,
        "batch_size": 16, "lr": 0.003, "device": "cpu", "out": str(tmp_path / "run")}),
        encoding="utf-8")
    env = {**os.environ, DIGEST_ENV: "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "medviewer", "train", str(job),
                           "--nproc-per-node", "2"], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines()]  # rank 0 only speaks
    kinds = [e["event"] for e in events]
    assert kinds.count("start") == 1 and kinds.count("done") == 1
    assert events[0]["world_size"] == 2
    # each rank's share of the 120 training digits: 60, in batches of 16 -> 4 steps
    assert events[0]["steps_per_epoch"] == 4
    digests = sorted((tmp_path / "run").glob("weights-rank*.sha256"))
    assert [p.name for p in digests] == ["weights-rank0.sha256", "weights-rank1.sha256"]
    first, second = (p.read_text(encoding="utf-8").strip() for p in digests)
    assert len(first) == 64 and first == second
    epochs = [e for e in events if e["event"] == "epoch"]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
