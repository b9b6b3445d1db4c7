"""Build the example model folder: python -m medviewer_example.export [OUT_DIR]

The "network" is one 1x1 convolution whose weights are set, not trained: label 1 (bright)
wherever the windowed value is above the middle of the window, i.e. HU above 300 with the
window below. That keeps the example about the plugin mechanics; a real plugin trains its
network and records held-out metrics the same way.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from medviewer.labs.architectures import Architecture
from medviewer.training.export import export_model

WINDOW = (300.0, 800.0)  # centre, width in HU: 0.5 after windowing is HU 300
SIZE = (256, 256)


class BrightNet(nn.Module):
    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.head = nn.Conv2d(1, num_classes, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(image)


def build(num_classes: int = 2) -> BrightNet:
    model = BrightNet(num_classes)
    with torch.no_grad():  # logits: background 0, bright 40 * (x - 0.5)
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.weight[1, 0] = 40.0
        model.head.bias[1] = -20.0
    return model


ARCH = Architecture(
    name="example.bright", lab=0, task="segmentation", build=build,
    example_inputs=lambda: (torch.rand(1, 1, *SIZE),), input_names=("image",),
    output_names=("logits",),
    dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
    description="one 1x1 convolution, fixed weights (a threshold at HU 300)")

MANIFEST = {
    "id": "example-bright", "title": "Bright structures (example plugin)", "plugin": "example",
    "version": "1.0.0",
    "labels": [{"name": "background", "colour": "#000000"}, {"name": "bone", "colour": "#ffe080"}],
    "input": {"size": list(SIZE), "channels": 1, "context": "single", "window": list(WINDOW),
              "mean": [0.0], "std": [1.0], "extras": [], "modalities": ["CT"]},
    "metrics": {"split": "none: a fixed threshold, not trained", "n": 0},
    "provenance": {"command": "python -m medviewer_example.export", "seed": 0,
                   "pretrained": "none: fixed weights", "backbone": "1x1 convolution",
                   "data": "none", "torch": torch.__version__},
    "options": {"min_pixels": 4},
    "description": "Marks pixels brighter than HU 300 (bone, calcium, contrast) and drops specks "
                   "under 4 pixels. A worked example of a third-party plugin.",
}


def export(folder: str | Path):
    """Write the model folder (model.onnx, weights.safetensors, manifest.json) into `folder`."""
    return export_model(build(), ARCH, folder, MANIFEST)


def default_folder() -> Path:
    from medviewer.inference.registry import user_models_dir

    return user_models_dir() / MANIFEST["id"] / MANIFEST["version"]


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else default_folder()
    manifest = export(target)
    print(f"wrote {manifest.id} {manifest.version} to {manifest.folder}")
