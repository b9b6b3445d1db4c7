"""A model folder's manifest.json: what the model is, what it expects, how good it is.

A model version is a folder holding `manifest.json`, `model.onnx` and `weights.safetensors`
(the torch weights, for explanations and fine-tuning). The manifest records the sha256 of
each file; `load_manifest` checks them, so a truncated copy or a swapped file is refused with
a sentence instead of producing wrong answers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medviewer.core.atomic import write_text_atomic
from medviewer.inference.errors import ModelError

MANIFEST = "manifest.json"
ONNX_FILE = "model.onnx"
WEIGHTS_FILE = "weights.safetensors"
FORMAT = 1
TASKS = ("classification", "fusion", "segmentation", "detection")
# slice context: the current slice, previous/current/next as 3 channels, N slices centred on
# the current one ("stack:N"), or the whole series resampled to N slices ("volume:N")
CONTEXTS = ("single", "prev-current-next")
EXTRAS = ("age", "sex")


@dataclass(frozen=True)
class Label:
    name: str
    colour: str = "#ff0000"  # "#rrggbb"


@dataclass(frozen=True)
class InputSpec:
    """How a slice (or a series) becomes the model's input tensor."""

    size: tuple[int, int]  # rows, columns the image is resized to
    channels: int = 1
    context: str = "single"
    window: tuple[float, float] | None = None  # centre, width in modality units; None: min-max
    mean: tuple[float, ...] = (0.0,)  # after windowing to 0..1
    std: tuple[float, ...] = (1.0,)
    extras: tuple[str, ...] = ()  # e.g. ("age", "sex") read from PatientAge / PatientSex
    modalities: tuple[str, ...] = ()  # empty: any

    @property
    def context_slices(self) -> int:
        """How many slices one sample reads (1, 3 or N)."""
        if self.context == "single":
            return 1
        if self.context == "prev-current-next":
            return 3
        return int(self.context.split(":", 1)[1])


@dataclass(frozen=True)
class Manifest:
    id: str
    title: str
    lab: int
    plugin: str  # entry-point name in the medviewer.plugins group
    task: str
    arch: str  # architecture name in medviewer.labs.architectures
    version: str
    labels: tuple[Label, ...]
    input: InputSpec
    onnx_inputs: dict[str, list[int | str]]  # name -> shape, str for a dynamic axis
    onnx_outputs: tuple[str, ...]
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # plugin-specific settings
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    description: str = ""
    folder: Path | None = None

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]

    def path(self, name: str) -> Path:
        if self.folder is None:
            raise ModelError(None, f"The manifest of {self.id} was not loaded from a folder.")
        return self.folder / name

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("folder")
        d["format"] = FORMAT
        return d


def _validate(d: dict[str, Any], where: Path) -> None:
    missing = [k for k in ("id", "title", "lab", "plugin", "task", "arch", "version", "labels",
                           "input", "onnx_inputs", "onnx_outputs") if k not in d]
    if missing:
        raise ModelError(where, f"The manifest lacks {', '.join(missing)}; re-export the model "
                         "with `medviewer export`.")
    if not isinstance(d["input"], dict) or not isinstance(d["labels"], (list, tuple)):
        raise ModelError(where, "The manifest's input or labels are not in the expected form; "
                         "re-export the model with `medviewer export`.")
    if not isinstance(d.get("format", FORMAT), int):
        raise ModelError(where, f"The manifest's format {d['format']!r} is not a number; "
                         "re-export the model with `medviewer export`.")
    if d.get("format", FORMAT) > FORMAT:
        raise ModelError(where, f"The manifest is format {d['format']}, newer than this "
                         f"MedViewer reads ({FORMAT}); update MedViewer.")
    if d["task"] not in TASKS:
        raise ModelError(where, f"Unknown task {d['task']!r}; expected one of {', '.join(TASKS)}.")
    context = d["input"].get("context", "single")
    if not _known_context(context):
        raise ModelError(where, f"Unknown slice context {context!r} in the manifest; expected "
                         f"{', '.join(CONTEXTS)}, stack:N or volume:N (N a whole number).")
    bad = [e for e in d["input"].get("extras", ()) if e not in EXTRAS]
    if bad:
        raise ModelError(where, f"Unknown extra inputs {bad}; this MedViewer knows {EXTRAS}.")


def _known_context(context: object) -> bool:
    """'single', 'prev-current-next', or 'stack:N' / 'volume:N' with N >= 1."""
    if not isinstance(context, str):
        return False
    if context in CONTEXTS:
        return True
    kind, _, count = context.partition(":")
    return kind in ("stack", "volume") and count.isdigit() and int(count) >= 1


def manifest_from_dict(d: dict[str, Any], folder: Path | None = None) -> Manifest:
    where = folder / MANIFEST if folder else Path(MANIFEST)
    _validate(d, where)
    spec = dict(d["input"])
    for key in ("size", "window", "mean", "std", "extras", "modalities"):
        if spec.get(key) is not None:
            spec[key] = tuple(spec[key])
    try:
        return Manifest(
            id=d["id"], title=d["title"], lab=int(d["lab"]), plugin=d["plugin"], task=d["task"],
            arch=d["arch"], version=str(d["version"]),
            labels=tuple(Label(**lab) for lab in d["labels"]), input=InputSpec(**spec),
            onnx_inputs={k: list(v) for k, v in d["onnx_inputs"].items()},
            onnx_outputs=tuple(d["onnx_outputs"]), metrics=d.get("metrics", {}),
            provenance=d.get("provenance", {}), options=d.get("options", {}),
            files=d.get("files", {}), description=d.get("description", ""), folder=folder)
    except TypeError as exc:
        raise ModelError(where, f"The manifest has an unexpected field ({exc}).") from exc


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_manifest(folder: str | Path, *, verify: bool = True) -> Manifest:
    """Read and validate `folder`/manifest.json; with `verify`, check every file's sha256."""
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(folder, "This folder has no manifest.json, so it is not a model "
                         "folder; export one with `medviewer export`.") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(path, f"The manifest cannot be read ({exc}); restore the model "
                         "folder from its source.") from exc
    if not isinstance(d, dict):
        raise ModelError(path, "The manifest is not a JSON object.")
    manifest = manifest_from_dict(d, folder)
    if verify:
        verify_files(manifest)
    return manifest


def verify_files(manifest: Manifest, names: tuple[str, ...] = (ONNX_FILE, WEIGHTS_FILE)) -> None:
    """Every listed file exists and has the recorded sha256."""
    for name in names:
        path = manifest.path(name)
        expected = manifest.files.get(name)
        if not path.is_file():
            raise ModelError(path, f"{name} is missing from the model folder; copy the whole "
                             "folder again or re-export the model.")
        if expected is None:
            raise ModelError(path, f"The manifest records no checksum for {name}; re-export "
                             "the model with `medviewer export`.")
        if sha256(path) != expected:
            raise ModelError(path, f"{name} does not match the checksum in manifest.json: the "
                             "file is damaged or was replaced. Copy the folder again.")


def write_manifest(manifest: Manifest, folder: str | Path) -> Path:
    """Record the files' checksums and write manifest.json atomically."""
    folder = Path(folder)
    files = {name: sha256(folder / name) for name in (ONNX_FILE, WEIGHTS_FILE)
             if (folder / name).is_file()}
    d = manifest.to_dict()
    d["files"] = files
    return write_text_atomic(folder / MANIFEST, json.dumps(d, indent=2, sort_keys=True) + "\n")
