"""Lab 1's torch network: SimpleNN, a fully connected classifier of 8 x 8 digits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medviewer.labs.architectures import Architecture, register

PIXELS = 64  # 8 x 8 digit, flattened
DIGITS = 10


class SimpleNN(nn.Module):
    """64 -> [Linear, BatchNorm1d, ReLU, Dropout] per hidden layer -> 10 logits."""

    def __init__(self, num_classes: int = DIGITS, hidden: Sequence[int] = (128, 64),
                 dropout: float = 0.2, in_features: int = PIXELS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU(inplace=True),
                       nn.Dropout(dropout)]
            width = size
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(image))


def build_simplenn(num_classes: int = DIGITS, **options) -> SimpleNN:
    return SimpleNN(num_classes, **options)


def options_from_weights(state: dict[str, torch.Tensor]) -> dict:
    """Classes, input width and hidden widths from a checkpoint's Linear weights, in order."""
    linears = sorted((int(k.split(".")[1]), v) for k, v in state.items()
                     if k.startswith("features.") and k.endswith(".weight") and v.dim() == 2)
    out = {"num_classes": int(state["classifier.weight"].shape[0])}
    if linears:
        out["in_features"] = int(linears[0][1].shape[1])
        out["hidden"] = tuple(int(w.shape[0]) for _, w in linears)
    return out


def _example_digits() -> tuple[torch.Tensor, ...]:
    # two rows: BatchNorm1d is in eval mode for export, but a batch of one hides batch bugs
    return (torch.rand(2, PIXELS, generator=torch.Generator().manual_seed(0)) * 16,)


SIMPLENN = register(Architecture(
    name="lab1.simplenn", lab=1, task="classification", build=build_simplenn,
    example_inputs=_example_digits, input_names=("image",), output_names=("logits",),
    dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
    description="Fully connected SimpleNN (Linear, BatchNorm1d, ReLU, Dropout) on 8x8 digits",
    default_options={"hidden": (128, 64), "dropout": 0.2},
    options_from_weights=options_from_weights))
