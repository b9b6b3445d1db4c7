"""Plugins from the `medviewer.plugins` entry-point group, and the model folders they run.

Listing plugins reads package metadata only: no plugin module (and no model code) is
imported until a model of that plugin is opened. A plugin is an object with a name, a lab
number, a title and `pipeline_for(manifest, session)`; it may also list folders of models it
ships. Models are found in the project's `models/` folder, the user's model store and the
plugins' folders; each is a folder with manifest.json. Of a model's versions the active one
is listed (versions.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from medviewer.inference.errors import ModelError
from medviewer.inference.manifest import MANIFEST, Manifest, load_manifest
from medviewer.inference.pipeline import Pipeline
from medviewer.inference.session import ModelSession
from medviewer.inference.versions import pick_active, store_dir, version_key

GROUP = "medviewer.plugins"
MODELS_ENV = "MEDVIEWER_MODELS_DIR"  # extra model folders, os.pathsep separated


@dataclass(frozen=True)
class PluginEntry:
    """An entry point as listed, not loaded."""

    name: str
    value: str  # "package.module:attribute"
    distribution: str


@dataclass
class Plugin:
    """What an entry point of the group points to."""

    name: str
    lab: int
    title: str
    pipelines: dict[str, type[Pipeline]]  # manifest task (or options["pipeline"]) -> class
    # extra result files a lab defines, e.g. lab 1's course submission CSV:
    # file-name suffix -> writer(result, path); `medviewer infer` writes each of them
    writers: dict[str, Callable[[Any, Path], Path]] = field(default_factory=dict)

    def pipeline_for(self, manifest: Manifest, session: ModelSession) -> Pipeline:
        key = manifest.options.get("pipeline", manifest.task)
        try:
            cls = self.pipelines[key]
        except KeyError:
            raise ModelError(manifest.folder, f"Plugin {self.name} has no {key!r} pipeline; "
                             "update the plugin or re-export the model.") from None
        return cls(manifest, session)


def list_plugins() -> list[PluginEntry]:
    """Installed plugins, from metadata alone."""
    seen: dict[str, PluginEntry] = {}
    for ep in metadata.entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else ""
        seen.setdefault(ep.name, PluginEntry(ep.name, ep.value, dist))
    return sorted(seen.values(), key=lambda e: e.name)


_LOADED: dict[str, Plugin] = {}


def register_plugin(plugin: Plugin) -> Plugin:
    """Register a plugin in this process only (tests, notebooks); installed ones need not."""
    _LOADED[plugin.name] = plugin
    return plugin


def load_plugin(name: str) -> Plugin:
    """The plugin object behind an entry point (imported now, once per process)."""
    if name in _LOADED:
        return _LOADED[name]
    matches = [ep for ep in metadata.entry_points(group=GROUP) if ep.name == name]
    if not matches:
        raise ModelError(None, f"No plugin named {name!r} is installed; install the package "
                         "that provides it (pip install ...), or reinstall MedViewer.")
    try:
        plugin = matches[0].load()
    except Exception as exc:  # noqa: BLE001 - a broken third-party package
        raise ModelError(None, f"Plugin {name!r} failed to load ({exc}); reinstall it.") from exc
    if not isinstance(plugin, Plugin):
        raise ModelError(None, f"Entry point {name!r} is not a medviewer Plugin object.")
    _LOADED[name] = plugin
    return plugin


def shipped_models_dir() -> Path:
    """The project's models/ folder (beside the package in a source checkout)."""
    return Path(__file__).resolve().parents[2] / "models"


def user_models_dir() -> Path:
    """The user's model store: published and exported versions (versions.store_dir)."""
    return store_dir()


def model_roots() -> list[Path]:
    """Where model folders are looked for: models/, the user store, MEDVIEWER_MODELS_DIR."""
    roots = [shipped_models_dir(), user_models_dir()]
    return roots + [Path(p) for p in os.environ.get(MODELS_ENV, "").split(os.pathsep) if p]


def find_model_folders(roots: list[Path] | None = None) -> list[Path]:
    """Every folder holding a manifest.json up to two levels under the roots (id/version)."""
    found: list[Path] = []
    for root in roots if roots is not None else model_roots():
        if not root.is_dir():
            continue
        for manifest in sorted([*root.glob(f"*/{MANIFEST}"), *root.glob(f"*/*/{MANIFEST}")]):
            # ".name-xxxx" folders are exports still being written (or left by a crash)
            if not any(part.startswith(".") for part in manifest.relative_to(root).parts):
                found.append(manifest.parent)
    return found


def model_versions(roots: list[Path] | None = None
                   ) -> tuple[dict[str, list[Manifest]], list[ModelError]]:
    """Every version of every model id, oldest first (checksums unchecked), + problems. A
    version found in two roots is listed once: the first root wins (models/ before the store)."""
    found: dict[str, dict[str, Manifest]] = {}
    problems: list[ModelError] = []
    for folder in find_model_folders(roots):
        try:
            m = load_manifest(folder, verify=False)
        except ModelError as exc:
            problems.append(exc)
            continue
        found.setdefault(m.id, {}).setdefault(m.version, m)
    ordered = {model_id: sorted(by_version.values(), key=lambda m: version_key(m.version))
               for model_id, by_version in found.items()}
    return ordered, problems


def list_models(roots: list[Path] | None = None) -> tuple[list[Manifest], list[ModelError]]:
    """The active version of each model id (versions.py: the user's choice in Model >
    Versions, else the newest), checksums unchecked (that happens on open), + problems."""
    grouped, problems = model_versions(roots)
    active: list[Manifest] = []
    for model_id, manifests in grouped.items():
        manifest, problem = pick_active(model_id, manifests)
        active.append(manifest)
        if problem is not None:
            problems.append(problem)
    return sorted(active, key=lambda m: (m.lab, m.id)), problems


def find_model(model_id: str, roots: list[Path] | None = None) -> Manifest:
    """A model by id (its active version) or by folder path."""
    if Path(model_id).is_dir():
        return load_manifest(model_id, verify=False)
    models, _ = list_models(roots)
    for m in models:
        if m.id == model_id:
            return m
    known = ", ".join(m.id for m in models) or "none"
    raise ModelError(None, f"No model {model_id!r}; installed models: {known}.")


@dataclass
class LoadedModel:
    manifest: Manifest
    session: ModelSession
    pipeline: Pipeline

    @property
    def provider(self) -> str:
        return self.session.provider

    def run(self, volume: Any, slices: list[int] | None = None, **kw: Any) -> Any:
        return self.pipeline.run(volume, slices, **kw)


def open_model(model: str | Path | Manifest, providers: list[str] | None = None,
               threads: int | None = None, backend: str | None = None) -> LoadedModel:
    """Verify the files, load the plugin, open the session: a model ready to run.
    `backend` ('openvino', 'int8', ...; see inference.backends) overrides the manifest's."""
    manifest = model if isinstance(model, Manifest) else find_model(str(model))
    manifest = load_manifest(manifest.folder, verify=True)
    plugin = load_plugin(manifest.plugin)
    session = ModelSession(manifest, providers, threads, backend)
    return LoadedModel(manifest, session, plugin.pipeline_for(manifest, session))
