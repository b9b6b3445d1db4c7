"""A model folder's manifest.json: what the model is, what it expects, how good it is.

A model version is a folder holding `manifest.json`, `model.onnx` and `weights.safetensors`
(the torch weights, for explanations and fine-tuning; absent from a model imported from an
ONNX, TorchScript or .pt2 file, whose manifest then records none). Every field is checked
against `manifest.schema.json` (types and ranges; docs/plugins.md publishes it) on every load,
so a manifest that would make a model silently wrong (a std of 0, a window of width 0, a batch
size of -1, NaN anywhere) is refused with a sentence naming the field. The manifest records
the sha256 of each file and, since format 2, of itself (`manifest_sha256`, over its canonical
JSON without that field); opening a model (`verify`) checks them all, so a truncated copy, a
swapped file or an edited manifest is refused instead of producing wrong answers.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from medviewer.core.atomic import write_text_atomic
from medviewer.core.paths import component_problem, open_regular
from medviewer.inference.errors import ModelError

MANIFEST = "manifest.json"
ONNX_FILE = "model.onnx"
WEIGHTS_FILE = "weights.safetensors"
SCHEMA_FILE = "manifest.schema.json"
CHECKSUM_KEY = "manifest_sha256"
FORMAT = 2  # 2: the manifest carries its own checksum; 1 (or no "format"): older, without
TASKS = ("classification", "fusion", "segmentation", "detection")
# slice context: the current slice, previous/current/next as 3 channels, N slices centred on
# the current one ("stack:N"), or the whole series resampled to N slices ("volume:N")
CONTEXTS = ("single", "prev-current-next")
EXTRAS = ("age", "sex")
MAX_DEPTH = 32  # nesting of the manifest's JSON (metrics and provenance are free-form)
MAX_BYTES = 16 << 20  # a manifest is a few kilobytes; anything this big is not one
MAX_BATCH_BYTES = 2 << 30  # one batch of float32 input: batch x channels x rows x columns

log = logging.getLogger(__name__)


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


EXTERNAL_ARCH = "external."  # an imported ONNX / TorchScript / .pt2 model's arch prefix
EXTERNAL_FILES = {"external.onnx": "an ONNX file", "external.torchscript": "a TorchScript file",
                  "external.exported-program": "a torch.export (.pt2) file"}


@dataclass(frozen=True)
class Manifest:
    id: str
    title: str
    lab: int
    plugin: str  # entry-point name in the medviewer.plugins group
    task: str
    arch: str  # architecture name in medviewer.labs.architectures, or external.* (below)
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

    @property
    def external(self) -> bool:
        """Imported from a self-contained file (ONNX, TorchScript, .pt2): no registered
        architecture rebuilds it, so no class activation map and no retraining."""
        return self.arch.startswith(EXTERNAL_ARCH)

    def path(self, name: str) -> Path:
        if self.folder is None:
            raise ModelError(None, f"The manifest of {self.id} was not loaded from a folder.")
        return self.folder / name

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("folder")
        d["format"] = FORMAT
        return d


def external_problem(manifest: Manifest, purpose: str) -> str | None:
    """A sentence when `manifest` is an imported self-contained model (no torch layers):
    `purpose` "cam" (a class activation map) or "train"; None for a registered architecture."""
    if not manifest.arch.startswith(EXTERNAL_ARCH):  # any manifest-like object
        return None
    what = ("has no torch layers for a class activation map" if purpose == "cam"
            else "cannot be retrained in MedViewer")
    return (f"{manifest.title} was imported from "
            f"{EXTERNAL_FILES.get(manifest.arch, 'a model file')}: it {what}. Import a "
            "checkpoint of a registered architecture (medviewer export CHECKPOINT --arch ...) "
            "for that.")


# ----------------------------------------------------------------------------- validation
@functools.cache
def schema() -> dict[str, Any]:
    """The manifest's JSON Schema (draft 2020-12), shipped beside this module."""
    return json.loads(resources.files(__package__).joinpath(SCHEMA_FILE).read_text("utf-8"))


@functools.cache
def _validator() -> Any:
    import jsonschema

    base = jsonschema.Draft202012Validator  # + tuples as arrays: Manifest.to_dict keeps them
    checker = base.TYPE_CHECKER.redefine(
        "array", lambda _checker, value: isinstance(value, (list, tuple)))
    return jsonschema.validators.extend(base, type_checker=checker)(schema())


