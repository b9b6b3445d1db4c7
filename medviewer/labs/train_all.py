"""Rebuild the shipped demo models: the one command behind every folder in models/.

    python -m medviewer.labs.train_all [--lab N ...] [--out models] [--seed 0]

Calls `medviewer.labs.labN.demo.train(out_dir, seed=seed)` for each lab in turn (each lab's
recipe writes its model folder(s) with held-out metrics and provenance in the manifest). A lab
whose demo module is missing or fails is reported and the others still train; the exit status
is 1 when any lab did not produce its models.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

LABS = (1, 2, 3, 4, 5)


def default_out() -> Path:
    """The project's models/ folder (where the viewer finds shipped models)."""
    from medviewer.inference.registry import shipped_models_dir

    return shipped_models_dir()


def train_lab(lab: int, out_dir: Path, seed: int = 0) -> list[Path]:
    """One lab's demo models; ModuleNotFoundError when the lab has no demo recipe."""
    module = importlib.import_module(f"medviewer.labs.lab{lab}.demo")
    return list(module.train(out_dir, seed=seed))


def train_labs(labs: Sequence[int], out_dir: Path, seed: int = 0) -> dict[int, str]:
    """Train each lab; {lab: "ok" | "missing: ..." | "failed: ..."}, printing as it goes."""
    status: dict[int, str] = {}
    for lab in labs:
        start = time.perf_counter()
        print(f"lab {lab}: training ...", flush=True)
        try:
            folders = train_lab(lab, out_dir, seed)
        except ModuleNotFoundError as exc:
            if exc.name in (f"medviewer.labs.lab{lab}", f"medviewer.labs.lab{lab}.demo"):
                status[lab] = f"missing: medviewer/labs/lab{lab}/demo.py has no recipe yet"
            else:  # the recipe exists but something it imports does not
                status[lab] = f"failed: needs {exc.name} ({exc})"
        except Exception as exc:  # noqa: BLE001 - one lab's failure must not stop the others
            traceback.print_exc()
            status[lab] = f"failed: {type(exc).__name__}: {exc}"
        else:
            names = ", ".join(Path(f).name for f in folders) or "no model folders"
            status[lab] = "ok"
            print(f"lab {lab}: {names} in {time.perf_counter() - start:.0f} s", flush=True)
            continue
        print(f"lab {lab}: {status[lab]}", flush=True)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m medviewer.labs.train_all",
                                description="Train every lab's demo model into models/.")
    p.add_argument("--lab", type=int, action="append", choices=LABS,
                   help="only this lab (repeatable); default: all five")
    p.add_argument("--out", type=Path, default=None, help="default: the project's models/")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    ns = p.parse_args(argv)
    if ns.threads:
        import torch

        torch.set_num_threads(ns.threads)
    out = ns.out or default_out()
    out.mkdir(parents=True, exist_ok=True)
    status = train_labs(ns.lab or LABS, out, ns.seed)
    print("summary: " + "; ".join(f"lab {k} {v}" for k, v in status.items()))
    return 0 if all(v == "ok" for v in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
