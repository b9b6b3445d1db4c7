"""Lab 1's torch networks: SimpleNN, a fully connected classifier of 8 x 8 digits, and
MedicalCNN, the deep-learning overview's small convolutional network for digits (conv -> pool
-> conv -> pool -> fully connected) on 28 x 28 (MNIST) or 8 x 8 (scikit-learn) images."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


# --- MedicalCNN ------------------------------------------------------------------------------

MNIST_SIZE = 28


class MedicalCNN(nn.Module):
    """[Conv 3x3, ReLU, MaxPool 2] x 2 -> Flatten -> Linear, ReLU, Dropout -> Linear logits.

    `image_size`: the square input's side, a multiple of 4 (the two pools halve it twice):
    28 for MNIST, 8 for scikit-learn's digits. The head's width follows from it, so one
    network takes one size (the fully connected layer fixes it).
    """

    def __init__(self, num_classes: int = DIGITS, image_size: int = MNIST_SIZE,
                 channels: Sequence[int] = (32, 64), hidden: int = 128, dropout: float = 0.25,
                 in_channels: int = 1) -> None:
        super().__init__()
        if image_size % 4 or image_size < 4:
            raise ValueError(f"MedicalCNN takes square images whose side is a multiple of 4 "
                             f"(two 2x2 poolings), not {image_size}")
        first, second = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, first, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(first, second, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        side = image_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(second * side * side, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(image))


def build_medical_cnn(num_classes: int = DIGITS, **options) -> MedicalCNN:
    return MedicalCNN(num_classes, **options)


def cnn_options_from_weights(state: dict[str, torch.Tensor]) -> dict:
    """Classes, input channels, conv widths, hidden width and image size from the shapes.

    The head's two Linear weights are told apart by how they chain (the second takes what
    the first gives), not by name: a checkpoint aligned to other widths may swap them.
    """
    convs = [state[k] for k in ("features.0.weight", "features.3.weight") if k in state]
    linears = [v for k, v in state.items() if k.startswith("classifier.") and v.dim() == 2]
    if len(linears) == 2 and linears[1].shape[0] == linears[0].shape[1] != linears[0].shape[0]:
        linears.reverse()
    out = {"num_classes": int(linears[-1].shape[0])} if linears else {}
    if len(convs) == 2 and len(linears) == 2:
        first, second = (int(w.shape[0]) for w in convs)
        hidden, flat = (int(n) for n in linears[0].shape)
        out.update(in_channels=int(convs[0].shape[1]), channels=(first, second),
                   hidden=hidden, image_size=4 * round((flat / second) ** 0.5))
    return out


def _example_images(size: int) -> Callable[[], tuple[torch.Tensor, ...]]:
    def example() -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(0)
        return (torch.rand(2, 1, size, size, generator=g) * INK,)  # digits' 0..16 scale
    return example


INK = 16.0
_CNN = {"lab": 1, "task": "classification", "build": build_medical_cnn,
        "input_names": ("image",), "output_names": ("logits",),
        "dynamic_axes": {"image": {0: "batch"}, "logits": {0: "batch"}},
        "options_from_weights": cnn_options_from_weights,
        "cam_layers": lambda model: [model.features[3]]}  # the last convolution
MEDICAL_CNN = register(Architecture(
    name="lab1.medical_cnn", example_inputs=_example_images(MNIST_SIZE),
    description="The overview's digits CNN: conv 32, pool, conv 64, pool, FC 128 on 28x28 "
                "MNIST images (image_size=8 for scikit-learn's digits)",
    default_options={"image_size": MNIST_SIZE, "channels": (32, 64), "hidden": 128}, **_CNN))
MEDICAL_CNN_LIGHT = register(Architecture(
    name="lab1.medical_cnn_light", example_inputs=_example_images(8), full=False,
    description="MedicalCNN, light: conv 8, pool, conv 16, pool, FC 32 on 8x8 digits",
    default_options={"image_size": 8, "channels": (8, 16), "hidden": 32}, **_CNN))
