"""`medviewer infer` on the demo CT: wall time of the whole command against its own stages.

    python3 benchmarks/bench_infer_cli.py [--repeat 5] [--model lab4-chest-unet]

Runs the installed program (`python -m medviewer infer --model MODEL <demo CT> --out TMP`) in
a fresh process each time and reads the stage timings it prints (load, run, save of the
series). The ratio wall / (load + run + save) is what the command costs beyond the work a
user asked for: interpreter, imports, model opening, scan, exit. Two cases: warm caches (the
provider probe's answer and the scan index kept in MEDVIEWER_CACHE_DIR from the first run)
and cold (an empty cache folder each run). Target (issue 17 item 3): <= 1.5x warm.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python3 benchmarks/bench_infer_cli.py"
STAGE = re.compile(r"\| load ([\d.]+) s, run ([\d.]+) s .*?, save ([\d.]+) s on ")


def one_run(model: str, series: Path, cache: Path) -> tuple[float, float]:
    """(wall seconds, load + run + save seconds) of one `medviewer infer`."""
    env = dict(os.environ, MEDVIEWER_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as out:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "medviewer", "infer", "--model", model,
                               str(series), "--out", out], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=600)
        wall = time.perf_counter() - start
    found = STAGE.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"infer failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return wall, sum(float(v) for v in found.groups())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--model", default="lab4-chest-unet")
    args = parser.parse_args()
    from medviewer.core.demo import ensure_demo_study

    series = ensure_demo_study() / "DEMO-0001" / "CT_CHEST"
    print(f"`{COMMAND} --repeat {args.repeat} --model {args.model}`; {series}; "
          f"load average {os.getloadavg()[0]:.2f}\n")
    print("| caches | wall s (median) | stages s (median) | wall / stages: median (range) |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-infer-cache-") as warm:
        one_run(args.model, series, Path(warm))  # fills the warm cache, warms the disk
        for name in ("warm", "cold"):
            runs = []
            for _ in range(args.repeat):
                if name == "warm":
                    runs.append(one_run(args.model, series, Path(warm)))
                else:
                    with tempfile.TemporaryDirectory(prefix="bench-infer-cold-") as cold:
                        runs.append(one_run(args.model, series, Path(cold)))
            ratios = sorted(w / s for w, s in runs)
            print(f"| {name} | {statistics.median(w for w, _ in runs):.2f} | "
                  f"{statistics.median(s for _, s in runs):.2f} | "
                  f"**{statistics.median(ratios):.2f}x** ({ratios[0]:.2f}-{ratios[-1]:.2f}) |")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
