"""A series' SEG, SR and sidecar as one atomic unit, one writer at a time (issue 12.3b, c).

Two viewers saving the same series: the second is refused with a sentence and nothing of the
first is overwritten. A save that fails or is killed half-way leaves the whole old set; one
killed after its commit point is finished by the next reader.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medviewer.core import synthetic
from medviewer.core.annotations import LabelMap, read_provenance
from medviewer.core.annotations import commit as commit_module
from medviewer.core.annotations.boxes import AnnotatedBox, BoxSet
from medviewer.core.annotations.commit import LOCK, SaveConflict
from medviewer.core.annotations.workspace import Workspace
from medviewer.core.dicom import load_series, scan

ROOT = Path(__file__).resolve().parents[3]
REFUSED = "Another MedViewer window saved these annotations at"


@pytest.fixture
def series(tmp_path: Path):
    folder = tmp_path / "data"
    synthetic.write_series(folder, np.zeros((6, 32, 32), np.int16), spacing=(2.0, 1.0, 1.0))
    return folder, load_series(scan(folder, cache=False).all_series()[0])


def _save(ws: Workspace, volume, who: str, base: int | None, slice_index: int = 1) -> None:
    labelmap = LabelMap.for_volume(volume)
    labelmap.array[slice_index, 4:12, 4:12] = labelmap.table.add(f"lesion {who}").value
    with ws.saving(base) as w:
        w.save_labels(labelmap.array, volume, labelmap.table, annotator=who)
        w.save_sr(volume, BoxSet([AnnotatedBox(1, 1, 5, 5, 0, f"mass {who}")]),
                  annotator=who, model=f"model:m@{who}")


def _set_on_disk(ws: Workspace) -> tuple[str, str, str]:
    """(SEG reader, SR reader, sidecar reader): one save's set has one name thrice."""
    seg = pydicom.dcmread(ws.seg_path, stop_before_pixels=True)
    sidecar = ws.sidecar_path.read_text()
    sidecar_by = next(w for w in ("alice", "bob") if f'"annotator": "{w}"' in sidecar)
    sr_by = read_provenance(ws.sr_path).annotator
    return str(seg.ContentCreatorName).rstrip("^"), sr_by, sidecar_by


def test_the_second_of_two_viewers_is_refused_and_nothing_is_overwritten(series):
    _, volume = series
    alice, bob = Workspace.for_series(volume), Workspace.for_series(volume)  # two windows
    alice_base, bob_base = alice.generation(), bob.generation()  # both open the series
    _save(alice, volume, "alice", alice_base)
    before = {p.name: p.read_bytes() for p in alice.folder.iterdir()}
    with pytest.raises(SaveConflict, match=REFUSED) as refused:
        _save(bob, volume, "bob", bob_base, slice_index=4)
    assert "reopen the series to see them" in refused.value.reason
    assert time.strftime("%H:") in refused.value.reason  # when the other save was
    assert {p.name: p.read_bytes() for p in alice.folder.iterdir()} == before
    assert _set_on_disk(alice) == ("alice", "alice", "alice")
    # bob reopens the series, sees alice's work, and his next save goes through
    _save(bob, volume, "bob", bob.generation(), slice_index=4)
    assert _set_on_disk(bob) == ("bob", "bob", "bob") and bob.generation() == 2


def test_a_save_waits_for_a_live_lock_then_is_refused_with_a_sentence(series, monkeypatch):
    _, volume = series
    ws = Workspace.for_series(volume)
    ws.folder.mkdir(parents=True)
    (ws.folder / LOCK).write_text(f"{os.getppid()} {os.uname().nodename} {time.time()}")
    monkeypatch.setattr(commit_module, "WAIT_S", 0.2)
    with pytest.raises(SaveConflict, match="is saving these annotations right now"):
        _save(ws, volume, "alice", None)
    assert not ws.seg_path.exists() and not ws.sr_path.exists()


def test_a_lock_left_by_a_killed_process_is_broken(series):
    _, volume = series
    ws = Workspace.for_series(volume)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ws.folder.mkdir(parents=True)
    (ws.folder / LOCK).write_text(f"{dead.pid} {os.uname().nodename} {time.time()}")
    _save(ws, volume, "alice", ws.generation())
    assert _set_on_disk(ws) == ("alice", "alice", "alice")
    assert not (ws.folder / LOCK).exists()


