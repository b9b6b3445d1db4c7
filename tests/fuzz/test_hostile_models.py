"""Hostile model folders and manifests: every one ends in a ModelError naming the field (CLI:
exit 2 with the sentence), never a traceback, a silently wrong result or a file outside the
model store (issue 12, items 5-7).

The model folders are copies of lab 1's shipped digits model (a few kilobytes), its manifest
edited by hand as an attacker or a careless editor would.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from medviewer.cli import main
from medviewer.inference import ModelError, registry, staging, versions
from medviewer.inference import manifest as mf

ROOT = Path(__file__).resolve().parents[2]
LAB1 = "lab1-digits-mlp"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDVIEWER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv(registry.MODELS_ENV, raising=False)
    return versions.store_dir()


def _copy(tmp_path: Path, name: str = "m") -> Path:
    folder = tmp_path / name
    shutil.copytree(registry.shipped_models_dir() / LAB1, folder)
    return folder


def _set(d: dict[str, Any], path: str | tuple[str, ...], value: Any) -> None:
    keys = path.split(".") if isinstance(path, str) else path
    for key in keys[:-1]:
        d = d[key]
    d[keys[-1]] = value


def _write(folder: Path, d: dict[str, Any], *, seal: bool) -> None:
    """As format 2 with a matching checksum (`seal`: the schema alone must refuse it) or as
    an older format-1 manifest without one."""
    d = dict(d)
    d.pop(mf.CHECKSUM_KEY, None)
    if seal:
        d["format"] = 2
        try:
            d[mf.CHECKSUM_KEY] = mf.manifest_digest(d)
        except ValueError:  # NaN has no canonical JSON: any checksum will do
            d[mf.CHECKSUM_KEY] = "0" * 64
    else:
        d["format"] = 1
    (folder / mf.MANIFEST).write_text(json.dumps(d), encoding="utf-8")


def _shipped() -> dict[str, Any]:
    return json.loads((registry.shipped_models_dir() / LAB1 / mf.MANIFEST).read_text())


# the values of the issue, and their cousins: (field, value, words the sentence must hold)
HOSTILE = [
    ("input.std", [0], r"input.std\[0\]"),
    ("input.std", [-1.0], r"input.std\[0\]"),
    ("input.window", [0, 0], r"input.window\[1\]"),
    ("input.window", [40, -400], r"input.window\[1\]"),
    ("input.window", [1, 2, 3], "input.window"),
    ("input.mean", [math.nan], r"input.mean\[0\] is nan"),
    ("input.mean", [math.inf], r"input.mean\[0\] is inf"),
    ("input.mean", [0.0, 0.0], "input.mean has 2 values for 1 channels"),
    ("input.size", [0, 0], r"input.size\[\d\]"),
    ("input.size", [10**30, 10**30], r"input.size\[\d\]"),
    ("input.size", [1e30, 1e30], r"input.size\[\d\]"),
    ("input.size", "8x8", "input.size"),
    ("input.channels", 0, "input.channels"),
    ("input.channels", True, "input.channels"),
    ("input.context", "stack:0", "input.context"),
    ("input.context", 5, "input.context"),
    ("input.extras", 5, "input.extras"),
    ("input.modalities", "CT", "input.modalities"),
    ("options", [1, 2], "options is wrong"),
    ("options.batch_size", -1, "options.batch_size"),
    ("options.batch_size", 0, "options.batch_size"),
    ("options.batch_size", 2**70, "options.batch_size"),
    ("options.pipeline", 3, "options.pipeline"),
    ("metrics", "x", "metrics is wrong"),
    ("provenance", [1], "provenance is wrong"),
    ("lab", "4", "lab is wrong"),
    ("lab", 1e400, "lab is inf"),
    ("lab", 10**400, "lab is wrong"),
    ("labels", "abc", "labels is wrong"),
    ("labels", [1], r"labels\[0\]"),
    ("labels", [{"name": 5}], r"labels\[0\].name"),
    ("labels", [{"name": "a", "colour": "red"}], r"labels\[0\].colour"),
    ("labels", [], "labels is wrong"),
    ("onnx_inputs", [], "onnx_inputs is wrong"),
    ("onnx_inputs", {"image": "batch"}, "onnx_inputs.image"),
    ("onnx_outputs", "logits", "onnx_outputs is wrong"),
    ("files", {"../../etc/passwd": "0" * 64}, "files"),
    ("files", {"model.onnx": 5}, "files.model.onnx"),
    ("id", "../outside", "cannot name a folder"),
    ("id", 7, "id is wrong"),
    ("version", "1.0/../../x", "cannot name a folder"),
    ("version", 1.1, "version is wrong"),
    ("title", None, "title is wrong"),
    ("description", {"a": 1}, "description is wrong"),
    ("format", "2", "format is wrong"),
    ("format", 99, "newer than this MedViewer"),
    ("surprise", 1, "unexpected field"),
]


@pytest.mark.parametrize("seal", [True, False], ids=["sealed", "format1"])
@pytest.mark.parametrize(("field", "value", "words"), HOSTILE,
                         ids=[f"{f}={json.dumps(v)[:20]}" for f, v, _ in HOSTILE])
def test_a_hostile_manifest_value_is_refused_naming_the_field(tmp_path, field, value, words,
                                                                seal):
    folder = _copy(tmp_path)
    d = _shipped()
    _set(d, field, value)
    _write(folder, d, seal=seal)
    if field == "format":  # _write chose the format: put the hostile one back
        raw = json.loads((folder / mf.MANIFEST).read_text())
        (folder / mf.MANIFEST).write_text(json.dumps({**raw, "format": value}))
    for verify in (False, True):  # listing and opening alike
        with pytest.raises(ModelError, match=words) as info:
            mf.load_manifest(folder, verify=verify)
        assert info.value.path == str(folder / mf.MANIFEST)


@pytest.mark.parametrize("text", [
    '{"id": NaN}', '{"lab": Infinity}', '{"lab": -Infinity}',
    "[" * 100_000 + "]" * 100_000,  # deeper than the parser's recursion
    '{"metrics": ' + '{"a": ' * 200 + "1" + "}" * 200 + "}",  # parses, too deep to keep
    '{"lab": ' + "9" * 5000 + "}",  # more digits than Python converts
    "\x00\x01binary",
])
def test_a_malformed_manifest_text_is_refused(tmp_path, text):
    folder = _copy(tmp_path)
    (folder / mf.MANIFEST).write_text(text, encoding="utf-8")
    with pytest.raises(ModelError) as info:
        mf.load_manifest(folder)
    assert info.value.path == str(folder / mf.MANIFEST)


def test_deep_nesting_is_refused_with_its_reason(tmp_path):
    folder = _copy(tmp_path)
    d = _shipped()
    nested: Any = 1
    for _ in range(mf.MAX_DEPTH + 5):
        nested = {"a": nested}
    d["provenance"] = nested
    _write(folder, d, seal=True)
    with pytest.raises(ModelError, match="nests deeper than"):
        mf.load_manifest(folder)


POOL = [None, True, -1, 0, 1, 2**63, -2**63, 1e308, -1e-308, "", "x" * 300, "../..", [],
        [0], [math.nan], {}, {"a": None}, "NaN", [[[[1]]]], [-5, 0], {"name": 1}]


def _leaf_paths(d: Any, at: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of `d`, objects included (a whole object can be replaced too)."""
    if isinstance(d, dict):
        return [at] * bool(at) + [p for k, v in d.items() for p in _leaf_paths(v, (*at, k))]
    return [at]


