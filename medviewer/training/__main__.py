"""`python -m medviewer.training JOB.json` (and `medviewer train JOB.json`): run a job.

    python -m medviewer.training JOB.json                  one process
    python -m medviewer.training JOB.json --nproc-per-node 2   DDP through torchrun
See docs/training.md for the job file, the events and running on a cluster.
"""

from __future__ import annotations

import sys
from typing import IO, Any


def main(argv: list[str] | None = None) -> int:
    """`python -m medviewer.training JOB.json [--nproc-per-node N] [--distributed]`."""
    import argparse

    p = argparse.ArgumentParser(prog="medviewer train", description="Train a model version "
                                "from a job file; one JSON event per line on stdout.")
    add_arguments(p)
    return run_from_args(p.parse_args(argv))


def add_arguments(p: Any) -> None:
    p.add_argument("job", help="the job file (JSON; see docs/training.md)")
    p.add_argument("--nproc-per-node", type=int, default=None, metavar="N",
                   help="processes on this machine (DistributedDataParallel via torchrun)")
    p.add_argument("--nnodes", default=None, help="machines in the run (torchrun --nnodes)")
    p.add_argument("--node-rank", type=int, default=None, help="this machine's rank")
    p.add_argument("--rdzv-endpoint", default=None, help="host:port of the rendezvous")
    p.add_argument("--rdzv-id", default=None, help="a job id shared by all machines")
    p.add_argument("--distributed", action="store_true",
                   help="(set by torchrun's command line) join the process group")


def run_from_args(ns: Any) -> int:
    from medviewer.training import distributed

    if (ns.nproc_per_node or ns.nnodes) and not ns.distributed:
        return distributed.relaunch(distributed.torchrun_command(
            ns.job, ns.nproc_per_node or 1, nnodes=ns.nnodes, node_rank=ns.node_rank,
            rdzv_endpoint=ns.rdzv_endpoint, rdzv_id=ns.rdzv_id))
    from medviewer.training.run import run_job  # not for `medviewer <other command>`

    return run_job(ns.job, stream=events_stream(), distributed_run=ns.distributed)


def events_stream() -> IO[str]:
    """stdout for events only: anything else printed (by us, torch, ONNX) goes to stderr."""
    import os

    stream = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return stream


if __name__ == "__main__":
    raise SystemExit(main())
