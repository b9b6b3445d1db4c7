"""The registry of named torch builders (timm's shape): every lab architecture, by name.

Each entry knows how to build the network, a tiny example input for contract tests, and the
ONNX input/output names and dynamic axes its export uses. Importing this module imports
torch; the plugins (pre/post-processing) never do.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

LAB_MODULES = tuple(f"medviewer.labs.lab{n}.models" for n in range(1, 6))


@dataclass(frozen=True)
class Architecture:
    name: str  # "lab2.resnet50"
    lab: int
    task: str  # classification | fusion | segmentation | detection
    build: Callable[..., nn.Module]  # build(num_classes=..., **options) -> module
    example_inputs: Callable[[], tuple[torch.Tensor, ...]]  # tiny, for the contract tests
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    description: str = ""
    full: bool = True  # the lab's full architecture; False: a lighter variant for demo models
    # the layers Grad-CAM / EigenCAM hook, given the built module
    cam_layers: Callable[[nn.Module], list[nn.Module]] | None = None
    default_options: dict = field(default_factory=dict)
    # build options read from a checkpoint's tensor shapes, keys already in this architecture's
    # names: {"num_classes": K, "in_channels": C, ...} (medviewer.training.importing uses it)
    options_from_weights: Callable[[dict[str, torch.Tensor]], dict] | None = None


ARCHITECTURES: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    if arch.name in ARCHITECTURES:
        raise ValueError(f"architecture {arch.name} registered twice")
    ARCHITECTURES[arch.name] = arch
    return arch


def load_all() -> dict[str, Architecture]:
    for module in LAB_MODULES:
        importlib.import_module(module)
    return ARCHITECTURES


def get(name: str) -> Architecture:
    load_all()
    try:
        return ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise KeyError(f"unknown architecture {name!r}; known: {known}") from None


def names(lab: int | None = None) -> list[str]:
    return sorted(n for n, a in load_all().items() if lab is None or a.lab == lab)
