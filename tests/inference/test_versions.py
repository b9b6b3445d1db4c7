"""Model versions: publishing into the user store, the active pointer, rollback, refusals.

Every test gets its own data folder (so its store and pointers never reach another test) and
works on lab 1's shipped digits model, whose folder must come out of it byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from medviewer.inference import ModelError, registry, versions
from medviewer.inference import manifest as mf

from .tiny import classifier_onnx, write_model_folder

LAB1 = "lab1-digits-mlp"


def _tree_hash(folder: Path) -> str:
    """Names and bytes of every file under `folder`."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data folder; checks afterwards that the shipped models/ were never written."""
    monkeypatch.setenv("MEDVIEWER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv(registry.MODELS_ENV, raising=False)
    shipped = registry.shipped_models_dir()
    before = _tree_hash(shipped)
    yield versions.store_dir()
    assert _tree_hash(shipped) == before, "the shipped models/ folder was written"


def candidate(tmp_path: Path, name: str, version: str = "1.1.0", tweak: int = 1) -> Path:
    """A copy of the shipped lab 1 model with other weights bytes (a different model as far as
    checksums go; the ONNX graph is unchanged) and `version`, checksums rewritten."""
    folder = tmp_path / name
    shutil.copytree(registry.shipped_models_dir() / LAB1, folder)
    weights = folder / mf.WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= tweak  # the low bits of the last float
    weights.write_bytes(bytes(data))
    m = mf.load_manifest(folder, verify=False)
    mf.write_manifest(replace(m, version=version, provenance={"init": "current"}), folder)
    return folder


def _active_lab1() -> mf.Manifest:
    models, _ = registry.list_models()
    return next(m for m in models if m.id == LAB1)


def test_publish_adds_an_active_version_beside_the_shipped_one(store, tmp_path):
    before = versions.list_versions(LAB1)
    assert [(v.version, v.shipped, v.active) for v in before] == [("1.0.0", True, True)]
    published = versions.publish(candidate(tmp_path, "run1"))
    assert published.version == "1.1.0" and published.folder == store / LAB1 / "1.1.0"
    after = versions.list_versions(LAB1)
    assert [(v.version, v.shipped, v.active, v.origin) for v in after] == [
        ("1.0.0", True, False, "shipped"), ("1.1.0", False, True, "user")]
    assert _active_lab1().folder == published.folder
    assert registry.find_model(LAB1).version == "1.1.0"
    assert versions.active_version(LAB1).version == "1.1.0"
    mf.load_manifest(published.folder, verify=True)  # the copy is whole
    assert sorted(p.name for p in (store / LAB1).iterdir()) == ["1.1.0", versions.POINTER]


def test_rolling_back_and_forward(store, tmp_path):
    versions.publish(candidate(tmp_path, "run1"))
    versions.set_active(LAB1, "1.0.0")
    active = _active_lab1()
    assert active.version == "1.0.0"
    assert active.folder == registry.shipped_models_dir() / LAB1
    assert [v.active for v in versions.list_versions(LAB1)] == [True, False]
    pointer = json.loads(versions.pointer_path(LAB1).read_text())
    assert (pointer["model"], pointer["version"]) == (LAB1, "1.0.0")
    versions.set_active(LAB1, "1.1.0")
    assert registry.find_model(LAB1).version == "1.1.0"
    with pytest.raises(ModelError, match="has no version 7.0.0; installed: 1.0.0, 1.1.0"):
        versions.set_active(LAB1, "7.0.0")
    assert registry.find_model(LAB1).version == "1.1.0"


def test_a_corrupt_candidate_is_refused_and_the_store_is_unchanged(store, tmp_path):
    versions.publish(candidate(tmp_path, "run1"))
    before = _tree_hash(store)
    bad = candidate(tmp_path, "run2", tweak=2)
    (bad / mf.ONNX_FILE).write_bytes((bad / mf.ONNX_FILE).read_bytes()[:-10])  # truncated
    with pytest.raises(ModelError, match="checksum"):
        versions.publish(bad)
    assert _tree_hash(store) == before
    assert [v.version for v in versions.list_versions(LAB1)] == ["1.0.0", "1.1.0"]


def test_publishing_the_same_model_twice_is_refused(store, tmp_path):
    folder = candidate(tmp_path, "run1")
    versions.publish(folder)
    versions.set_active(LAB1, "1.0.0")
    with pytest.raises(ModelError, match="already installed as lab1-digits-mlp 1.1.0"):
        versions.publish(folder)
    with pytest.raises(ModelError, match="already installed as lab1-digits-mlp 1.0.0"):
        versions.publish(registry.shipped_models_dir() / LAB1)
    assert [v.version for v in versions.list_versions(LAB1)] == ["1.0.0", "1.1.0"]
    assert _active_lab1().version == "1.0.0", "a refused publish leaves the choice alone"


def test_a_taken_version_number_is_published_as_the_next_one(store, tmp_path):
    versions.publish(candidate(tmp_path, "run1"))
    second = versions.publish(candidate(tmp_path, "run2", version="1.1.0", tweak=2))
    assert second.version == "1.2.0" and second.folder == store / LAB1 / "1.2.0"
    assert second.provenance["candidate_version"] == "1.1.0"
    mf.load_manifest(second.folder, verify=True)
    scratch = versions.publish(candidate(tmp_path, "run3", version="1.0.0", tweak=4))
    assert scratch.version == "1.3.0" and _active_lab1().version == "1.3.0"


def test_the_first_version_of_a_new_model_keeps_its_number(store, tmp_path):
    folder = tmp_path / "new"
    write_model_folder(folder, classifier_onnx()[0], id="t-new", version="2.3.0")
    published = versions.publish(folder)
    assert published.folder == store / "t-new" / "2.3.0" and published.version == "2.3.0"
    assert [(v.version, v.active, v.origin) for v in versions.list_versions("t-new")] == [
        ("2.3.0", True, "user")]
    assert versions.next_version("t-new") == "2.4.0"


def test_next_version_counts_from_the_newest(store, tmp_path):
    assert versions.next_version("no-such-model") == "1.0.0"
    assert versions.next_version(LAB1) == "1.1.0"
    versions.publish(candidate(tmp_path, "run1"))
    assert versions.next_version(LAB1) == "1.2.0"
    for version in ("1.9.3", "1.10.0", "0.4.0-rc1"):
        write_model_folder(tmp_path / "other" / version, classifier_onnx()[0], id="t-odd",
                           version=version)
    assert versions.next_version("t-odd", [tmp_path / "other"]) == "1.11.0"


def test_a_pointer_to_a_missing_version_falls_back_to_the_newest(store, tmp_path):
    published = versions.publish(candidate(tmp_path, "run1"))
    versions.set_active(LAB1, "1.0.0")
    pointer = versions.pointer_path(LAB1)
    pointer.write_text(json.dumps({"model": LAB1, "version": "0.9.0"}))
    models, problems = registry.list_models()
    assert next(m for m in models if m.id == LAB1).folder == published.folder
    ours = [p for p in problems if p.path == str(pointer)]
    assert len(ours) == 1 and "0.9.0" in ours[0].reason and "newest, 1.1.0" in ours[0].reason
    assert "0.9.0" in versions.active_problem(LAB1)
    assert [v.active for v in versions.list_versions(LAB1)] == [False, True]
    pointer.write_text("{not json")
    assert registry.find_model(LAB1).version == "1.1.0"
    assert "cannot be read" in versions.active_problem(LAB1)
    versions.set_active(LAB1, "1.0.0")
    assert versions.active_problem(LAB1) == ""


def test_a_failed_copy_leaves_no_version_behind(store, tmp_path, monkeypatch):
    def no_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(versions.os, "rename", no_rename)
    with pytest.raises(ModelError, match="could not be copied .*No space left"):
        versions.publish(candidate(tmp_path, "run1"))
    assert list((store / LAB1).iterdir()) == [], "no staging folder, no pointer"
    assert _active_lab1().version == "1.0.0"


def test_versions_in_a_models_dir_root_can_be_chosen(store, tmp_path, monkeypatch):
    extra = tmp_path / "extra"
    onnx_bytes = classifier_onnx()[0]
    for version in ("1.0.0", "2.0.0"):
        write_model_folder(extra / "t-extra" / version, onnx_bytes, id="t-extra",
                           version=version)
    monkeypatch.setenv(registry.MODELS_ENV, str(extra))
    listed = versions.list_versions("t-extra")
    assert [(v.version, v.origin, v.active) for v in listed] == [
        ("1.0.0", "other", False), ("2.0.0", "other", True)]
    versions.set_active("t-extra", "1.0.0")
    assert registry.find_model("t-extra").folder == extra / "t-extra" / "1.0.0"
    assert not (extra / "t-extra" / versions.POINTER).exists(), "pointers live in the store"


def test_a_damaged_version_cannot_be_made_active(store, tmp_path):
    published = versions.publish(candidate(tmp_path, "run1"))
    versions.set_active(LAB1, "1.0.0")
    (published.folder / mf.ONNX_FILE).write_bytes(b"damaged")
    with pytest.raises(ModelError, match="checksum"):
        versions.set_active(LAB1, "1.1.0")
    assert _active_lab1().version == "1.0.0"


@pytest.mark.parametrize(("key", "bad"), [("id", "../escape"), ("id", ".hidden"),
                                          ("id", "a/b"), ("version", "../../x"),
                                          ("version", "1.0\n"), ("id", "..")])
def test_ids_that_cannot_name_a_folder_are_refused(store, tmp_path, key, bad):
    folder = tmp_path / "odd"
    write_model_folder(folder, classifier_onnx()[0])
    with pytest.raises(ModelError, match="cannot name a folder"):  # not written either
        write_model_folder(folder, classifier_onnx()[0], **{key: bad})
    d = json.loads((folder / mf.MANIFEST).read_text())  # by hand, as an older MedViewer would
    d[key], d["format"] = bad, 1
    del d[mf.CHECKSUM_KEY]
    (folder / mf.MANIFEST).write_text(json.dumps(d))
    with pytest.raises(ModelError, match="cannot name a folder"):
        versions.publish(folder)
    assert not store.exists() or not any(store.rglob("manifest.json"))
    assert not (tmp_path / "escape").exists() and not (tmp_path / "x").exists()
