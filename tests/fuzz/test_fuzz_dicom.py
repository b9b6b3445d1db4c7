"""The fuzz suite, fast mode (issue 12): seeded damaged copies of pydicom's bundled files and a
synthetic CT series through scan, load_series and `medviewer info`, and hostile model manifests
through load_manifest, in child processes
under a memory cap and a time limit per case. Every case ends in a clean error or a correct
load. The long, benchmark-style run: `scripts/python tests/fuzz/runner.py --cases 5000`.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = 480  # 40 of each of the 12 families: about 10 s on two cores


def _module(name: str):  # tests/ is no package: load the runner by its path
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_every_damaged_dicom_case_ends_in_a_clean_error_or_a_correct_load():
    runner = _module("runner")
    counts, bad = runner.run(CASES, seed=12, workers=2, limit=20.0)
    print(runner.counts_line(counts))
    assert counts["tried"] == CASES and not counts["unbuilt"]
    assert counts["clean"] > 0 and counts["ok"] > 0  # both kinds of ending are exercised
    assert counts["silent-wrong"] == counts["traceback"] == counts["hang"] == \
        counts["memory"] == 0, "\n".join(json.dumps(row)[:800] for row in bad[:10])


def test_the_runner_counts_a_hang_and_a_memory_bomb(monkeypatch, tmp_path):
    """The classification itself: a case that sleeps past its limit is a hang, one that
    allocates past the cap is memory (the child's RLIMIT_AS), not a pass."""
    runner = _module("runner")
    rows: list[dict] = []
    monkeypatch.setenv("MEDVIEWER_FUZZ_SELFTEST", "1")
    runner._drive(0, [-1, -2, -3], tmp_path, 3.0, rows)
    outcomes = {row["index"]: row["outcome"] for row in rows}
    assert outcomes == {-1: "hang", -2: "memory", -3: "traceback"}
