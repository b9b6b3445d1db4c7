"""Plugins by entry point, model discovery, and open_model end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from medviewer.inference import ModelError, Plugin, registry
from medviewer.inference import manifest as mf
from medviewer.inference.pipelines import SliceClassifier

from .tiny import classifier_onnx, fake_volume, manifest_dict, write_model_folder

ROOT = Path(__file__).resolve().parents[2]

FRESH_LISTING = """
import json, sys
from medviewer.inference import list_models, list_plugins
plugins = list_plugins()
models, problems = list_models()
heavy = sorted(m for m in sys.modules if m.startswith(("medviewer.labs", "torch", "onnxruntime",
               "PySide6", "pyqtgraph", "torchvision", "timm")))
print(json.dumps({"plugins": [[p.name, p.value] for p in plugins], "heavy": heavy}))
"""


def test_listing_imports_no_model_code() -> None:
    """In a fresh interpreter, listing plugins and models leaves torch, ORT and the labs out."""
    done = subprocess.run([sys.executable, "-c", FRESH_LISTING], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    plugins = dict(report["plugins"])
    for n in range(1, 6):  # the built-in labs register like third-party plugins
        assert plugins[f"lab{n}"] == f"medviewer.labs.lab{n}.plugin:PLUGIN"


def _entry_points(*eps: metadata.EntryPoint):
    def entry_points(group: str):
        return [ep for ep in eps if ep.group == group]
    return entry_points


def test_unknown_plugin() -> None:
    with pytest.raises(ModelError, match="No plugin named 'no-such-lab' is installed"):
        registry.load_plugin("no-such-lab")


def test_plugin_that_fails_to_import(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = metadata.EntryPoint("broken-lab", "no_such_module_here.plugin:PLUGIN", registry.GROUP)
    monkeypatch.setattr(registry.metadata, "entry_points", _entry_points(ep))
    with pytest.raises(ModelError, match="'broken-lab' failed to load .*reinstall it"):
        registry.load_plugin("broken-lab")
    assert [p.name for p in registry.list_plugins()] == ["broken-lab"]


def test_entry_point_that_is_not_a_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = metadata.EntryPoint("not-a-plugin", "json:dumps", registry.GROUP)
    monkeypatch.setattr(registry.metadata, "entry_points", _entry_points(ep))
    with pytest.raises(ModelError, match="not a medviewer Plugin"):
        registry.load_plugin("not-a-plugin")


def test_plugin_without_the_manifest_pipeline(tmp_path: Path) -> None:
    plugin = Plugin(name="seg-only", lab=0, title="t", pipelines={"segmentation": SliceClassifier})
    m = mf.manifest_from_dict(manifest_dict(), tmp_path)
    with pytest.raises(ModelError, match="no 'classification' pipeline"):
        plugin.pipeline_for(m, session=None)
    m2 = mf.manifest_from_dict(manifest_dict(options={"pipeline": "segmentation"}), tmp_path)
    assert isinstance(plugin.pipeline_for(m2, session=None), SliceClassifier)


# --- discovery --------------------------------------------------------------------------------

@pytest.fixture
def model_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """MEDVIEWER_MODELS_DIR with models at depth 1 and 2, versions, and a broken manifest."""
    root = tmp_path / "store"
    onnx_bytes = classifier_onnx()[0]
    write_model_folder(root / "flat", onnx_bytes, id="t-flat")
    for version in ("1.2.0", "1.10.0", "1.9.3"):
        write_model_folder(root / "versioned" / version, onnx_bytes, id="t-versioned",
                           version=version)
    write_model_folder(root / "a" / "b" / "too-deep", onnx_bytes, id="t-too-deep")
    (root / "broken").mkdir()
    (root / "broken" / mf.MANIFEST).write_text("{ nope")
    monkeypatch.setenv(registry.MODELS_ENV, str(root))
    return root


def test_discovery_depth_versions_and_problems(model_tree: Path) -> None:
    models, problems = registry.list_models()
    ours = {m.id: m for m in models if m.id.startswith("t-")}
    assert set(ours) == {"t-flat", "t-versioned"}
    assert ours["t-versioned"].version == "1.10.0", "1.10 is newer than 1.9 (numeric order)"
    assert ours["t-versioned"].folder == model_tree / "versioned" / "1.10.0"
    assert [Path(p.path).parent.name for p in problems if "broken" in p.path] == ["broken"]


def test_odd_version_strings_do_not_crash_the_listing(tmp_path: Path) -> None:
    onnx_bytes = classifier_onnx()[0]
    for version in ("1.0.0", "1.0.0-rc1", "1.0.x", "2"):
        write_model_folder(tmp_path / version, onnx_bytes, id="t-odd", version=version)
    models, problems = registry.list_models([tmp_path])
    assert [m.version for m in models] == ["2"] and problems == []


@pytest.mark.parametrize(("older", "newer"), [
    ("1.9.3", "1.10.0"), ("1.0.0-rc1", "1.0.0"), ("0.9", "1.0.0-rc1"), ("1.0", "1.0.1"),
    ("1.0.0-alpha", "1.0.0-beta")])
def test_newest_version_wins(tmp_path: Path, older: str, newer: str) -> None:
    onnx_bytes = classifier_onnx()[0]
    for version in (older, newer):
        write_model_folder(tmp_path / version, onnx_bytes, id="t-v", version=version)
    assert [m.version for m in registry.list_models([tmp_path])[0]] == [newer]


def test_unfinished_export_folders_are_ignored(tmp_path: Path) -> None:
    """export_model stages in '.<name>-xxxx' beside the target: never a model to list."""
    write_model_folder(tmp_path / ".m-staging", classifier_onnx()[0], id="t-staging")
    assert registry.list_models([tmp_path]) == ([], [])


def test_find_model_by_id_or_folder(model_tree: Path) -> None:
    assert registry.find_model("t-versioned").version == "1.10.0"
    assert registry.find_model(str(model_tree / "versioned" / "1.2.0")).version == "1.2.0"
    with pytest.raises(ModelError, match="No model 'nope'; installed models: .*t-flat"):
        registry.find_model("nope")


# --- open_model end to end --------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """A tiny torch classifier exported by the project's own export_model."""
    torch = pytest.importorskip("torch")
    from medviewer.labs.architectures import Architecture
    from medviewer.training.export import export_model

    def build(num_classes: int = 2) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                                   torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                   torch.nn.Linear(4, num_classes))

    arch = Architecture(
        name="test.tiny-cnn", lab=0, task="classification", build=build,
        example_inputs=lambda: (torch.randn(1, 1, 8, 8),), input_names=("image",),
        output_names=("logits",), dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    torch.manual_seed(0)
    model = build()
    fields = {k: v for k, v in manifest_dict().items() if k not in ("onnx_inputs",
                                                                    "onnx_outputs")}
    root = tmp_path_factory.mktemp("exported")
    fields = {**fields, "id": "t-tiny"}
    manifest = export_model(model, arch, root / "tiny" / "1.0.0", fields)
    assert "parity_max_relative_error" not in fields["provenance"], "caller's dict changed"
    assert manifest.provenance["parity_max_relative_error"] <= 1e-4
    return root, manifest, model


@pytest.fixture
def test_plugin():
    plugin = registry.register_plugin(Plugin(name="test-plugin", lab=0, title="Tests",
                                             pipelines={"classification": SliceClassifier}))
    yield plugin
    registry._LOADED.pop("test-plugin", None)


def test_open_model_runs_like_torch(exported, test_plugin, monkeypatch) -> None:
    import torch

    root, manifest, model = exported
    monkeypatch.setenv(registry.MODELS_ENV, str(root))
    loaded = registry.open_model("t-tiny", providers=["CPUExecutionProvider"], threads=1)
    assert loaded.provider == "CPUExecutionProvider"
    assert isinstance(loaded.pipeline, SliceClassifier)
    assert manifest.onnx_inputs == {"image": ["batch", 1, 8, 8]}
    voxels = np.random.default_rng(3).integers(-1000, 500, (4, 16, 16)).astype(np.int16)
    result = loaded.run(fake_volume(voxels), [0, 3])
    from medviewer.inference import preprocess as pp

    x = torch.from_numpy(pp.prepare_slices(voxels, [0, 3], loaded.manifest.input))
    with torch.no_grad():
        expected = torch.softmax(model(x).double(), dim=1).numpy()
    np.testing.assert_allclose(result.scores, expected, rtol=1e-4, atol=1e-6)
    assert result.model_id == "t-tiny" and result.labels == ["normal", "nodule"]


def test_open_model_checks_the_files(exported, test_plugin, tmp_path: Path) -> None:
    import shutil

    root, manifest, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(manifest.folder, copy)
    (copy / mf.WEIGHTS_FILE).write_bytes(b"swapped")
    with pytest.raises(ModelError, match="checksum"):
        registry.open_model(copy, providers=["CPUExecutionProvider"])


def test_open_model_with_an_uninstalled_plugin(exported, tmp_path: Path) -> None:
    import shutil

    _, manifest, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(manifest.folder, copy)
    d = json.loads((copy / mf.MANIFEST).read_text())
    d["plugin"] = "lab-from-elsewhere"
    d[mf.CHECKSUM_KEY] = mf.manifest_digest(d)
    (copy / mf.MANIFEST).write_text(json.dumps(d))
    with pytest.raises(ModelError, match="No plugin named 'lab-from-elsewhere'"):
        registry.open_model(copy)
