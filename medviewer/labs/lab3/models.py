"""Lab 3's four ways to classify a whole series from N of its slices.

Every network takes "slices" (batch, N, rows, cols), the series sample of the plugin, and
gives "logits" (batch, classes):

- single slice: a 2D network on the central slice only (the baseline the others must beat);
- early fusion: the N slices stacked as the channels of one 2D network;
- late fusion: the same 2D network on each slice, its N outputs combined by a learned
  weighted sum (softmax-normalised weight per slice position);
- 3D CNN: Conv3d / BatchNorm3d / ReLU / MaxPool3d over (batch, 1, N, rows, cols).

The full lab versions use torchvision's ResNet50 (weights=None: nothing is downloaded) and a
wide 3D CNN; the "_small" variants (a small ResNet-style backbone, a narrow 3D CNN) are what
the shipped demo models use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from medviewer.labs.architectures import Architecture, register
from medviewer.labs.pretrained import load_backbone_weights

DYNAMIC = {"slices": {0: "batch", 2: "rows", 3: "columns"}, "logits": {0: "batch"}}
SMALL_WIDTHS = (8, 16, 32, 64)


def resnet50(in_channels: int, num_classes: int,
             backbone_weights: str | Path | None = None) -> nn.Module:
    """torchvision's ResNet50, first convolution taking `in_channels`; random weights, or a
    local ImageNet file (its first convolution and classifier are kept only where they fit)."""
    from torchvision.models import resnet50 as tv_resnet50

    net = tv_resnet50(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    if backbone_weights:
        load_backbone_weights(net, backbone_weights)
    return net


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (ResNet18's block)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels))
        self.shortcut = nn.Identity() if stride == 1 and in_channels == out_channels else (
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                          nn.BatchNorm2d(out_channels)))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class SmallResNet(nn.Module):
    """A ResNet-style 2D backbone: stride-2 stem, one BasicBlock per stage, global pooling.

    Global max pooling (not ResNet's average) by default: a nodule covers ~0.1 % of a slice,
    and averaging drowns a local detector's answer in the rest of the image.
    """

    def __init__(self, in_channels: int, num_classes: int,
                 widths: Sequence[int] = SMALL_WIDTHS, pool: str = "max") -> None:
        super().__init__()
        self.pool = pool
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 2, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages, previous = [], widths[0]
        for i, width in enumerate(widths):
            stages.append(BasicBlock(previous, width, 1 if i == 0 else 2))
            previous = width
        self.layer4 = nn.Sequential(*stages)  # named like ResNet's last stage, for CAM
        self.fc = nn.Linear(previous, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.stem(x))
        return self.fc(x.amax(dim=(2, 3)) if self.pool == "max" else x.mean(dim=(2, 3)))


Backbone = Callable[[int, int], nn.Module]  # (in_channels, num_classes) -> 2D network


def small_backbone(in_channels: int, num_classes: int, pool: str = "max") -> nn.Module:
    return SmallResNet(in_channels, num_classes, pool=pool)


def small_backbone_avg(in_channels: int, num_classes: int) -> nn.Module:
    """Average pooling: early fusion learned well with it and poorly with max pooling."""
    return SmallResNet(in_channels, num_classes, pool="avg")


class SingleSlice(nn.Module):
    """A 2D network on the central slice of the sample; the other slices are ignored."""

    def __init__(self, backbone: Backbone, num_classes: int) -> None:
        super().__init__()
        self.net = backbone(1, num_classes)

    def forward(self, slices: torch.Tensor) -> torch.Tensor:
        middle = slices.shape[1] // 2
        return self.net(slices[:, middle:middle + 1])


class EarlyFusion(nn.Module):
    """The N slices enter as N channels of the first convolution."""

    def __init__(self, backbone: Backbone, num_classes: int, slices: int) -> None:
        super().__init__()
        self.net = backbone(slices, num_classes)

    def forward(self, slices: torch.Tensor) -> torch.Tensor:
        return self.net(slices)


class LateFusion(nn.Module):
    """One shared 2D network per slice; logits summed with softmax(weights) over positions."""

    def __init__(self, backbone: Backbone, num_classes: int, slices: int) -> None:
        super().__init__()
        self.net = backbone(1, num_classes)
        self.slice_weights = nn.Parameter(torch.zeros(slices))  # equal weights at the start

    def per_slice_logits(self, slices: torch.Tensor) -> torch.Tensor:
        """(batch, N, classes): what the 2D network says about each slice on its own."""
        b, n = slices.shape[:2]
        return self.net(slices.reshape(b * n, 1, *slices.shape[2:])).reshape(b, n, -1)

    def forward(self, slices: torch.Tensor) -> torch.Tensor:
        weights = self.slice_weights.softmax(dim=0)
        return (self.per_slice_logits(slices) * weights[None, :, None]).sum(dim=1)


class CNN3D(nn.Module):
    """Conv3d blocks over (batch, 1, N, rows, cols); in-plane stride first, depth pooled later.

    The first block halves rows and columns only (slices are few), the next pool in-plane,
    the last two pool all three axes; global average pooling makes any size work.
    """

    def __init__(self, num_classes: int, widths: Sequence[int] = (32, 64, 128, 256)) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv3d(1, widths[0], (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2), bias=False),
            nn.BatchNorm3d(widths[0]), nn.ReLU(inplace=True), nn.MaxPool3d((1, 2, 2))]
        for i in range(1, len(widths)):
            layers += [nn.Conv3d(widths[i - 1], widths[i], 3, padding=1, bias=False),
                       nn.BatchNorm3d(widths[i]), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool3d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, slices: torch.Tensor) -> torch.Tensor:
        x = self.features(slices.unsqueeze(1))
        return self.fc(x.mean(dim=(2, 3, 4)))


def _example(slices: int) -> Callable[[], tuple[torch.Tensor, ...]]:
    return lambda: (torch.randn(2, slices, 32, 32, generator=torch.Generator().manual_seed(0)),)


def _cam_2d(model: nn.Module) -> list[nn.Module]:
    return [model.net.layer4]


def _cam_3d(model: nn.Module) -> list[nn.Module]:
    return [model.features[-1]]


FUSIONS = {"single_slice": SingleSlice, "early_fusion": EarlyFusion, "late_fusion": LateFusion}
SUMMARIES = {"single_slice": "Single slice: {net} on the central slice of the sample.",
             "early_fusion": "Early fusion: the slices as the input channels of {net}.",
             "late_fusion": "Late fusion: {net} per slice, learned softmax-weighted sum."}
# the light 2D backbones: a per-slice detector (single, late) pools by max, early fusion by
# average (measured on the demo task: early fusion AUC 0.75 with max, 1.00 with average)
SMALL_BACKBONES = {"single_slice": (small_backbone, "a small ResNet (global max pool)"),
                   "early_fusion": (small_backbone_avg, "a small ResNet (global average pool)"),
                   "late_fusion": (small_backbone, "a small ResNet (global max pool)")}


def _fusion_builder(kind: str, full: bool, default_slices: int) -> Callable[..., nn.Module]:
    backbone = resnet50 if full else SMALL_BACKBONES[kind][0]

    def build(num_classes: int = 2, slices: int = default_slices,
              backbone_weights: str | Path | None = None) -> nn.Module:
        net = backbone
        if backbone_weights:
            if not full:
                raise ValueError("pretrained weights fit the full ResNet50 methods only")
            net = functools.partial(resnet50, backbone_weights=backbone_weights)
        if kind == "single_slice":
            return SingleSlice(net, num_classes)
        return FUSIONS[kind](net, num_classes, slices)

    return build


def _cnn3d_builder(widths: tuple[int, ...]) -> Callable[..., nn.Module]:
    def build(num_classes: int = 2, slices: int | None = None) -> nn.Module:
        return CNN3D(num_classes, widths)  # any number of slices: `slices` is accepted only

    return build


def _register_all() -> None:
    for full, suffix, net, slices in ((True, "", "ResNet50", 16),
                                      (False, "_small", "", 12)):
        for kind in FUSIONS:
            register(Architecture(
                name=f"lab3.{kind}{suffix}", lab=3, task="fusion",
                build=_fusion_builder(kind, full, slices), example_inputs=_example(slices),
                input_names=("slices",), output_names=("logits",), dynamic_axes=DYNAMIC,
                description=SUMMARIES[kind].format(net=net if full else SMALL_BACKBONES[kind][1]),
                full=full, cam_layers=_cam_2d,
                default_options={"slices": slices}))
        widths = (32, 64, 128, 256) if full else (8, 16, 32, 48)
        register(Architecture(
            name=f"lab3.cnn3d{suffix}", lab=3, task="fusion", build=_cnn3d_builder(widths),
            example_inputs=_example(slices), input_names=("slices",), output_names=("logits",),
            dynamic_axes=DYNAMIC, full=full, cam_layers=_cam_3d,
            default_options={"slices": slices},
            description=f"3D CNN: Conv3d/BatchNorm3d/ReLU/MaxPool3d, widths "
                        f"{'-'.join(map(str, widths))}."))


_register_all()
