"""SIGKILL at random points of a save and of an autosave (issue 12.3c, 12.8).

A process saves one series' annotations in a loop (kill_child.py) and is killed at a seeded
random moment, 14 times for saves and 6 for autosaves (MEDVIEWER_KILLS=<n> for more). After
each kill, what the next start finds must be the complete set of the last finished save or of
the one under way (SEG, SR and sidecar of ONE save: same reader, same model, the sidecar of
that SR), and the start must leave no temporary file, staging folder or lock behind.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medviewer.core import synthetic
from medviewer.core.annotations import (
    find_recoverable,
    load_autosave,
    read_autosave_record,
    read_provenance,
)
from medviewer.core.annotations.commit import generation, read_marker
from medviewer.core.annotations.sr import read_sidecar
from medviewer.core.annotations.workspace import Workspace
from medviewer.core.dicom import load_series, scan

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
CHILD = Path(__file__).with_name("kill_child.py")
ROOT = Path(__file__).resolve().parents[3]
KILLS = int(os.environ.get("MEDVIEWER_KILLS", "0") or 0)


@pytest.fixture
def series(tmp_path: Path):
    folder = tmp_path / "data"
    synthetic.write_series(folder, np.zeros((6, 32, 32), np.int16), spacing=(2.0, 1.0, 1.0))
    return folder, load_series(scan(folder, cache=False).all_series()[0])


def _killed(kind: str, folder: Path, first: int, delay: float) -> list[int]:
    """Run the saving child, SIGKILL it `delay` s after it is ready; the indices it
    finished."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, str(CHILD), kind, str(folder), str(first)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
    assert child.stdout is not None
    lines = [child.stdout.readline(), child.stdout.readline()]  # done <first>, ready
    assert lines[1].strip() == "ready", child.stderr.read() if child.stderr else lines
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    out, err = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, err  # it was killed, it did not fail
    return [int(word.split()[1]) for word in [*lines, *out.splitlines()]
            if word.startswith("done ")]


def _litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()
                  if p.name.endswith(".tmp") or p.name.startswith((".staging-", ".lock")))


def _index_of_set(ws: Workspace) -> int:
    """The save index the folder's set holds; fails when its files come from two saves."""
    sr = read_provenance(ws.sr_path)
    index = int(sr.model.rsplit(".", 1)[1])
    assert sr.annotator == f"r{index}"
    sidecar = read_sidecar(ws.sidecar_path)
    assert sidecar["model"] == sr.model and sidecar["annotator"] == sr.annotator
    assert sidecar["sr_sop_instance_uid"] == pydicom.dcmread(
        ws.sr_path, stop_before_pixels=True).SOPInstanceUID
    if index % 3 == 0:  # that save erased every label: no SEG
        assert not ws.seg_path.exists()
    else:
        seg = pydicom.dcmread(ws.seg_path, stop_before_pixels=True)
        assert seg.SeriesDescription == f"Segmentation (r{index})"
    marker = read_marker(ws.folder)
    assert marker["pending"] is None
    assert sorted(marker["files"]) == sorted(p.name for p in ws.folder.glob("[!.]*.*")
                                             if p.name != "commit.json")
    return index


def test_a_killed_save_leaves_the_old_or_the_new_set_whole_and_no_litter(series):
    folder, volume = series
    ws = Workspace.for_series(volume)
    rng, last = random.Random(12), 0
    for _ in range(KILLS or 14):
        done = _killed("save", folder, last + 1, rng.uniform(0.0, 0.3))
        before = done[-1] if done else last
        find_recoverable([folder])  # the next start: finishes or drops the killed save
        assert _litter(ws.folder) == []
        with ws.reading():
            index = _index_of_set(ws)
        assert index in (before, before + 1)  # old or new, nothing in between
        assert generation(ws.folder) >= 1
        last = index


def test_a_killed_autosave_leaves_the_old_or_the_new_autosave_and_no_litter(series):
    folder, volume = series
    ws = Workspace.for_series(volume)
    rng, last = random.Random(7), 0
    for _ in range(max(KILLS // 2, 6)):
        done = _killed("autosave", folder, last + 1, rng.uniform(0.0, 0.2))
        before = done[-1] if done else last
        find_recoverable([folder])
        assert _litter(ws.folder) == []
        index = int(read_autosave_record(ws.autosave_path)["model"].rsplit(".", 1)[1])
        assert index in (before, before + 1)
        labelmap, boxes = load_autosave(ws.autosave_path, volume)
        assert [b.label for b in boxes] == [f"mass {index}"]
        assert bool(labelmap.voxel_counts()) == bool(index % 3)
        last = index
