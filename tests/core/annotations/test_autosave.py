"""Autosave and crash recovery: round trip, wrong series, corrupt and half-written files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from medviewer.core.annotations import autosave
from medviewer.core.annotations.autosave import (
    autosaved_lines,
    discard_autosave,
    find_recoverable,
    load_autosave,
    save_autosave,
)
from medviewer.core.annotations.boxes import (
    AnnotatedBox,
    BoxSet,
    ClassLabel,
    boxes_from_model,
    distance_line,
    model_source,
)
from medviewer.core.annotations.labelmap import LabelMap
from medviewer.core.annotations.seg import AnnotationError
from medviewer.core.annotations.workspace import Workspace
from medviewer.core.dicom import load_series, scan

MODEL = model_source("lung-seg", "1.2.0")


@pytest.fixture
def volume(ct_series_dir: Path):
    return load_series(scan(ct_series_dir, cache=False).all_series()[0])


def _edited(volume) -> tuple[LabelMap, BoxSet]:
    """A map with two labels (one hidden, one with its own colour) and boxes of both kinds."""
    labelmap = LabelMap.for_volume(volume)
    lung = labelmap.table.add("lung")
    nodule = labelmap.table.add("nodule", colour="#FF0000", value=7)
    nodule.visible = False
    labelmap.array[3:9, 10:40, 5:30] = lung.value
    labelmap.array[5, 20:24, 12:16] = nodule.value
    labelmap.opacity, labelmap.display = 0.3, "outline"
    detections = [SimpleNamespace(x0=1.5, y0=2.0, x1=9.25, y1=12.0, label="nodule",
                                  score=0.875, slice_index=4)]
    boxset = boxes_from_model(detections, volume, source=MODEL)
    boxset.add(AnnotatedBox(10, 10, 20, 30, 6, "mass", sop_instance_uid="1.2.3"))
    boxset.set_class(ClassLabel("emphysema"))
    boxset.set_class(ClassLabel("normal", scope="slice", slice_index=2, score=0.5,
                                source=MODEL))
    return labelmap, boxset


def test_round_trip_is_identical(volume):
    ws = Workspace.for_series(volume)
    labelmap, boxset = _edited(volume)
    path = save_autosave(ws, labelmap, boxset, model=MODEL)
    assert path == ws.autosave_path and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["autosave.npz"]  # no temporary left
    back, boxes = load_autosave(path, volume)
    np.testing.assert_array_equal(back.array, labelmap.array)
    assert back.array.dtype == np.uint8
    assert back.table.labels == labelmap.table.labels  # names, values, colours, codes, visible
    assert (back.spacing, back.opacity, back.display) == (labelmap.spacing, 0.3, "outline")
    assert back.series_instance_uid == volume.series.series_instance_uid
    assert boxes.boxes == boxset.boxes and boxes.class_labels == boxset.class_labels
    assert autosave.read_autosave_record(path)["model"] == MODEL


def test_boxes_only_round_trip(volume):
    ws = Workspace.for_series(volume)
    _, boxset = _edited(volume)
    labelmap, boxes = load_autosave(save_autosave(ws, None, boxset), volume)
    assert labelmap is None and boxes.boxes == boxset.boxes


def _rewrite_record(path: Path, change) -> None:
    """Edit an autosave's JSON record in place (an older or a damaged writer)."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    record = json.loads(arrays["record"].tobytes().decode("utf-8"))
    change(record)
    arrays["record"] = np.frombuffer(json.dumps(record).encode("utf-8"), np.uint8)
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def test_rulers_round_trip_beside_the_map_and_boxes(volume):
    labelmap, boxset = _edited(volume)
    lines = [distance_line(volume, 3, (10.25, 12.5), (40.0, 33.75)),
             distance_line(volume, 7, (1.0, 2.0), (3.0, 60.5), label="long axis")]
    path = save_autosave(Workspace.for_series(volume), labelmap, boxset, lines=iter(lines))
    back = autosaved_lines(path)
    assert back == lines  # slice, both ends as tuples, length, label, SOP and uid
    assert isinstance(back[0].start, tuple) and back[0].sop_instance_uid
    back_map, boxes = load_autosave(path, volume)  # the old two-part answer is unchanged
    np.testing.assert_array_equal(back_map.array, labelmap.array)
    assert boxes.boxes == boxset.boxes
    only_rulers = save_autosave(Workspace.for_series(volume), None, None, lines=lines[:1])
    assert autosaved_lines(only_rulers) == lines[:1]
    assert load_autosave(only_rulers, volume)[0] is None


def test_an_autosave_written_before_rulers_still_loads(volume):
    labelmap, boxset = _edited(volume)
    path = save_autosave(Workspace.for_series(volume), labelmap, boxset)
    _rewrite_record(path, lambda record: record.pop("lines"))
    assert "lines" not in autosave.read_autosave_record(path)
    assert autosaved_lines(path) == []
    back_map, boxes = load_autosave(path, volume)
    np.testing.assert_array_equal(back_map.array, labelmap.array)
    assert boxes.boxes == boxset.boxes


def test_a_damaged_ruler_is_refused_and_left_untouched(volume):
    line = distance_line(volume, 3, (10.0, 12.0), (40.0, 33.0))
    path = save_autosave(Workspace.for_series(volume), None, None, lines=[line])
    _rewrite_record(path, lambda record: record["lines"][0].pop("end"))
    before = path.read_bytes()
    with pytest.raises(AnnotationError, match="rulers are damaged"):
        autosaved_lines(path)
    assert path.read_bytes() == before