def validate(d: Any, where: Path) -> None:
    """Every field's type and range (the schema), finite numbers, shallow nesting: one
    ModelError naming the first wrong field, else nothing."""
    if not isinstance(d, dict):
        raise ModelError(where, "The manifest is not a JSON object.")
    missing = [k for k in schema()["required"] if k not in d]
    if missing:
        raise ModelError(where, f"The manifest lacks {', '.join(missing)}; re-export the model "
                         "with `medviewer export`.")
    fmt = d.get("format", 1)
    if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > FORMAT:
        raise ModelError(where, f"The manifest is format {fmt}, newer than this MedViewer "
                         f"reads ({FORMAT}); update MedViewer.")
    _check_plain(d, where)
    for key in ("id", "version"):  # each names a folder of the model store
        problem = component_problem(d[key]) if isinstance(d[key], str) else None
        if problem is not None:
            raise ModelError(where, f"The manifest's {key} {d[key][:100]!r} cannot name a "
                             f"folder: {problem}. Re-export the model with another one.")
    from jsonschema.exceptions import best_match

    error = best_match(_validator().iter_errors(d))
    if error is not None:
        raise ModelError(where, _sentence(error))
    spec = d["input"]
    for key in ("mean", "std"):
        values = spec.get(key, [0.0])
        if len(values) not in (1, spec.get("channels", 1)):
            raise ModelError(where, f"The manifest's input.{key} has {len(values)} values for "
                             f"{spec.get('channels', 1)} channels; give one, or one per "
                             "channel, and re-export the model.")
    batch = d.get("options", {}).get("batch_size", 1)
    size = 4 * batch * spec.get("channels", 1) * spec["size"][0] * spec["size"][1]
    if size > MAX_BATCH_BYTES:
        raise ModelError(where, f"One batch of this model's input would take {size / 2**30:.0f} "
                         f"GiB (options.batch_size x input.channels x input.size x 4 bytes; at "
                         f"most {MAX_BATCH_BYTES >> 30} GiB); fix the manifest or re-export.")


def _check_plain(d: dict[str, Any], where: Path) -> None:
    """No NaN or Infinity (JSON has none; Python's parser lets them in), no deep nesting."""
    pending: list[tuple[Any, str, int]] = [(d, "", 0)]
    while pending:
        value, at, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise ModelError(where, f"The manifest nests deeper than {MAX_DEPTH} levels (at "
                             f"{at[:200]}); it is not one MedViewer wrote. Re-export the model.")
        if isinstance(value, float) and not math.isfinite(value):
            raise ModelError(where, f"The manifest's {at} is {value}; every number must be "
                             "finite (no NaN or Infinity). Fix it or re-export the model.")
        if isinstance(value, dict):
            pending += [(v, f"{at}.{k}" if at else str(k), depth + 1) for k, v in value.items()]
        elif isinstance(value, (list, tuple)):
            pending += [(v, f"{at}[{i}]", depth + 1) for i, v in enumerate(value)]


def _sentence(error: Any) -> str:
    """A schema error as a sentence: the field, what is wrong, the rule when the schema says."""
    at = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    field_name = at.lstrip(".") or "top level"
    what = error.message if len(error.message) <= 300 else error.message[:300] + "..."
    if error.validator == "additionalProperties":
        what = f"unexpected field ({what})"
    rule = error.schema.get("description") if isinstance(error.schema, dict) else None
    return (f"The manifest's {field_name} is wrong: {what}" + (f" (expected: {rule})" if rule
            else "") + ". Fix it or re-export the model with `medviewer export`.")


def manifest_from_dict(d: dict[str, Any], folder: Path | None = None) -> Manifest:
    where = folder / MANIFEST if folder else Path(MANIFEST)
    validate(d, where)
    spec = dict(d["input"])
    for key in ("size", "window", "mean", "std", "extras", "modalities"):
        if spec.get(key) is not None:
            spec[key] = tuple(spec[key])
    spec["size"] = tuple(int(s) for s in spec["size"])  # the schema lets 8.0 pass as 8
    spec["channels"] = int(spec.get("channels", 1))
    return Manifest(
        id=d["id"], title=d["title"], lab=int(d["lab"]), plugin=d["plugin"], task=d["task"],
        arch=d["arch"], version=d["version"],
        labels=tuple(Label(**lab) for lab in d["labels"]), input=InputSpec(**spec),
        onnx_inputs={k: list(v) for k, v in d["onnx_inputs"].items()},
        onnx_outputs=tuple(d["onnx_outputs"]), metrics=d.get("metrics", {}),
        provenance=d.get("provenance", {}), options=d.get("options", {}),
        files=d.get("files", {}), description=d.get("description", ""), folder=folder)


