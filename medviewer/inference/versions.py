"""Model versions: every version of a model id, which one is active, publishing, rollback.

The shipped `models/` folder holds the first version of each model and is never written.
Versions the user publishes (a retrained candidate's "Use this version") are copied into the
user's model store, `<data_dir>/models/<id>/<version>/`, and `<data_dir>/models/<id>/active.json`
names the version the viewer runs. Without that pointer the newest version is active (what the
registry always did). A pointer naming a version that is no longer installed is not followed:
the newest version runs and the reason is reported (`active_problem`, and a problem in
`registry.list_models`), so a deleted folder never leaves a model unusable.

Publishing never overwrites: a candidate is verified (schema and checksums), its two model
files (regular files only: a symbolic link in a candidate is refused, never followed) are
copied into a hidden staging folder of the store (staging.py; the registry ignores dot folders)
beside a freshly written manifest, and the folder is renamed into place. Staging folders a
killed publish left behind are removed by the next publish.
A candidate whose files are identical to an installed version is refused (it is already
published); a different candidate whose version number is taken (two runs trained from the same
baseline, or a scratch run numbered 1.0.0) is published under `next_version` instead, its
manifest saying which number it was exported with (provenance "candidate_version").
No torch, no Qt.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from medviewer.core.atomic import shareable_mode, write_text_atomic
from medviewer.core.paths import component_problem, kind_problem, open_regular
from medviewer.inference.errors import ModelError
from medviewer.inference.manifest import (
    MANIFEST,
    ONNX_FILE,
    WEIGHTS_FILE,
    Manifest,
    load_manifest,
    write_manifest,
)
from medviewer.inference.staging import make_staging, remove_stale

POINTER = "active.json"
FIRST_VERSION = "1.0.0"
COPY_CHUNK = 1 << 20
ORIGINS = ("shipped", "user", "other")  # models/, the user store, a MEDVIEWER_MODELS_DIR root


@dataclass(frozen=True)
class ModelVersion:
    """One installed version of a model id."""

    version: str
    folder: Path
    manifest: Manifest
    shipped: bool  # in the read-only models/ folder
    active: bool  # the version the viewer runs
    origin: str = "user"  # one of ORIGINS


def version_key(version: str) -> tuple:
    """Numeric parts compare as numbers (1.10 > 1.9), text parts below them, and a release
    above its pre-releases (1.0.0 > 1.0.0-rc1); never a str-vs-int comparison."""
    parts = version.replace("-", ".").split(".")
    key = [(2, int(p), "") if p.isdigit() else (0, 0, p) for p in parts]
    return (*key, (1, 0, ""))


def store_dir() -> Path:
    """The user's model store (published versions and the active pointers)."""
    from medviewer.core.userdata import data_dir

    return data_dir() / "models"


def pointer_path(model_id: str) -> Path:
    return store_dir() / _checked_name(model_id, "model id") / POINTER


def _checked_name(name: str, what: str) -> str:
    """`name` as one folder name in the store (ids and versions come from files)."""
    problem = component_problem(name)
    if problem is not None:
        raise ModelError(None, f"The {what} {name!r} cannot name a folder: {problem}. "
                         "Re-export the model with another one.")
    return name


# ----------------------------------------------------------------------------- the pointer
def read_pointer(model_id: str) -> tuple[str | None, ModelError | None]:
    """The version active.json names (None: no pointer), or why it could not be read."""
    if component_problem(model_id) is not None:
        return None, None  # such an id can never have a pointer (set_active refuses it)
    path = pointer_path(model_id)
    try:
        with open_regular(path) as f:  # a FIFO put in its place never blocks the listing
            d = json.loads(f.read(1 << 16).decode("utf-8"))
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: JSON, UTF-8, digits
        reason = "it nests too deep" if isinstance(exc, RecursionError) else str(exc)[:200]
        return None, ModelError(path, f"The choice of active version cannot be read ({reason}); "
                                "the newest version is used. Choose one in Model > Versions.")
    version = d.get("version") if isinstance(d, dict) else None
    if not isinstance(version, str):
        return None, ModelError(path, "The choice of active version names no version; the "
                                "newest version is used. Choose one in Model > Versions.")
    return version, None


def pick_active(model_id: str, manifests: list[Manifest]) -> tuple[Manifest, ModelError | None]:
    """The active one of a model's versions (oldest first, not empty), and a problem when the
    pointer could not be followed (the newest is used then)."""
    newest = manifests[-1]
    version, problem = read_pointer(model_id)
    if version is None:
        return newest, problem
    for manifest in manifests:
        if manifest.version == version:
            return manifest, None
    return newest, ModelError(pointer_path(model_id), f"Version {version} of {model_id} was "
                              f"chosen but is no longer installed; using the newest, "
                              f"{newest.version}. Choose a version in Model > Versions.")


# ----------------------------------------------------------------------------- listing
def list_versions(model_id: str, roots: list[Path] | None = None) -> list[ModelVersion]:
    """Every installed version of `model_id`, oldest first ([] when none)."""
    from medviewer.inference import registry

    manifests = registry.model_versions(roots)[0].get(model_id, [])
    if not manifests:
        return []
    active, _ = pick_active(model_id, manifests)
    return [_version(m, m is active) for m in manifests]


def _version(manifest: Manifest, active: bool) -> ModelVersion:
    from medviewer.inference.registry import shipped_models_dir

    folder = Path(manifest.folder or ".")
    if folder.is_relative_to(shipped_models_dir()):
        origin = "shipped"
    elif folder.is_relative_to(store_dir()):
        origin = "user"
    else:
        origin = "other"
    return ModelVersion(manifest.version, folder, manifest, origin == "shipped", active, origin)


