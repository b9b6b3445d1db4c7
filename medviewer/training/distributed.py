"""More than one process: torchrun, DistributedDataParallel, rank 0 speaks for the run.

`medviewer train JOB.json --nproc-per-node N` re-launches itself through torchrun
(`python -m torch.distributed.run ... -m medviewer.training JOB.json --distributed`). Each
process trains on its DistributedSampler share of the batches; DDP averages the gradients, so
every rank holds the same weights after every step. BatchNorm statistics are broadcast from
rank 0 before each validation. Only rank 0 prints events, writes the run folder and exports.
gloo on CPU, NCCL on CUDA.

With DIGEST_ENV=1 every rank writes the sha256 of its final state dict into the run folder
(weights-rank<r>.sha256): the test that two ranks finish with identical weights reads them.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

DIGEST_ENV = "MEDVIEWER_TRAIN_DIGEST"


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def leader(self) -> bool:
        return self.rank == 0


def torchrun_command(job: str | Path, nproc: int, *, nnodes: str | None = None,
                     node_rank: int | None = None, rdzv_endpoint: str | None = None,
                     rdzv_id: str | None = None) -> list[str]:
    """The torchrun line for this job: --standalone on one machine, rendezvous on several."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    if nnodes is None:
        cmd.append("--standalone")
    else:
        cmd += ["--nnodes", str(nnodes)]
        if node_rank is not None:
            cmd += ["--node-rank", str(node_rank)]
        if rdzv_endpoint:
            cmd += ["--rdzv-backend", "c10d", "--rdzv-endpoint", rdzv_endpoint]
        if rdzv_id:
            cmd += ["--rdzv-id", rdzv_id]
    return [*cmd, "-m", "medviewer.training", str(job), "--distributed"]


def relaunch(cmd: Sequence[str]) -> int:
    """Run torchrun as a child; its events reach our stdout. SIGTERM is passed on."""
    import signal

    child = subprocess.Popen(list(cmd))

    def forward(signum: int, _frame: Any) -> None:
        child.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.send_signal(signal.SIGINT)
        return child.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


def init(device_kind: str) -> World:
    """Join the process group torchrun set up (env://): NCCL on CUDA, gloo on CPU."""
    import torch.distributed as dist

    backend = "nccl" if device_kind == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return World(dist.get_rank(), dist.get_world_size(),
                 int(os.environ.get("LOCAL_RANK", "0")))


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(objective: nn.Module, device: torch.device, world: World) -> nn.Module:
    """DistributedDataParallel around the model + loss; the plain module on one process."""
    if world.size == 1:
        return objective
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(objective, device_ids=ids)


def share(value: Any, world: World) -> Any:
    """Rank 0's value on every rank (the run folder's name, say)."""
    if world.size == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def state_digest(model: nn.Module) -> str:
    """sha256 over the state dict's names and bytes (CPU float tensors, sorted names)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def write_digest(model: nn.Module, run_dir: Path, world: World) -> Path | None:
    """weights-rank<r>.sha256 in the run folder, when DIGEST_ENV is set (tests)."""
    if os.environ.get(DIGEST_ENV) != "1":
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"weights-rank{world.rank}.sha256"
    path.write_text(state_digest(model) + "\n", encoding="utf-8")
    return path
