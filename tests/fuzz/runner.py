"""Run the hostile cases of dicom_cases.py through the public entry points (issue 12).

DICOM cases (11 families) go through the DICOM entry points below; the 12th family, hostile
model manifests (test_hostile_models' pool of values), goes through `load_manifest`: a
ModelError with a sentence is clean, a manifest that its `_sane()` refuses is silent-wrong.

    scripts/python tests/fuzz/runner.py --cases 5000 [--seed 12] [--workers 2]

Each case goes through `scan` (one process), `load_series` of the path, `load_series` of every
series the scan found (the browser's fast path) and `medviewer info` of the damaged file. Cases
run in child processes (one per worker, restarted after a hang or a crash) under an address-space
cap (RLIMIT_AS) and a time limit per case. Each case is one of:

    clean         every entry point ended in a DicomError / exit 2 with a sentence, or a
                  correct load
    ok            at least one load succeeded and judge() found it right
    silent-wrong  a load succeeded but judge() found it wrong (no warning for damage that
                  cannot be right, another shape or other values without a word)
    traceback     any other exception (or info exiting 2 without a sentence, or a crash)
    hang          the case ran past its time limit
    memory        MemoryError, or the child was killed while over its cap

and the run prints `tried N clean a ok b silent-wrong c traceback d hang e memory f`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import selectors
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTCOMES = ("clean", "ok", "silent-wrong", "traceback", "hang", "memory")
MEMORY_CAP = 2 << 30  # bytes of address space per child (its peak RSS is ~150 MB)


# -- the child: builds and runs cases, one JSON line each --------------------------------------


def judge(volume: object, case: object, baseline: object, scanned: object = None
          ) -> str | None:
    """Why a successful load is wrong, or None when it is right. `scanned`: the scan result
    when the load was of one series it found: a file the scan reported as a problem, or split
    into a stack of its own, is explained there, and a series without the damaged file holds
    nothing to warn about."""
    import numpy as np

    said = bool(volume.warnings or volume.bad_slices)
    if scanned is not None:
        split = bool(scanned.problems) or len(scanned.all_series()) > 1
        damaged = any(Path(i.path) == case.file for i in volume.series.instances)
        if split and not damaged:
            said = True
    if not np.isfinite(volume.affine).all() or np.linalg.det(volume.affine) == 0:
        return "affine not finite or singular"
    if case.expect == "warn" and not said:
        return "damage that cannot be right loaded without a warning"
    if case.expect in ("shape", "pixels") and baseline is not None and not said:
        if volume.voxels.shape != baseline.shape:
            return f"shape {volume.voxels.shape} instead of {baseline.shape} without a warning"
        floats = volume.voxels.dtype.kind == "f"
        if case.expect == "shape" and not np.array_equal(volume.voxels, baseline,
                                                          equal_nan=floats):
            return "other values than the undamaged file without a warning"
    return None


def _run_manifest(case: object) -> tuple[str, str]:
    """A hostile manifest: a ModelError with a sentence, or a manifest _sane() accepts."""
    import dicom_cases as dc

    from medviewer.inference import ModelError
    from medviewer.inference import manifest as mf

    try:
        loaded = mf.load_manifest(case.path, verify=False)
    except ModelError as exc:
        return ("clean", "") if exc.reason else ("traceback", "ModelError without a sentence")
    try:
        dc._hostile_models()._sane(loaded)
    except AssertionError as exc:
        return "silent-wrong", f"loaded manifest not sane: {exc}"[:300]
    return "ok", ""


def _run_case(case: object, baseline: object) -> tuple[str, str]:
    from medviewer.cli import main
    from medviewer.core.dicom import DicomError, load_series, scan

    loads, problems = [], []
    found = scan(case.path, cache=False, workers=1)
    targets = [case.path, *list(found.all_series())[:3]]
    for target in targets:
        try:
            loads.append((load_series(target), None if target is case.path else found))
        except DicomError as exc:
            if not str(exc).strip():
                problems.append("DicomError without a sentence")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["info", str(case.file)])
    if code not in (0, 2) or (code == 2 and not err.getvalue().strip()):
        return "traceback", f"info exit {code}: {err.getvalue()[-200:]!r}"
    if problems:
        return "traceback", problems[0]
    for volume, scanned in loads:
        wrong = judge(volume, case, baseline, scanned)
        if wrong:
            return "silent-wrong", f"{wrong} ({'a series of the scan' if scanned else 'path'})"
    return ("ok" if loads else "clean"), ""


def _baseline(source: str, synth: Path, cache: dict) -> object:
    import dicom_cases as dc

    from medviewer.core.dicom import DicomError, load_series

    if source not in cache:
        try:
            cache[source] = load_series(synth if source == dc.SYNTH
                                        else dc.TEST_FILES / source).voxels
        except DicomError:
            cache[source] = None
    return cache[source]


def _selftest(index: int) -> dict[str, str]:
    """Cases -1, -2, -3: a hang, a memory bomb, a traceback (the runner's own test)."""
    try:
        if index == -1:
            time.sleep(3600)
        if index == -2:
            return {"outcome": "ok", "detail": str(len(bytearray(MEMORY_CAP * 2)))}
        raise ValueError("a traceback")
    except MemoryError:
        return {"outcome": "memory", "detail": "MemoryError"}
    except ValueError:
        return {"outcome": "traceback", "detail": traceback.format_exc()[-300:]}


def child(seed: int, indices: list[int], workdir: Path) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    sys.setrecursionlimit(3000)  # as a user's interpreter: deep input must not need more
    warnings.simplefilter("ignore")
    import logging
    import shutil

    logging.disable(logging.CRITICAL)
    import dicom_cases as dc

    synth = workdir / "synthetic-base"
    if not synth.exists():
        dc.write_synthetic(synth)
    baselines: dict = {}
    for index in indices:
        print(json.dumps({"start": index}), flush=True)
        row: dict = {"index": index}
        began = time.perf_counter()
        if index < 0 and os.environ.get("MEDVIEWER_FUZZ_SELFTEST"):
            print(json.dumps({"index": index, **_selftest(index)}), flush=True)
            continue
        try:
            case = dc.build_case(seed, index, workdir, synth)
        except Exception:  # noqa: BLE001 - the generator's fault, not the viewer's
            row["outcome"], row["detail"] = "unbuilt", traceback.format_exc()[-1500:]
            print(json.dumps(row), flush=True)
            continue
        try:
            row.update(family=case.family, source=case.source, damage=case.damage)
            if case.family == "manifest":
                row["outcome"], row["detail"] = _run_manifest(case)
            else:
                baseline = _baseline(case.source, synth, baselines)
                row["outcome"], row["detail"] = _run_case(case, baseline)
        except MemoryError:
            row["outcome"], row["detail"] = "memory", "MemoryError"
        except Exception:  # noqa: BLE001 - any escape is what the fuzzer is for
            row["outcome"], row["detail"] = "traceback", traceback.format_exc()[-1500:]
        shutil.rmtree(workdir / f"case-{index}", ignore_errors=True)
        row["seconds"] = round(time.perf_counter() - began, 3)
        row["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(json.dumps(row), flush=True)


# -- the parent: one child per worker, a deadline per case -------------------------------------


def _spawn(seed: int, indices: list[int], workdir: Path) -> subprocess.Popen:
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    return subprocess.Popen([sys.executable, str(HERE / "runner.py"), "--child", "--seed",
                             str(seed), "--workdir", str(workdir), *map(str, indices)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                            text=True)


def _drive(seed: int, indices: list[int], workdir: Path, limit: float, rows: list) -> None:
    """Run `indices` in a child, restarting it past a hung or crashed case."""
    todo = list(indices)
    while todo:
        proc = _spawn(seed, todo, workdir)
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        current, deadline = None, time.monotonic() + 120  # imports and the baselines
        while True:
            ready = selector.select(timeout=max(0.0, deadline - time.monotonic()))
            line = proc.stdout.readline() if ready else None
            if line is None:  # past the deadline
                proc.kill()
                if current is None:
                    raise RuntimeError("the fuzz child did not start in 120 s")
                proc.wait()
                rows.append({"index": current, "outcome": "hang", "detail": f"> {limit} s"})
                break
            if not line:  # the child died
                code = proc.wait()
                if current is not None:
                    kind = "memory" if code == -9 else "traceback"
                    rows.append({"index": current, "outcome": kind,
                                 "detail": f"child ended with status {code}"})
                break
            msg = json.loads(line)
            if "start" in msg:
                current, deadline = msg["start"], time.monotonic() + limit
            else:
                rows.append(msg)
                todo.remove(msg["index"])
                current = None
        selector.close()
        proc.stdout.close()
        if current is None and todo:
            raise RuntimeError(f"the fuzz child ended with {len(todo)} cases to go")
        if current is not None:
            todo.remove(current)


def run(cases: int, *, seed: int = 12, workers: int = 2, limit: float = 20.0,
        start: int = 0) -> tuple[dict[str, int], list[dict]]:
    """(counts per outcome with 'tried', the rows of every case not clean or ok)."""
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="medviewer-fuzz-") as tmp:
        indices = list(range(start, start + cases))
        threads = [threading.Thread(target=_drive, args=(seed, indices[w::workers],
                                                         Path(tmp) / f"w{w}", limit, rows))
                   for w in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    built = [r for r in rows if r["outcome"] != "unbuilt"]
    counts = {"tried": len(built), "unbuilt": len(rows) - len(built),
              **{k: sum(r["outcome"] == k for r in built) for k in OUTCOMES},
              "slowest_s": max((r.get("seconds", 0) for r in built), default=0),
              "peak_mb": max((r.get("peak_mb", 0) for r in built), default=0)}
    return counts, [r for r in rows if r["outcome"] not in ("clean", "ok")]


def counts_line(counts: dict[str, int]) -> str:
    line = " ".join(f"{k} {counts[k]}" for k in ("tried", *OUTCOMES))
    return line + (f" (and {counts['unbuilt']} cases the generator could not build)"
                   if counts.get("unbuilt") else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=500)
    p.add_argument("--long", action="store_true", help="5000 cases")
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--limit", type=float, default=20.0, help="seconds per case")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("indices", nargs="*", type=int, help=argparse.SUPPRESS)
    ns = p.parse_args(argv)
    if ns.child:
        Path(ns.workdir).mkdir(parents=True, exist_ok=True)
        child(ns.seed, ns.indices, Path(ns.workdir))
        return 0
    began = time.monotonic()
    counts, bad = run(5000 if ns.long else ns.cases, seed=ns.seed, workers=ns.workers,
                      limit=ns.limit)
    for row in bad:
        print(json.dumps(row))
    print(f"{counts_line(counts)} ({time.monotonic() - began:.0f} s, seed {ns.seed}; slowest "
          f"case {counts['slowest_s']:.1f} s, child peak RSS {counts['peak_mb']} MB, cap "
          f"{MEMORY_CAP >> 30} GiB address space, limit {ns.limit:g} s a case)")
    return 0 if counts["tried"] == counts["clean"] + counts["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