def _versions_or_error(model_id: str, roots: list[Path] | None) -> list[ModelVersion]:
    versions = list_versions(model_id, roots)
    if not versions:
        raise ModelError(None, f"No model {model_id!r} is installed.")
    return versions


def active_version(model_id: str, roots: list[Path] | None = None) -> Manifest:
    """The manifest of the version the viewer runs: the pointer's, else the newest."""
    return next(v.manifest for v in _versions_or_error(model_id, roots) if v.active)


def active_problem(model_id: str, roots: list[Path] | None = None) -> str:
    """Why the pointer of `model_id` is not followed ('' when it is, or when there is none)."""
    from medviewer.inference import registry

    manifests = registry.model_versions(roots)[0].get(model_id, [])
    if not manifests:
        return ""
    _, problem = pick_active(model_id, manifests)
    return problem.reason if problem else ""


def next_version(model_id: str, roots: list[Path] | None = None) -> str:
    """A free version above every installed one: 1.0.0 -> 1.1.0 -> 1.2.0 (1.0.0: none)."""
    taken = [v.version for v in list_versions(model_id, roots)]
    if not taken:
        return FIRST_VERSION
    major, minor = max(_major_minor(v) for v in taken)
    return f"{major}.{minor + 1}.0"


def _major_minor(version: str) -> tuple[int, int]:
    match = re.match(r"v?(\d+)(?:\.(\d+))?", version)
    return (int(match[1]), int(match[2] or 0)) if match else (0, 0)


# ----------------------------------------------------------------------------- changing
def set_active(model_id: str, version: str, roots: list[Path] | None = None) -> Manifest:
    """Make `version` the one the viewer runs (roll back or forward); its files are checked
    first, so a damaged version is refused now rather than at the next run."""
    versions = _versions_or_error(model_id, roots)
    chosen = next((v for v in versions if v.version == version), None)
    if chosen is None:
        known = ", ".join(v.version for v in versions)
        raise ModelError(None, f"{model_id} has no version {version}; installed: {known}.")
    manifest = load_manifest(chosen.folder, verify=True)
    pointer = {"model": model_id, "version": version,
               "chosen": datetime.now(UTC).isoformat(timespec="seconds")}
    write_text_atomic(pointer_path(model_id), json.dumps(pointer, indent=2) + "\n")
    return manifest


def publish(candidate_folder: str | Path) -> Manifest:
    """Copy a verified candidate model folder into the user's store as a new version of its
    model and make it active. Returns the published manifest (its folder in the store)."""
    _refuse_links(Path(candidate_folder))
    candidate = load_manifest(candidate_folder, verify=True)
    _checked_name(candidate.id, "model id")
    versions = list_versions(candidate.id)
    for installed in versions:
        if candidate.files and installed.manifest.files == candidate.files:
            raise ModelError(candidate_folder, f"This model is already installed as "
                             f"{candidate.id} {installed.version}; choose that version in "
                             "Model > Versions instead of publishing it again.")
    taken = {v.version for v in versions}
    version = candidate.version if candidate.version not in taken else next_version(candidate.id)
    folder = _copy_into_store(candidate, _checked_name(version, "version"))
    set_active(candidate.id, version)
    return load_manifest(folder, verify=False)


def _refuse_links(folder: Path) -> None:
    """The manifest and the model files must be regular files of the candidate folder: a link
    could copy any file of this machine into the store."""
    for name in (MANIFEST, ONNX_FILE, WEIGHTS_FILE):
        path = folder / name
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue  # load_manifest says what is missing
        except OSError as exc:
            raise ModelError(path, f"The candidate's file cannot be read ({exc.strerror}).") \
                from exc
        if not stat.S_ISREG(mode):
            kind = kind_problem(mode) or "a folder"
            raise ModelError(path, f"{name} in the candidate is {kind}, not a file of its own; "
                             "a model folder holds its own files, so it is not published. "
                             "Export the model again.")


def _copy_into_store(candidate: Manifest, version: str) -> Path:
    """Stage in a hidden folder beside the target, verify the copy, rename it into place."""
    parent = store_dir() / candidate.id
    target = parent / version
    if target.exists():
        raise ModelError(target, "A folder for this version is already in your model store "
                         "but holds no readable model; move it away and publish again.")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        remove_stale(parent)
        staging = make_staging(parent, version)
    except OSError as exc:
        raise ModelError(parent, f"Your model store cannot be written ({exc}); check the "
                         "folder's permissions and free space.") from exc
    try:
        _fill(staging, candidate, version)
        os.rename(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelError(target, f"The model could not be copied into your model store "
                         f"({exc}); check free space and publish again.") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _fill(staging: Path, candidate: Manifest, version: str) -> None:
    """The two model files (never through a link) and a manifest written from the validated
    one (with its own checksum, whatever the candidate's format)."""
    os.chmod(staging, shareable_mode(0o777))  # mkdtemp's 0700 would hide it from other users
    source = Path(candidate.folder or ".")
    for name in (ONNX_FILE, WEIGHTS_FILE):
        if name == ONNX_FILE or name in candidate.files:  # no weights: an imported ONNX model
            _copy_regular(source / name, staging / name)
    provenance = candidate.provenance
    if version != candidate.version:
        provenance = {**candidate.provenance, "candidate_version": candidate.version}
    write_manifest(replace(candidate, version=version, provenance=provenance), staging)
    load_manifest(staging, verify=True)  # the copy is whole before anyone can list it


def _copy_regular(source: Path, target: Path) -> None:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(source, flags)
    with os.fdopen(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            raise ModelError(source, f"{source.name} in the candidate is not a regular file; "
                             "export the model again.")
        with open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, COPY_CHUNK)
            dst.flush()
            os.fsync(dst.fileno())
    os.chmod(target, shareable_mode())
