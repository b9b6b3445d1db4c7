"""manifest.json: validation, checksums, and the write -> load round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medviewer.inference import ModelError
from medviewer.inference import manifest as mf

from .tiny import classifier_onnx, manifest_dict, write_model_folder


def _write_raw(folder: Path, d: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / mf.MANIFEST).write_text(json.dumps(d), encoding="utf-8")
    return folder


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    original = mf.manifest_from_dict(manifest_dict(), tmp_path)
    (tmp_path / mf.ONNX_FILE).write_bytes(classifier_onnx()[0])
    (tmp_path / mf.WEIGHTS_FILE).write_bytes(b"w")
    mf.write_manifest(original, tmp_path)
    loaded = mf.load_manifest(tmp_path)
    expected = original.to_dict()
    got = loaded.to_dict()
    assert got.pop("files") == {mf.ONNX_FILE: mf.sha256(tmp_path / mf.ONNX_FILE),
                                mf.WEIGHTS_FILE: mf.sha256(tmp_path / mf.WEIGHTS_FILE)}
    expected.pop("files")
    assert got == expected
    assert loaded.input.size == (8, 8) and loaded.input.window == (-600, 1500)
    assert loaded.label_names == ["normal", "nodule"]
    assert loaded.folder == tmp_path
    assert not list(tmp_path.glob(".manifest-*")), "the temporary file was left behind"


def test_in_memory_round_trip() -> None:
    """to_dict keeps tuples (asdict): manifest_from_dict must take them back."""
    m = mf.manifest_from_dict(manifest_dict())
    again = mf.manifest_from_dict(m.to_dict())
    assert again == m


def test_sha256_mismatch_names_the_file_and_says_what_to_do(make_model) -> None:
    m = make_model()
    onnx_path = m.path(mf.ONNX_FILE)
    onnx_path.write_bytes(onnx_path.read_bytes() + b"\0")
    with pytest.raises(ModelError) as info:
        mf.load_manifest(m.folder)
    assert info.value.path == str(onnx_path)
    assert "checksum" in info.value.reason and "Copy the folder again" in info.value.reason
    mf.load_manifest(m.folder, verify=False)  # listing models does not hash the files


def test_replaced_weights_are_refused(make_model) -> None:
    m = make_model()
    m.path(mf.WEIGHTS_FILE).write_bytes(b"other weights")
    with pytest.raises(ModelError, match="weights.safetensors does not match"):
        mf.load_manifest(m.folder)


def test_missing_model_file(make_model) -> None:
    m = make_model()
    m.path(mf.WEIGHTS_FILE).unlink()
    with pytest.raises(ModelError, match="missing from the model folder") as info:
        mf.load_manifest(m.folder)
    assert info.value.path.endswith(mf.WEIGHTS_FILE)


def test_file_without_recorded_checksum(make_model) -> None:
    m = make_model()
    d = json.loads(m.path(mf.MANIFEST).read_text())
    del d["files"][mf.ONNX_FILE]
    d[mf.CHECKSUM_KEY] = mf.manifest_digest(d)  # a manifest sealed without it
    m.path(mf.MANIFEST).write_text(json.dumps(d))
    with pytest.raises(ModelError, match="no checksum"):
        mf.load_manifest(m.folder)


def test_folder_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no manifest.json") as info:
        mf.load_manifest(tmp_path)
    assert info.value.path == str(tmp_path)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\udcff"])
def test_unreadable_manifest(tmp_path: Path, text: str) -> None:
    (tmp_path / mf.MANIFEST).write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ModelError) as info:
        mf.load_manifest(tmp_path)
    assert info.value.path == str(tmp_path / mf.MANIFEST)


def test_missing_fields_are_listed(tmp_path: Path) -> None:
    d = manifest_dict()
    del d["labels"], d["task"]
    with pytest.raises(ModelError, match="lacks task, labels") as info:
        mf.load_manifest(_write_raw(tmp_path, d))
    assert "medviewer export" in info.value.reason


@pytest.mark.parametrize(("change", "message"), [
    ({"task": "regression"}, "task is wrong: 'regression' is not one of"),
    ({"input": {"size": [8, 8], "context": "next-only"}}, "input.context is wrong.*stack:N"),
    ({"input": {"size": [8, 8], "context": "stack:three"}}, "input.context is wrong"),
    ({"input": {"size": [8, 8], "context": "volume:0"}}, "input.context is wrong"),
    ({"input": {"size": [8, 8], "extras": ["age", "weight"]}}, r"input.extras\[1\] is wrong"),
    ({"format": mf.FORMAT + 1}, "newer than this MedViewer"),
    ({"format": "2"}, "format is wrong: '2' is not of type 'integer'"),
    ({"input": [8, 8]}, "input is wrong"),
    ({"labels": [{"name": "a", "shade": "dark"}]}, "unexpected field"),
    ({"input": {"size": [8, 8], "colour": "red"}}, "unexpected field"),
])
def test_invalid_manifests_are_refused(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        mf.load_manifest(_write_raw(tmp_path, manifest_dict(**change)), verify=False)


@pytest.mark.parametrize(("context", "count"), [
    ("single", 1), ("prev-current-next", 3), ("stack:5", 5), ("volume:16", 16)])
def test_context_slice_counts(context: str, count: int) -> None:
    d = manifest_dict(input={"size": [8, 8], "context": context})
    assert mf.manifest_from_dict(d).input.context_slices == count


def test_path_needs_a_folder() -> None:
    with pytest.raises(ModelError, match="not loaded from a folder"):
        mf.manifest_from_dict(manifest_dict()).path(mf.ONNX_FILE)


def test_rewrite_replaces_checksums(tmp_path: Path) -> None:
    m = write_model_folder(tmp_path / "m", classifier_onnx()[0])
    first = m.files[mf.ONNX_FILE]
    (m.folder / mf.ONNX_FILE).write_bytes(classifier_onnx(classes=3)[0])
    mf.write_manifest(m, m.folder)
    again = mf.load_manifest(m.folder)
    assert again.files[mf.ONNX_FILE] != first