def _sane(m: mf.Manifest) -> None:
    """What a loaded manifest promises the pipeline: no silent-wrong values get through."""
    spec = m.input
    assert all(isinstance(s, int) and 1 <= s <= 8192 for s in spec.size)
    assert all(math.isfinite(v) for v in (*spec.mean, *spec.std)) and min(spec.std) > 0
    assert spec.window is None or (len(spec.window) == 2 and spec.window[1] > 0)
    assert len(spec.mean) in (1, spec.channels) and len(spec.std) in (1, spec.channels)
    assert isinstance(m.options, dict) and isinstance(m.metrics, dict)
    batch = m.options.get("batch_size", 1)
    assert isinstance(batch, int) and batch >= 1
    assert m.labels and all(isinstance(label.name, str) for label in m.labels)
    assert "/" not in m.id and not m.id.startswith(".")


def test_seeded_mutations_end_in_a_clean_error_or_a_sane_manifest(tmp_path):
    """200 seeded mutations of one field each: ModelError or a manifest that passes _sane."""
    rng = random.Random(12)
    base = _shipped()
    paths = _leaf_paths(base)
    counts = {"refused": 0, "loaded": 0}
    folder = _copy(tmp_path)
    for _ in range(200):
        d = json.loads(json.dumps(base))
        _set(d, rng.choice(paths), rng.choice(POOL))
        _write(folder, d, seal=rng.random() < 0.5)
        try:
            m = mf.load_manifest(folder, verify=False)
        except ModelError as exc:
            assert exc.path and exc.reason
            counts["refused"] += 1
        else:
            _sane(m)
            counts["loaded"] += 1
    assert counts["refused"] >= 50 and counts["loaded"] >= 20, counts  # metrics are free-form