# ----------------------------------------------------------------------------- checksums
def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open_regular(path) as f:  # never blocks on a FIFO or a kernel file
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_digest(d: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON (keys sorted, no spaces) without its own
    checksum: re-indenting the file keeps it, changing any value does not."""
    body = {k: v for k, v in d.items() if k != CHECKSUM_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read(path: Path) -> Any:
    folder = path.parent
    try:
        with open_regular(path) as f:  # a FIFO or /proc file named manifest.json never blocks
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise ModelError(path, f"The manifest is over {MAX_BYTES >> 20} MB, far too big "
                             "for a manifest; restore the model folder from its source.")
        return json.loads(data.decode("utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(folder, "This folder has no manifest.json, so it is not a model "
                         "folder; export one with `medviewer export`.") from exc
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = "it nests too deep" if isinstance(exc, RecursionError) else str(exc)[:300]
        raise ModelError(path, f"The manifest cannot be read ({reason}); restore the model "
                         "folder from its source.") from exc


def load_manifest(folder: str | Path, *, verify: bool = True) -> Manifest:
    """Read and validate `folder`/manifest.json; with `verify`, check the manifest's own
    checksum and every file's sha256."""
    folder = Path(folder)
    path = folder / MANIFEST
    d = _read(path)
    manifest = manifest_from_dict(d, folder)
    if verify:
        verify_manifest(d, path)
        verify_files(manifest)
    return manifest


def verify_manifest(d: dict[str, Any], path: Path) -> None:
    """A format-2 manifest matches its own checksum; a format-1 one (an older MedViewer's,
    already schema-checked) is accepted with a logged warning."""
    if d.get("format", 1) < 2:
        log.warning("%s: written by an older MedViewer, this manifest has no checksum of its "
                    "own; its fields were checked. Re-export or publish the model to add one.",
                    path)
        return
    if CHECKSUM_KEY not in d:
        raise ModelError(path, f"The manifest lacks its own checksum ({CHECKSUM_KEY}), which "
                         "format 2 always has: it was edited. Copy the folder again or "
                         "re-export the model.")
    if manifest_digest(d) != d[CHECKSUM_KEY]:
        raise ModelError(path, "manifest.json does not match the checksum it records "
                         f"({CHECKSUM_KEY}): it was edited or damaged after export. Copy the "
                         "folder again or re-export the model.")


def verify_files(manifest: Manifest, names: tuple[str, ...] | None = None) -> None:
    """Every listed file exists and has the recorded sha256; by default model.onnx and the
    weights when the manifest records them (its own checksum keeps that record honest)."""
    if names is None:
        names = (ONNX_FILE, *(n for n in (WEIGHTS_FILE,) if n in manifest.files))
    for name in names:
        path = manifest.path(name)
        expected = manifest.files.get(name)
        if not path.is_file():
            raise ModelError(path, f"{name} is missing from the model folder; copy the whole "
                             "folder again or re-export the model.")
        if expected is None:
            raise ModelError(path, f"The manifest records no checksum for {name}; re-export "
                             "the model with `medviewer export`.")
        try:
            actual = sha256(path)
        except OSError as exc:  # unreadable, or a kernel file behind a link (core.paths)
            reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
            raise ModelError(path, f"{name} cannot be read ({reason}); copy the whole folder "
                             "again or re-export the model.") from exc
        if actual != expected:
            raise ModelError(path, f"{name} does not match the checksum in manifest.json: the "
                             "file is damaged or was replaced. Copy the folder again.")


def write_manifest(manifest: Manifest, folder: str | Path) -> Path:
    """Validate, record the files' checksums and the manifest's own, write it atomically."""
    folder = Path(folder)
    files = {name: sha256(folder / name) for name in (ONNX_FILE, WEIGHTS_FILE)
             if (folder / name).is_file()}
    d = {**manifest.to_dict(), "files": files}
    _check_plain(d, folder / MANIFEST)
    d = json.loads(json.dumps(d))  # tuples -> lists: what a reader will see
    validate(d, folder / MANIFEST)
    d[CHECKSUM_KEY] = manifest_digest(d)
    return write_text_atomic(folder / MANIFEST, json.dumps(d, indent=2, sort_keys=True) + "\n")