def test_another_series_is_refused(volume):
    ws = Workspace.for_series(volume)
    labelmap, boxset = _edited(volume)
    path = save_autosave(ws, labelmap, boxset)
    other_uid = SimpleNamespace(voxels=volume.voxels,
                                series=SimpleNamespace(series_instance_uid="1.2.3.4"))
    with pytest.raises(AnnotationError, match="another series"):
        load_autosave(path, other_uid)
    other_grid = SimpleNamespace(voxels=volume.voxels[:-1], series=volume.series)
    with pytest.raises(AnnotationError, match="grid"):
        load_autosave(path, other_grid)
    labelmap.series_instance_uid = "1.2.3.4"
    with pytest.raises(AnnotationError, match="another series"):
        save_autosave(ws, labelmap, boxset)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 half a zip", b"not an autosave"])
def test_a_corrupt_autosave_is_refused_and_left_untouched(volume, content):
    path = Workspace.for_series(volume).autosave_path
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(AnnotationError, match="left untouched"):
        load_autosave(path, volume)
    assert path.read_bytes() == content


def test_a_foreign_npz_is_refused_and_left_untouched(volume):
    path = Workspace.for_series(volume).autosave_path
    path.parent.mkdir(parents=True)
    np.savez(path, record=np.frombuffer(b'{"format": "other"}', np.uint8))
    content = path.read_bytes()
    with pytest.raises(AnnotationError, match="not a MedViewer autosave"):
        load_autosave(path, volume)
    assert path.read_bytes() == content


def test_a_killed_save_leaves_the_previous_autosave_loadable(volume, monkeypatch):
    ws = Workspace.for_series(volume)
    labelmap, boxset = _edited(volume)
    save_autosave(ws, labelmap, boxset)
    before = ws.autosave_path.read_bytes()

    def half_write(f, **arrays):
        f.write(b"PK\x03\x04" + bytes(1000))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(autosave.np, "savez_compressed", half_write)
    labelmap.array[:] = 0
    with pytest.raises(AnnotationError, match="previous autosave"):
        save_autosave(ws, labelmap, BoxSet())
    monkeypatch.undo()
    assert ws.autosave_path.read_bytes() == before
    assert [p.name for p in ws.folder.iterdir()] == ["autosave.npz"]
    back, boxes = load_autosave(ws.autosave_path, volume)
    assert back.voxel_counts() and boxes.boxes == boxset.boxes


def _workspace(folder: Path, series: str) -> Workspace:
    return Workspace(folder, folder.parents[2], "1.2.826.1", series)


def _age(path: Path, seconds_ago: float) -> None:
    stamp = path.stat().st_mtime - seconds_ago
    os.utime(path, (stamp, stamp))


def test_find_recoverable_finds_exactly_those_newer_than_their_real_save(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDVIEWER_DATA_DIR", str(tmp_path / "user"))
    data = tmp_path / "data"
    boxes = BoxSet([AnnotatedBox(0, 0, 4, 4, 0, "mass")])
    never_saved = _workspace(data / ".medviewer" / "st" / "1.1", "1.1")
    stale = _workspace(data / ".medviewer" / "st" / "1.2", "1.2")  # real save came after
    newer = _workspace(data / ".medviewer" / "st" / "1.3", "1.3")  # edited since the save
    in_user_dir = _workspace(tmp_path / "user" / "workspaces" / "ab12" / "st" / "1.4", "1.4")
    for ws in (never_saved, stale, newer, in_user_dir):
        save_autosave(ws, None, boxes, model=MODEL)
    (stale.folder / "segmentation.dcm").write_bytes(b"seg")
    _age(stale.autosave_path, 60)
    (newer.folder / "annotations.json").write_bytes(b"{}")
    _age(newer.folder / "annotations.json", 60)

    found = find_recoverable([data])
    assert {r.path for r in found} == {never_saved.autosave_path, newer.autosave_path,
                                       in_user_dir.autosave_path}
    by_series = {r.series_instance_uid: r for r in found}
    assert by_series["1.3"].last_saved is not None and by_series["1.1"].last_saved is None
    assert all(r.model == MODEL and r.problem == "" and r.saved_at for r in found)
    assert [r.path for r in find_recoverable()] == [in_user_dir.autosave_path]


def test_find_recoverable_sets_a_corrupt_autosave_aside_with_its_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDVIEWER_DATA_DIR", str(tmp_path / "user"))
    path = tmp_path / "data" / ".medviewer" / "st" / "1.1" / "autosave.npz"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage")
    (found,) = find_recoverable([tmp_path / "data"])
    assert "cannot be read" in found.problem and found.path.name in found.problem
    assert not path.exists() and found.path.read_bytes() == b"garbage"  # set aside, kept
    assert find_recoverable([tmp_path / "data"]) == []  # said once; no autosave replaces it


def test_discard_removes_only_autosaves(volume, tmp_path):
    ws = Workspace.for_series(volume)
    path = save_autosave(ws, None, BoxSet())
    discard_autosave(path)
    assert not path.exists()
    discard_autosave(path)  # already gone: nothing to do
    other = tmp_path / "segmentation.dcm"
    other.write_bytes(b"x")
    with pytest.raises(AnnotationError, match="left untouched"):
        discard_autosave(other)
    assert other.exists()