# --- the manifest's own checksum ------------------------------------------------------------

def test_an_edited_manifest_is_refused_on_open_and_listed_with_its_reason(tmp_path, caplog):
    folder = _copy(tmp_path)
    d = _shipped()
    d["input"]["std"] = [0.5]  # a valid value, not the exported one
    (folder / mf.MANIFEST).write_text(json.dumps(d, indent=2), encoding="utf-8")
    assert mf.load_manifest(folder, verify=False).input.std == (0.5,)  # listing reads it
    with pytest.raises(ModelError, match="does not match the checksum it records"):
        mf.load_manifest(folder)
    del d[mf.CHECKSUM_KEY]
    (folder / mf.MANIFEST).write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(ModelError, match="lacks its own checksum"):
        mf.load_manifest(folder)
    d["format"] = 1  # what an older MedViewer wrote: accepted, with a warning
    (folder / mf.MANIFEST).write_text(json.dumps(d), encoding="utf-8")
    with caplog.at_level("WARNING"):
        assert mf.load_manifest(folder).input.std == (0.5,)
    assert "no checksum of its own" in caplog.text


def test_reformatting_keeps_the_checksum_and_every_shipped_manifest_is_sealed(tmp_path):
    folder = _copy(tmp_path)
    d = _shipped()
    (folder / mf.MANIFEST).write_text(json.dumps(d, indent=7), encoding="utf-8")
    mf.load_manifest(folder)  # whitespace is not content
    for shipped in sorted(registry.shipped_models_dir().glob(f"*/{mf.MANIFEST}")):
        raw = json.loads(shipped.read_text())
        assert raw["format"] == mf.FORMAT and raw[mf.CHECKSUM_KEY] == mf.manifest_digest(raw)
        mf.load_manifest(shipped.parent, verify=True)


