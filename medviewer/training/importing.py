"""Bring your own model: a checkpoint or a self-contained model file -> a MedViewer model folder.

The one entry point `medviewer export` and Model > Import Model... share (issue 13):

- torch checkpoints (safetensors; `torch.save` state dicts read with weights_only=True, inside
  the usual wrappers and prefixes; a whole pickled module only when trusted) are fitted to a
  registered architecture key for key (medviewer.training.checkpoints), with a KeyReport;
- self-contained files (ONNX, TorchScript, torch.export .pt2) need no architecture
  (medviewer.training.foreign): their graph is read, converted to ONNX where needed, its inputs
  and outputs renamed to the lab's, checked on a probe input.

Both end in a parity-checked model folder written atomically (training/export.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medviewer.inference.manifest import Manifest

# what a file is, as `inspect` tells it
KINDS = ("safetensors", "state-dict", "pickled-module", "onnx", "torchscript", "exported-program")
SELF_CONTAINED = ("onnx", "torchscript", "exported-program")
LAB_TASKS = {1: "classification", 2: "classification", 3: "fusion", 4: "segmentation",
             5: "detection"}

Progress = Callable[[str, float], None]  # (what is happening, fraction done 0..1)


@dataclass
class KeyReport:
    """How a checkpoint's tensors met an architecture's."""

    total: int  # tensors the architecture expects
    loaded: int  # of those, found with the right name and shape
    missing: list[str] = field(default_factory=list)  # the model's names nothing fed
    unexpected: list[str] = field(default_factory=list)  # the checkpoint's names left over
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=list)  # (name, checkpoint shape, model shape)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # prefixes mapped (old, new)
    looks_like: list[str] = field(default_factory=list)  # other architectures that fit better

    @property
    def ok(self) -> bool:
        return self.loaded == self.total and not (self.unexpected or self.mismatched)

    def sentence(self) -> str:
        """'N of M tensors loaded; missing: ...; unexpected: ...; shape mismatches: name
        (checkpoint shape vs model shape)' and, when it applies, which architecture it looks
        like. Long lists are cut with a count of the rest."""
        raise NotImplementedError


@dataclass
class Inspection:
    """What a model file is and what MedViewer guesses about it (all editable by the user)."""

    path: Path
    kind: str  # one of KINDS
    lab: int | None = None
    task: str | None = None
    arch: str | None = None  # the best registered architecture (torch checkpoints only)
    candidates: list[tuple[str, float]] = field(default_factory=list)  # (arch, fit 0..1)
    build: dict[str, Any] = field(default_factory=dict)  # build options from tensor shapes
    num_classes: int | None = None
    inputs: dict[str, list] = field(default_factory=dict)  # graph input -> shape (str: dynamic)
    outputs: dict[str, list] = field(default_factory=dict)
    report: KeyReport | None = None
    warnings: list[str] = field(default_factory=list)


def inspect(path: str | Path, *, trust_pickle: bool = False, arch: str | None = None,
            maps: Sequence[tuple[str, str]] = ()) -> Inspection:
    """Read `path` (no code from it runs unless `trust_pickle`) and guess lab, task, arch,
    classes and build options. ModelError with a sentence when it cannot be read."""
    raise NotImplementedError


def import_model(path: str | Path, fields: dict[str, Any], out: str | Path, *,
                 arch: str | None = None, maps: Sequence[tuple[str, str]] = (),
                 trust_pickle: bool = False, force: bool = False,
                 progress: Progress | None = None) -> tuple[Manifest, Inspection]:
    """Export `path` into the model folder `out` (parity-checked, atomic).

    `fields`: the manifest fields the caller knows (id, title, version, lab, plugin, labels,
    input, options, metrics, provenance, description); labels missing -> "class 1..K" with a
    warning in the Inspection. `arch` None: guessed (torch) or not needed (self-contained).
    ModelError (its text a sentence, with the key report for torch files) when it does not fit.
    """
    raise NotImplementedError


def install(folder: str | Path, *, force: bool = False) -> Manifest:
    """Move an exported folder (e.g. the one Preview made in a temporary place) into the user
    model store as <id>/<version>, atomically; ModelError when that version exists and not
    `force`."""
    raise NotImplementedError
