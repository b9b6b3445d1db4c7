"""Lab 3's four ways to classify a whole series from N of its slices.

Every network takes "slices" (batch, N, rows, cols), the series sample of the plugin, and
gives "logits" (batch, classes):

- single slice: a 2D network on the central slice only (the baseline the others must beat);
- early fusion: the N slices stacked as the channels of one 2D network;
- late fusion: the same 2D network on each slice, its N outputs combined by a learned
  weighted sum (softmax-normalised weight per slice position);
- 3D CNN: Conv3d / BatchNorm3d / ReLU / MaxPool3d over (batch, 1, N, rows, cols).

The full lab versions are the course's modules, key for key, so its checkpoints load as they
are: single slice and early fusion are a torchvision ResNet50 itself (conv1 taking 1 or 3
channels, or the N slices; fc K classes: keys conv1.weight ... fc.bias), late fusion is N
separate torchvision ResNet50s (`nets.i.*`) and their learned weights (`weights`, N values,
a plain weighted sum of the nets' logits), and a wide 3D CNN. Nothing is downloaded
(weights=None). The "_small" variants (a small ResNet-style backbone shared by the slices,
a narrow 3D CNN) are what the shipped demo models use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from medviewer.labs.architectures import Architecture, register
from medviewer.labs.pretrained import load_backbone_weights

DYNAMIC = {"slices": {0: "batch", 2: "rows", 3: "columns"}, "logits": {0: "batch"}}
SMALL_WIDTHS = (8, 16, 32, 64)


def _grey_to(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(batch, 1, rows, cols) repeated to a network's input channels (3: an RGB ResNet)."""
    return x if channels == 1 else x.expand(-1, channels, -1, -1)


class ResNet50Slices(ResNet):
    """Single slice / early fusion: torchvision's ResNet50 itself (its keys, conv1.weight ...
    fc.bias), conv1 taking `in_channels`. Single slice: the central slice, repeated when
    conv1 takes 3 channels; early fusion: the N slices as conv1's N channels."""

    def __init__(self, in_channels: int, num_classes: int, single: bool,
                 backbone_weights: str | Path | None = None) -> None:
        super().__init__(Bottleneck, [3, 4, 6, 3], num_classes=num_classes)
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        if backbone_weights:  # conv1 and fc are kept only where they fit
            load_backbone_weights(self, backbone_weights)
        self.single = single
        self.in_channels = in_channels

    def forward(self, slices: torch.Tensor) -> torch.Tensor:
        if self.single:
            middle = slices.shape[1] // 2
            slices = _grey_to(slices[:, middle:middle + 1], self.in_channels)
        return super().forward(slices)


class SeparateLateFusion(nn.Module):
    """The course's late fusion: N separate ResNet50s, net i on slice i, their logits summed
    with N learned weights (`weighting` "sum": as they are, starting at 1/N; "softmax":
    softmax-normalised). conv1 takes 1 channel, or 3 (the slice repeated)."""

    def __init__(self, num_classes: int, slices: int, slice_channels: int = 1,
                 weighting: str = "sum", backbone_weights: str | Path | None = None) -> None:
        super().__init__()
        if weighting not in ("sum", "softmax"):
            raise ValueError(f"weighting is 'sum' or 'softmax', not {weighting!r}")
        self.nets = nn.ModuleList(
            [ResNet50Slices(slice_channels, num_classes, True, backbone_weights)
             for _ in range(slices)])
        self.weights = nn.Parameter(torch.full((slices,), 1.0 / slices))
        self.weighting = weighting

    def forward(self, slices: torch.Tensor) -> torch.Tensor:
        w = self.weights.softmax(dim=0) if self.weighting == "softmax" else self.weights
        out = [w[i] * net(slices[:, i:i + 1]) for i, net in enumerate(self.nets)]
        return torch.stack(out, dim=0).sum(dim=0)


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
    if isinstance(model, SeparateLateFusion):  # each net's map, weighted by its gradient
        return [net.layer4 for net in model.nets]
    return [getattr(model, "net", model).layer4]


def _cam_3d(model: nn.Module) -> list[nn.Module]:
    return [model.features[-1]]


FUSIONS = {"single_slice": SingleSlice, "early_fusion": EarlyFusion, "late_fusion": LateFusion}
SUMMARIES = {"single_slice": "Single slice: {net} on the central slice of the sample.",
             "early_fusion": "Early fusion: the slices as the input channels of {net}.",
             "late_fusion": "Late fusion: {net} per slice, learned softmax-weighted sum."}
FULL_SUMMARIES = {
    "single_slice": "Single slice: torchvision ResNet50 (conv1 1 or 3 channels) on the central "
                    "slice of the sample.",
    "early_fusion": "Early fusion: the slices as the input channels of torchvision ResNet50.",
    "late_fusion": "Late fusion: N separate torchvision ResNet50s, one per slice, their logits "
                   "combined by a learned weighted sum."}
# the light 2D backbones: a per-slice detector (single, late) pools by max, early fusion by
# average (measured on the demo task: early fusion AUC 0.75 with max, 1.00 with average)
SMALL_BACKBONES = {"single_slice": (small_backbone, "a small ResNet (global max pool)"),
                   "early_fusion": (small_backbone_avg, "a small ResNet (global average pool)"),
                   "late_fusion": (small_backbone, "a small ResNet (global max pool)")}


