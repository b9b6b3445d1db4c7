"""Hostile autosaves (issue 12.7): a zip bomb, a lying .npy header, deep JSON, a pickle.

Each one must end in an AnnotationError with a sentence, in bounded memory and time, never
a traceback; at start-up (find_recoverable) the bad file is set aside and reported.
"""

from __future__ import annotations

import io
import json
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from medviewer.core.annotations.autosave import (
    autosaved_areas,
    autosaved_lines,
    find_recoverable,
    load_autosave,
    read_autosave_record,
    save_autosave,
)
from medviewer.core.annotations.boxes import BoxSet
from medviewer.core.annotations.labelmap import LabelMap
from medviewer.core.annotations.seg import AnnotationError
from medviewer.core.annotations.workspace import Workspace
from medviewer.core.dicom import load_series, scan

BOMB_BYTES = 256 << 20  # inflated size of the bomb member; compressed it is ~250 KB


@pytest.fixture
def volume(ct_series_dir: Path):
    return load_series(scan(ct_series_dir, cache=False).all_series()[0])


def _saved(volume) -> Path:
    labelmap = LabelMap.for_volume(volume)
    labelmap.array[2, 5:9, 5:9] = labelmap.table.add("lung").value
    return save_autosave(Workspace.for_series(volume), labelmap, BoxSet())


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array(out, array, allow_pickle=True)
    return out.getvalue()


def _npy_header(shape: tuple[int, ...], dtype: str = "|u1") -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        out, {"descr": dtype, "fortran_order": False, "shape": shape})
    return out.getvalue()


def _rewrite(path: Path, members: dict[str, bytes], bomb: str | None = None,
             bomb_header: bytes = b"") -> None:
    """Write `members` as the autosave; `bomb` names a member of BOMB_BYTES zeros after
    `bomb_header`, streamed so the test itself stays small."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            if name != bomb:
                archive.writestr(name, data)
        if bomb is not None:
            with archive.open(bomb, "w", force_zip64=True) as f:
                f.write(bomb_header)
                chunk = bytes(8 << 20)
                for _ in range(BOMB_BYTES // len(chunk)):
                    f.write(chunk)


def _refused_quickly_in_little_memory(load, match: str) -> None:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(AnnotationError, match=match):
            load()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"{peak / 2**20:.0f} MiB allocated for a refused autosave"
    assert time.perf_counter() - start < 2.0


def test_a_label_member_that_inflates_far_beyond_the_grid_is_refused_unread(volume):
    path = _saved(volume)
    header = _npy_header(tuple(volume.voxels.shape))  # the right shape, then 256 MiB
    _rewrite(path, _members(path), bomb="labels.npy", bomb_header=header)
    assert path.stat().st_size < 2 << 20  # a small file on disk
    _refused_quickly_in_little_memory(lambda: load_autosave(path, volume), "damaged")


def test_a_record_that_declares_a_gigabyte_is_refused_before_allocation(volume):
    path = _saved(volume)
    members = _members(path)
    members["record.npy"] = _npy_header((1 << 40,)) + b"{}"
    _rewrite(path, members)
    _refused_quickly_in_little_memory(lambda: read_autosave_record(path), "cannot be read")


def test_a_record_bomb_is_refused_unread(volume):
    path = _saved(volume)
    _rewrite(path, _members(path), bomb="record.npy", bomb_header=_npy_header((BOMB_BYTES,)))
    _refused_quickly_in_little_memory(lambda: read_autosave_record(path), "cannot be read")


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000,
                                  '{"a":' * 50_000 + "1" + "}" * 50_000])
def test_deeply_nested_json_is_a_clear_error(volume, text):
    path = _saved(volume)
    members = _members(path)
    members["record.npy"] = _npy(np.frombuffer(text.encode(), np.uint8))
    _rewrite(path, members)
    for read in (read_autosave_record, autosaved_lines, autosaved_areas,
                 lambda p: load_autosave(p, volume)):
        with pytest.raises(AnnotationError, match="cannot be read"):
            read(path)


def test_a_pickled_member_never_runs(volume, tmp_path):
    ran = tmp_path / "payload-ran"
    path = _saved(volume)
    members = _members(path)

    class Payload:
        def __reduce__(self):
            return (Path.touch, (ran,))

    members["record.npy"] = _npy(np.array([Payload()], dtype=object))
    _rewrite(path, members)
    with pytest.raises(AnnotationError, match="cannot be read"):
        load_autosave(path, volume)
    assert not ran.exists()


@pytest.mark.parametrize("change", [
    lambda r: r.update(labelmap=[1, 2]),
    lambda r: r.update(labelmap={"shape": 7}),
    lambda r: r.update(labelmap={"shape": ["a", "b", "c"]}),
    lambda r: r.update(boxes="x", lines=5, areas=[[1]]),
    lambda r: r.update(class_labels=[{"label": {"deep": 1}, "scope": []}]),
])
def test_wrong_types_in_the_record_are_a_clear_error(volume, change):
    path = _saved(volume)
    members = _members(path)
    record = json.loads(np.lib.format.read_array(io.BytesIO(members["record.npy"])).tobytes())
    change(record)
    members["record.npy"] = _npy(np.frombuffer(json.dumps(record).encode(), np.uint8))
    _rewrite(path, members)
    for read in (autosaved_lines, autosaved_areas, lambda p: load_autosave(p, volume)):
        try:
            read(path)
        except AnnotationError as exc:
            assert exc.reason.endswith(".")  # a sentence, not a traceback


def test_at_start_up_a_hostile_autosave_is_set_aside_and_reported(volume, monkeypatch):
    path = _saved(volume)
    header = _npy_header((BOMB_BYTES,))
    _rewrite(path, _members(path), bomb="record.npy", bomb_header=header)
    bomb = path.read_bytes()
    data = Workspace.for_series(volume).data_folder
    (found,) = [r for r in find_recoverable([data]) if r.problem]
    assert "cannot be read" in found.problem and found.path.name in found.problem
    assert found.path.read_bytes() == bomb and not path.exists()
    assert not [r for r in find_recoverable([data]) if r.problem]  # told once, kept