def test_a_save_failing_between_seg_and_sr_leaves_the_whole_old_set(series, monkeypatch):
    _, volume = series
    ws = Workspace.for_series(volume)
    _save(ws, volume, "alice", ws.generation())
    before = {p.name: p.read_bytes() for p in ws.folder.iterdir()}

    def dies(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("medviewer.core.annotations.workspace.write_sr", dies)
    with pytest.raises(OSError):
        _save(ws, volume, "bob", ws.generation())  # the SEG was written, then the SR failed
    assert {p.name: p.read_bytes() for p in ws.folder.iterdir()} == before  # no litter
    assert _set_on_disk(ws) == ("alice", "alice", "alice")


def test_a_save_killed_after_its_commit_point_is_finished_by_the_next_reader(series,
                                                                             monkeypatch):
    _, volume = series
    ws = Workspace.for_series(volume)
    _save(ws, volume, "alice", ws.generation())
    real_replace = os.replace
    moved: list[str] = []

    def killed_after_one(source, target):  # the process dies after its first switch
        switch = Path(source).parent.name.startswith(".staging-") and \
            Path(target).parent == ws.folder
        if switch and moved:
            raise SystemExit("killed")
        moved.extend([Path(target).name] if switch else [])
        real_replace(source, target)

    monkeypatch.setattr(commit_module.os, "replace", killed_after_one)
    with pytest.raises(SystemExit):
        _save(ws, volume, "bob", ws.generation())
    monkeypatch.undo()
    assert len(moved) == 1  # the folder now mixes one of bob's files with alice's others
    with ws.reading() as generation:
        assert generation == 2 and _set_on_disk(ws) == ("bob", "bob", "bob")
    assert sorted(p.name for p in ws.folder.iterdir()) == [
        "annotations.dcm", "annotations.json", "commit.json", "segmentation.dcm"]


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from medviewer.core.annotations import AnnotationError, LabelMap
    from medviewer.core.annotations.boxes import AnnotatedBox, BoxSet
    from medviewer.core.annotations.saving import save_annotations
    from medviewer.core.annotations.workspace import Workspace
    from medviewer.core.dicom import load_series, scan
    folder, who = Path(sys.argv[1]), sys.argv[2]
    volume = load_series(scan(folder, cache=False).all_series()[0])
    base = Workspace.for_series(volume).generation()   # the window opens the series
    labelmap = LabelMap.for_volume(volume)
    labelmap.array[1, 4:12, 4:12] = labelmap.table.add(f"lesion {who}").value
    boxes = BoxSet([AnnotatedBox(1, 1, 5, 5, 0, f"mass {who}")])
    print("ready", flush=True)
    while not (folder / "go").exists():
        time.sleep(0.01)
    try:                                                 # Ctrl+S in both windows at once
        save_annotations(volume, labelmap.array, labelmap.table, boxes, f"model:m@{who}",
                         who, base=base)
        print("saved", flush=True)
    except AnnotationError as exc:
        print("refused", exc.reason, flush=True)
""")


def test_two_processes_saving_at_once_end_with_one_refused_and_nothing_lost(series):
    folder, volume = series
    script = folder.parent / "window.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    windows = {who: subprocess.Popen([sys.executable, str(script), str(folder), who],
                                     env=env, text=True, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
               for who in ("alice", "bob")}
    for proc in windows.values():
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    (folder / "go").touch()
    ended = {who: proc.communicate(timeout=60) for who, proc in windows.items()}
    said = {who: out.strip() for who, (out, _err) in ended.items()}
    assert sorted(s.split(" ")[0] for s in said.values()) == ["refused", "saved"], ended
    (winner,) = [w for w, s in said.items() if s == "saved"]
    (loser,) = [w for w, s in said.items() if s != "saved"]
    assert REFUSED in said[loser] or "is saving these annotations" in said[loser]
    ws = Workspace.for_series(volume)
    assert _set_on_disk(ws) == (winner, winner, winner) and ws.generation() == 1
    from medviewer.core.annotations import find_recoverable, load_autosave

    (refused,) = ws.folder.glob("autosave.refused-*.npz")
    labelmap, boxes = load_autosave(refused, volume)  # the refused work is kept
    assert [b.label for b in boxes] == [f"mass {loser}"]
    assert [label.name for label in labelmap.table] == [f"lesion {loser}"]
    _save(ws, volume, winner, ws.generation())  # the winner saves again: it stays
    assert refused in [r.path for r in find_recoverable([folder])]
    assert sorted(p.name for p in ws.folder.iterdir() if p != refused) == [
        "annotations.dcm", "annotations.json", "commit.json", "segmentation.dcm"]


def test_a_read_only_workspace_is_read_as_it_is(series, monkeypatch):
    _, volume = series
    ws = Workspace.for_series(volume)
    _save(ws, volume, "alice", 0)
    monkeypatch.setattr(commit_module.os, "access", lambda *a, **k: False)
    with ws.reading() as generation:
        assert generation == 1 and not (ws.folder / LOCK).exists()
        assert ws.load_seg(volume) is not None


def test_the_next_start_removes_temporary_files_a_kill_left_but_not_a_live_saves(series):
    folder, volume = series
    from medviewer.core.annotations import find_recoverable

    ws = Workspace.for_series(volume)
    _save(ws, volume, "alice", 0)
    litter = [ws.folder / ".segmentation.dcm-k2j4.tmp", ws.folder / ".autosave.npz-x1.tmp",
              ws.folder / ".annotations.json-9q.tmp", ws.folder / ".staging-dead" / "a.dcm"]
    for path in litter:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"half a file")
    (ws.folder / LOCK).write_text(f"{os.getppid()} {os.uname().nodename} {time.time()}")
    find_recoverable([folder])  # a live window holds the folder: its files are its own
    assert all(path.exists() for path in litter)
    (ws.folder / LOCK).unlink()
    find_recoverable([folder])
    assert sorted(p.name for p in ws.folder.iterdir()) == [
        "annotations.dcm", "annotations.json", "commit.json", "segmentation.dcm"]
    assert _set_on_disk(ws) == ("alice", "alice", "alice")


def test_a_deeply_nested_sidecar_is_a_clear_error_and_stays(series):
    _, volume = series
    ws = Workspace.for_series(volume)
    _save(ws, volume, "alice", 0)
    hostile = "[" * 100_000 + "]" * 100_000
    ws.sidecar_path.write_text(hostile)
    from medviewer.core.annotations import AnnotationError

    with pytest.raises(AnnotationError, match="sidecar cannot be read"):
        ws.load_sr(volume)
    with pytest.raises(AnnotationError, match="sidecar cannot be read"):
        _save(ws, volume, "bob", 1)
    assert ws.sidecar_path.read_text() == hostile  # refused, not replaced


def test_a_hostile_commit_marker_moves_nothing_from_outside_and_raises_no_traceback(
        series, tmp_path):
    _, volume = series
    ws = Workspace.for_series(volume)
    _save(ws, volume, "alice", 0)
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "annotations.dcm").write_bytes(b"not yours")
    marker = ws.folder / "commit.json"
    marker.write_text('{"format": "medviewer-annotations-commit", "generation": 1, '
                      '"saved_at": 1e300, "pending": {"staging": "' + str(outside) + '", '
                      '"moves": ["annotations.dcm"], "removes": ["../../../x"]}}')
    with pytest.raises(SaveConflict, match="saved these annotations at a later time"):
        _save(ws, volume, "bob", 0)
    assert (outside / "annotations.dcm").read_bytes() == b"not yours"
    assert _set_on_disk(ws) == ("alice", "alice", "alice")
    marker.write_text('{"format": "medviewer-annotations-commit", "generation": 1, '
                      '"files": 5, "pending": [1]}')
    _save(ws, volume, "bob", 1)  # a marker of the right generation but wrong types
    assert _set_on_disk(ws) == ("bob", "bob", "bob") and ws.generation() == 2


def test_two_windows_opening_a_series_at_once_choose_the_same_folder(series, monkeypatch):
    """Each window probes whether it may write beside the data by making the hidden folder and
    removing it again; the one that finds the other's probe there must not conclude that the
    data is read-only and save into the user data folder, where neither lock nor generation
    would see the other's save (two windows both 'saved')."""
    from medviewer.core.annotations import workspace as workspace_module

    _, volume = series
    alone = Workspace.for_series(volume).folder
    real_mkdir = workspace_module.Path.mkdir

    def probe_of_the_other_window(self, *args, **kwargs):
        if self.name == workspace_module.HIDDEN_FOLDER and not kwargs.get("exist_ok"):
            raise FileExistsError(17, "File exists", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(workspace_module.Path, "mkdir", probe_of_the_other_window)
    assert Workspace.for_series(volume).folder == alone
