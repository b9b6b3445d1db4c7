"""The annotation workspace: beside the data, never in a read-only source folder, found again."""

from __future__ import annotations

import os

import numpy as np
import pytest

from medviewer.core.annotations import AnnotationError
from medviewer.core.annotations import workspace as ws_module
from medviewer.core.annotations.boxes import AnnotatedBox, BoxSet, ClassLabel, slice_uid
from medviewer.core.annotations.workspace import HIDDEN_FOLDER, Workspace
from medviewer.core.dicom import load_series, scan


def _load(folder):
    series = scan(folder, cache=False).all_series()
    return series[0], load_series(series[0])


def _boxes(volume) -> BoxSet:
    return BoxSet([AnnotatedBox(3, 4, 9, 9, 2, "mass", sop_instance_uid=slice_uid(volume, 2))],
                  [ClassLabel("pneumonia")])


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_workspace_lies_beside_the_data_and_a_reopened_study_finds_it(ct_series_dir):
    series, volume = _load(ct_series_dir)
    before = {p: p.read_bytes() for p in ct_series_dir.iterdir()}
    ws = Workspace.for_series(volume)
    assert ws.folder == (ct_series_dir.resolve() / HIDDEN_FOLDER / series.study_instance_uid
                         / series.series_instance_uid)
    assert not (ct_series_dir / HIDDEN_FOLDER).exists()  # choosing the place writes nothing
    ws.save_sr(volume, _boxes(volume), annotator="Jane Doe")
    labels = np.zeros(volume.voxels.shape, np.uint8)
    labels[3, 10:20, 10:20] = 1
    ws.save_seg(labels, volume, ["background", "lesion"])
    assert {p: p.read_bytes() for p in ct_series_dir.iterdir() if p.is_file()} == before

    again = Workspace.for_series(series)  # a new session scans the folder again
    assert again.folder == ws.folder
    assert {f.kind for f in again.list_annotations()} == {"seg", "sr", "sidecar"}
    boxes, class_labels, _, _ = again.load_sr(volume)
    assert [(b.label, b.x0, b.sop_instance_uid) for b in boxes] == [
        ("mass", 3, slice_uid(volume, 2))]
    assert class_labels[0].label == "pneumonia"
    np.testing.assert_array_equal(again.load_seg(volume)[0], labels)
    assert len(scan(ct_series_dir, cache=False).all_series()) == 1  # hidden: no new series


def test_a_read_only_data_folder_sends_the_workspace_to_the_user_data_dir(ct_series_dir,
                                                                         monkeypatch):
    _, volume = _load(ct_series_dir)
    monkeypatch.setattr(ws_module, "_can_write", lambda folder: False)
    listing = _listing(ct_series_dir)
    ws = Workspace.for_series(volume)
    assert ws.folder.is_relative_to(os.environ["MEDVIEWER_DATA_DIR"])
    ws.save_sr(volume, _boxes(volume), annotator="J")
    assert _listing(ct_series_dir) == listing
    again = Workspace.for_series(volume)
    assert again.folder == ws.folder and again.load_sr(volume)[0][0].label == "mass"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_a_folder_without_write_permission_is_detected(ct_series_dir):
    _, volume = _load(ct_series_dir)
    os.chmod(ct_series_dir, 0o555)
    try:
        ws = Workspace.for_series(volume)
        assert not ws.folder.is_relative_to(ct_series_dir.resolve())
    finally:
        os.chmod(ct_series_dir, 0o755)


@pytest.mark.parametrize("content", [b"garbage" * 50, None])
def test_a_foreign_file_in_the_way_is_never_overwritten(ct_series_dir, ct_series, content):
    _, volume = _load(ct_series_dir)
    ws = Workspace.for_series(volume)
    ws.folder.mkdir(parents=True)
    content = content if content is not None else ct_series.paths[0].read_bytes()  # a CT image
    for path in (ws.sr_path, ws.seg_path):
        path.write_bytes(content)
    with pytest.raises(AnnotationError):
        ws.save_sr(volume, _boxes(volume), annotator="J")
    with pytest.raises(AnnotationError):
        ws.save_seg(np.zeros(volume.voxels.shape, np.uint8), volume, ["background"])
    assert ws.sr_path.read_bytes() == content and ws.seg_path.read_bytes() == content
    with pytest.raises(AnnotationError):
        ws.load_sr(volume)
    assert ws.sr_path.read_bytes() == content


def test_an_sr_of_another_series_is_not_replaced(ct_series_dir, tmp_path):
    from medviewer.core import synthetic

    _, volume = _load(ct_series_dir)
    synthetic.write_series(tmp_path / "other", np.zeros((4, 16, 16), np.int16), seed=7)
    _, other = _load(tmp_path / "other")
    assert other.series.series_instance_uid != volume.series.series_instance_uid
    ws = Workspace.for_series(volume)
    theirs = Workspace.for_series(other).save_sr(other, _boxes(other), annotator="J")
    ws.folder.mkdir(parents=True)
    ws.sr_path.write_bytes(theirs.read_bytes())
    with pytest.raises(AnnotationError, match="not this series"):
        ws.save_sr(volume, _boxes(volume), annotator="J")
    assert ws.sr_path.read_bytes() == theirs.read_bytes()


def test_the_writability_probe_never_removes_the_shared_hidden_folder(tmp_path, monkeypatch):
    """Two windows saving one new series at once: the first's probe must not remove the hidden
    folder the second is making its series folder in (that raced into a FileNotFoundError
    mid-save). The probe is a file of its own, gone afterwards; a read-only folder is no."""
    removed = []
    real_rmdir = os.rmdir
    monkeypatch.setattr(os, "rmdir", lambda path, *a, **k: (removed.append(str(path)),
                                                             real_rmdir(path, *a, **k)))
    monkeypatch.setattr(type(tmp_path), "rmdir", lambda self: (removed.append(str(self)),
                                                               real_rmdir(self)))
    assert ws_module._can_write(tmp_path) and not removed
    assert list(tmp_path.iterdir()) == []  # opening a study leaves no trace

    import tempfile

    def refused(*_a, **_k):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    assert not ws_module._can_write(tmp_path)