def _small_builder(kind: str, default_slices: int) -> Callable[..., nn.Module]:
    backbone = SMALL_BACKBONES[kind][0]

    def build(num_classes: int = 2, slices: int = default_slices) -> nn.Module:
        if kind == "single_slice":
            return SingleSlice(backbone, num_classes)
        return FUSIONS[kind](backbone, num_classes, slices)

    return build


def _full_builder(kind: str, default_slices: int) -> Callable[..., nn.Module]:
    def build(num_classes: int = 2, slices: int = default_slices, slice_channels: int = 1,
              weighting: str = "sum", backbone_weights: str | Path | None = None
              ) -> nn.Module:
        """`slices`: the sample's slice count (the input's channels; single slice takes any).
        `slice_channels`: conv1's channels in single slice and in each late-fusion net: 1,
        or 3 for the grey slice repeated. Early fusion's conv1 takes the `slices`."""
        if kind != "early_fusion" and slice_channels not in (1, 3):
            raise ValueError(f"a slice enters as 1 channel or 3 (grey repeated), not "
                             f"{slice_channels}; N channels are early fusion's slices")
        if kind == "late_fusion":
            return SeparateLateFusion(num_classes, slices, slice_channels, weighting,
                                      backbone_weights)
        single = kind == "single_slice"
        return ResNet50Slices(slice_channels if single else slices, num_classes, single,
                              backbone_weights)

    return build


def _full_options(kind: str) -> Callable[[dict[str, torch.Tensor]], dict]:
    """Classes from fc, channels from conv1; late fusion's N from its weights. `slices` is
    the input's channel count (early and late fusion); single slice reads any number."""
    def options(state: dict[str, torch.Tensor]) -> dict:
        net = "nets.0." if kind == "late_fusion" else ""
        found = {"num_classes": int(state[f"{net}fc.weight"].shape[0])}
        channels = int(state[f"{net}conv1.weight"].shape[1])
        if kind == "early_fusion":
            found["slices"] = channels
        else:
            found["slice_channels"] = channels
        if kind == "late_fusion":
            found["slices"] = int(state["weights"].shape[0])
        return found

    return options


def _small_options(kind: str) -> Callable[[dict[str, torch.Tensor]], dict]:
    def options(state: dict[str, torch.Tensor]) -> dict:
        found = {"num_classes": int(state["net.fc.weight"].shape[0])}
        if kind == "early_fusion":
            found["slices"] = int(state["net.stem.0.weight"].shape[1])
        elif kind == "late_fusion":
            found["slices"] = int(state["slice_weights"].shape[0])
        return found

    return options


def _cnn3d_builder(default_widths: tuple[int, ...]) -> Callable[..., nn.Module]:
    def build(num_classes: int = 2, slices: int | None = None,
              widths: Sequence[int] = default_widths) -> nn.Module:
        return CNN3D(num_classes, tuple(widths))  # any number of slices: `slices` only accepted

    return build


def _cnn3d_options(state: dict[str, torch.Tensor]) -> dict:
    convs = sorted((int(k.split(".")[1]), v) for k, v in state.items()
                   if k.startswith("features.") and k.endswith(".weight") and v.ndim == 5)
    return {"num_classes": int(state["fc.weight"].shape[0]),
            "widths": [int(v.shape[0]) for _, v in convs]}


# full late fusion: N ResNet50s (25 M weights each), so its example and default use 3 slices
FULL_SLICES = {"single_slice": 16, "early_fusion": 16, "late_fusion": 3}
SMALL_SLICES = 12


def _register_all() -> None:
    for kind in FUSIONS:
        for full in (True, False):
            slices = FULL_SLICES[kind] if full else SMALL_SLICES
            register(Architecture(
                name=f"lab3.{kind}{'' if full else '_small'}", lab=3, task="fusion",
                build=(_full_builder if full else _small_builder)(kind, slices),
                example_inputs=_example(slices), input_names=("slices",),
                output_names=("logits",), dynamic_axes=DYNAMIC,
                description=FULL_SUMMARIES[kind] if full else
                SUMMARIES[kind].format(net=SMALL_BACKBONES[kind][1]),
                full=full, cam_layers=_cam_2d,
                default_options={} if full and kind == "single_slice" else {"slices": slices},
                options_from_weights=(_full_options if full else _small_options)(kind)))
    for full, suffix, slices, widths in ((True, "", 16, (32, 64, 128, 256)),
                                          (False, "_small", SMALL_SLICES, (8, 16, 32, 48))):
        register(Architecture(
            name=f"lab3.cnn3d{suffix}", lab=3, task="fusion", build=_cnn3d_builder(widths),
            example_inputs=_example(slices), input_names=("slices",), output_names=("logits",),
            dynamic_axes=DYNAMIC, full=full, cam_layers=_cam_3d,
            default_options={} if full else {"slices": slices},
            options_from_weights=_cnn3d_options,
            description=f"3D CNN: Conv3d/BatchNorm3d/ReLU/MaxPool3d, widths "
                        f"{'-'.join(map(str, widths))}."))


_register_all()