def test_the_published_schema_is_valid_and_every_shipped_manifest_meets_it():
    """An independent check with jsonschema itself, and the docs point to the schema."""
    import jsonschema

    schema = json.loads((ROOT / "medviewer/inference/manifest.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema == mf.schema()
    for shipped in registry.shipped_models_dir().glob(f"*/{mf.MANIFEST}"):
        jsonschema.validate(json.loads(shipped.read_text()), schema)
    assert "manifest.schema.json" in (ROOT / "docs/plugins.md").read_text()
    assert "inference/manifest.schema.json" in (ROOT / "pyproject.toml").read_text()


# --- the command line -----------------------------------------------------------------------

def test_infer_with_a_silently_wrong_manifest_exits_2_and_writes_nothing(tmp_path):
    """Issue 12.5: `input.std [0]` used to exit 0 with an empty SEG."""
    folder = _copy(tmp_path)
    d = _shipped()
    d["input"]["std"] = [0]
    _write(folder, d, seal=True)
    out = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "medviewer", "infer", "--model", str(folder),
                           str(tmp_path), "--out", str(out)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr
    assert "input.std[0]" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


def test_a_bad_model_in_the_store_leaves_the_others_listed(store, tmp_path, capsys):
    """Issue 12.6: a version with "metrics": "x" broke `medviewer models` for every model."""
    bad = store / LAB1 / "9.0.0"
    shutil.copytree(registry.shipped_models_dir() / LAB1, bad)
    d = _shipped()
    d["metrics"], d["version"] = "x", "9.0.0"
    _write(bad, d, seal=True)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"{LAB1} 1.0.0" in out and "metrics is wrong" in out
    assert main(["models", "--versions", LAB1]) == 0


@pytest.mark.parametrize(("field", "value"), [("options", [1, 2]), ("metrics", "x"),
                                              ("input.std", [0])])
def test_publish_refuses_a_hostile_candidate_and_the_store_stays_empty(store, tmp_path, capsys,
                                                                       field, value):
    folder = _copy(tmp_path)
    d = _shipped()
    _set(d, field, value)
    d["version"] = "1.1.0"
    _write(folder, d, seal=True)
    assert main(["models", "--publish", str(folder)]) == 2
    assert field in capsys.readouterr().err
    assert not store.exists() or not any(store.rglob(mf.MANIFEST))
    assert main(["models"]) == 0


def _candidate(tmp_path: Path, name: str = "cand") -> Path:
    """lab 1 with other weight bytes, sealed as version 1.1.0: a publishable candidate."""
    folder = _copy(tmp_path, name)
    weights = folder / mf.WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    from dataclasses import replace

    m = mf.load_manifest(folder, verify=False)
    mf.write_manifest(replace(m, version="1.1.0"), folder)
    return folder


def test_publish_refuses_a_linked_model_file(store, tmp_path, capsys):
    """A link to a private file (the 0600 one here, /etc/passwd in the issue) whose checksum
    the manifest records is refused, not copied."""
    folder = _candidate(tmp_path)
    secret = tmp_path / "secret"
    secret.write_bytes((folder / mf.WEIGHTS_FILE).read_bytes())
    secret.chmod(0o600)
    (folder / mf.WEIGHTS_FILE).unlink()
    (folder / mf.WEIGHTS_FILE).symlink_to(secret)
    mf.load_manifest(folder)  # the checksums match: only the link gives it away
    assert main(["models", "--publish", str(folder)]) == 2
    assert "symbolic link" in capsys.readouterr().err
    assert not store.exists() or not any(store.rglob("*.safetensors"))


def test_publish_copies_only_the_model_files_never_what_links_point_to(store, tmp_path):
    folder = _candidate(tmp_path)
    outside = tmp_path / "usr"
    outside.mkdir()
    (outside / "big.bin").write_bytes(b"\0" * 100_000)
    (folder / "usr").symlink_to(outside, target_is_directory=True)
    (folder / "passwd").symlink_to(outside / "big.bin")
    (folder / "notes.txt").write_text("not part of the model")
    published = versions.publish(folder)
    assert sorted(p.name for p in published.folder.iterdir()) == [
        mf.MANIFEST, mf.ONNX_FILE, mf.WEIGHTS_FILE]
    mf.load_manifest(published.folder, verify=True)


def test_publish_removes_staging_folders_of_dead_processes_only(store, tmp_path):
    parent = store / LAB1
    parent.mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        here = staging.host_tag()
        dead_dir = parent / f".1.1.0-{here}-{gone.pid}-abcd1234"
        live_dir = parent / f".1.1.0-{here}-{alive.pid}-efgh5678"
        elsewhere = parent / f".1.1.0-{int(here, 16) ^ 1:08x}-{gone.pid}-ijkl9012"
        old_elsewhere = parent / f".1.1.0-{int(here, 16) ^ 1:08x}-{gone.pid}-mnop3456"
        for d in (dead_dir, live_dir, elsewhere, old_elsewhere):
            d.mkdir()
            (d / mf.ONNX_FILE).write_bytes(b"half a model")
        two_days_ago = time.time() - 2 * 86400
        os.utime(old_elsewhere, (two_days_ago, two_days_ago))
        versions.publish(_candidate(tmp_path))
        assert not dead_dir.exists() and live_dir.exists()
        assert elsewhere.exists() and not old_elsewhere.exists()  # another machine's: by age
        assert [v.version for v in versions.list_versions(LAB1)] == ["1.0.0", "1.1.0"]
    finally:
        alive.kill()
        alive.wait()


@pytest.mark.parametrize("delay", [0.0, 0.005, 0.02, 0.05])
def test_a_killed_publish_leaves_old_or_new_and_the_next_one_cleans_up(store, tmp_path, delay):
    import signal

    folder = _candidate(tmp_path)
    code = ("from medviewer.inference import versions; print('go', flush=True); "
            f"versions.publish({str(folder)!r})")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "go"
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait()
    listed = [v.version for v in versions.list_versions(LAB1)]
    assert listed in (["1.0.0"], ["1.0.0", "1.1.0"])  # old or new, never half
    for v in versions.list_versions(LAB1):
        mf.load_manifest(v.folder, verify=True)
    if listed == ["1.0.0"]:
        versions.publish(folder)
    parent = store / LAB1
    assert not [p for p in parent.iterdir() if p.name.startswith(".") and p.is_dir()]
    assert [v.version for v in versions.list_versions(LAB1)] == ["1.0.0", "1.1.0"]


# --- export -----------------------------------------------------------------------------------

def _export_args(checkpoint: Path, *extra: str) -> list[str]:
    return ["export", str(checkpoint), "--lab", "1", "--arch", "lab1.simplenn", "--labels",
            ",".join(str(k) for k in range(10)), "--size", "8", "8", *extra]


@pytest.mark.parametrize(("extra", "words"), [
    (["--size", "0", "0"], "input.size"),
    (["--size", "-3", "8"], "input.size"),
    (["--id", "../../escape"], "cannot name a folder"),
    (["--version", "../../escape"], "cannot name a folder"),
    (["--std", "0"], "input.std"),
    (["--window", "40", "0"], "input.window"),
    (["--option", "batch_size=-1"], "options.batch_size"),
])
def test_export_refuses_bad_options_with_exit_2_and_writes_nothing(store, tmp_path, capsys,
                                                                   extra, words):
    checkpoint = registry.shipped_models_dir() / LAB1 / mf.WEIGHTS_FILE
    before = sorted(p for p in tmp_path.rglob("*"))
    assert main(_export_args(checkpoint, *extra)) == 2
    err = capsys.readouterr().err
    assert words in err and err.startswith("medviewer export: ")
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written anywhere


@pytest.mark.parametrize("content", [
    b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1, \"b\":}  ",  # a broken header
    b"\xff" * 8 + b"{",  # a header length of 2**64 - 1
    b"\x02\x00\x00\x00\x00\x00\x00\x00{}",  # no tensors
])
def test_export_refuses_a_malformed_safetensors_file(store, tmp_path, capsys, content):
    checkpoint = tmp_path / "broken.safetensors"
    checkpoint.write_bytes(content)
    assert main(_export_args(checkpoint)) == 2
    err = capsys.readouterr().err
    assert str(checkpoint) in err and "Traceback" not in err
    assert not store.exists() or not any(store.rglob(mf.MANIFEST))


def test_export_of_a_missing_checkpoint_exits_2(store, tmp_path, capsys):
    assert main(_export_args(tmp_path / "nothing.safetensors")) == 2
    assert "nothing.safetensors" in capsys.readouterr().err


# --- files that are not files -----------------------------------------------------------------

def test_a_fifo_manifest_or_model_file_is_refused_without_blocking(store, tmp_path, capsys):
    folder = store / "fifo-model" / "1.0.0"
    folder.parent.mkdir(parents=True)
    os.mkfifo(folder.parent / "pending")
    shutil.copytree(registry.shipped_models_dir() / LAB1, folder)
    (folder / mf.MANIFEST).unlink()
    os.mkfifo(folder / mf.MANIFEST)  # opening it for reading would wait for a writer forever
    with pytest.raises(ModelError, match="cannot be read"):
        mf.load_manifest(folder, verify=False)
    assert main(["models"]) == 0 and "fifo-model" in capsys.readouterr().out  # a problem row
    other = _copy(tmp_path, "fifo-onnx")
    (other / mf.ONNX_FILE).unlink()
    os.mkfifo(other / mf.ONNX_FILE)
    with pytest.raises(ModelError, match="model.onnx"):
        mf.load_manifest(other)


@pytest.mark.parametrize("content", ["[" * 100_000, '{"version": ' + "1" * 5000 + "}", "fifo",
                                     '{"version": ["1.0.0"]}', "\udcff"])
def test_a_hostile_active_pointer_falls_back_to_the_newest(store, content):
    pointer = versions.pointer_path(LAB1)
    pointer.parent.mkdir(parents=True)
    if content == "fifo":
        os.mkfifo(pointer)
    else:
        pointer.write_bytes(content.encode("utf-8", "surrogateescape"))
    assert registry.find_model(LAB1).version == "1.0.0"
    assert versions.active_problem(LAB1)  # and says why


def test_a_manifest_asking_for_a_huge_batch_is_refused(tmp_path):
    """Each value in range, the product a memory bomb: 4096 x 12 x 8192 x 8192 floats."""
    folder = _copy(tmp_path)
    d = _shipped()
    d["options"]["batch_size"], d["input"]["size"] = 4096, [8192, 8192]
    d["input"]["channels"], d["onnx_inputs"] = 12, {"image": ["batch", 12, 8192, 8192]}
    _write(folder, d, seal=True)
    with pytest.raises(ModelError, match="One batch of this model's input would take"):
        mf.load_manifest(folder)


def test_an_older_unsealed_candidate_publishes_sealed(store, tmp_path):
    folder = _candidate(tmp_path)
    d = json.loads((folder / mf.MANIFEST).read_text())
    _write(folder, d, seal=False)  # what MedViewer wrote before format 2
    published = versions.publish(folder)
    raw = json.loads((published.folder / mf.MANIFEST).read_text())
    assert raw["format"] == mf.FORMAT and raw[mf.CHECKSUM_KEY] == mf.manifest_digest(raw)
