"""Lab 4's U-Net family: ResUNet, UNet++ and ResUNet++ (the U-Net tutorial's architectures).

Same contract as `models.UNet`: "image" (batch, channels, rows, cols) in, "logits" (batch,
outputs, rows, cols) out at the input size, batch/rows/cols dynamic in the ONNX export,
`binary=True` for a one-channel foreground head (see models.py). Rows and columns must be
multiples of 8 (ResUNet, ResUNet++: three 2x downsamplings) or 16 (UNet++: four). Each has
a light `*_small` variant (base width 8) that trains on two CPU cores in minutes.

- ResUNet (Zhang, Liu & Wang 2018): pre-activation residual units (BN-ReLU-conv twice, a 1x1
  projection shortcut), stride-2 convolutions instead of pooling, 2x bilinear upsampling,
  concatenated skips; widths 64-512.
- UNet++ (Zhou et al. 2018): nested, dense skip pathways; node X(i,j) is a double 3x3 conv
  of X(i,0..j-1) and the 2x upsampled X(i+1,j-1); widths 32-512. Deep supervision (a build
  option) puts a 1x1 head on each of X(0,1..4): in training mode the network returns the four
  heads' logits (a tuple; `training.recipes.Objective` averages their losses), in eval mode and
  in the exported graph ONE "logits", the mean of the four heads (the paper's "accurate
  mode"). Without deep supervision the single head is on X(0,4).
- ResUNet++ (Jha et al. 2019): residual units, squeeze-and-excitation after each encoder
  unit, ASPP (rates 6, 12, 18) as the bridge and before the head, and an attention block on
  each decoder level (the skip, pooled, gates the decoder features) before upsampling;
  widths 16-256 as in the authors' code.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - torch's own convention

from medviewer.labs.architectures import Architecture, register
from medviewer.labs.lab4.models import DYNAMIC_IMAGE, DoubleConv, head_channels
from medviewer.labs.lab4.models import _labels as labels_from_head
from medviewer.labs.lab4.models import _tiny as tiny_images


def up2(x: torch.Tensor) -> torch.Tensor:
    """2x bilinear upsampling (half-pixel centres: ONNX Resize reproduces it exactly)."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def bn_relu_conv(in_channels: int, out_channels: int, stride: int = 1,
                 dilation: int = 1) -> nn.Sequential:
    """A pre-activation 3x3 convolution (He et al. 2016's ordering, as both papers use)."""
    return nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=False),
                         nn.Conv2d(in_channels, out_channels, 3, stride, padding=dilation,
                                   dilation=dilation))


class ResidualUnit(nn.Module):
    """(BN-ReLU-conv) x2 plus a 1x1 projection shortcut; `stride` 2 halves the size.
    `stem`: the first unit, conv-BN-ReLU-conv (no activation on the raw image)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 stem: bool = False) -> None:
        super().__init__()
        first = (nn.Conv2d(in_channels, out_channels, 3, stride, padding=1) if stem
                 else bn_relu_conv(in_channels, out_channels, stride))
        self.body = nn.Sequential(first, bn_relu_conv(out_channels, out_channels))
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride),
                                      nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class SqueezeExcite(nn.Module):
    """Hu et al.'s channel attention: global mean -> FC (/ratio) -> ReLU -> FC -> sigmoid."""

    def __init__(self, channels: int, ratio: int = 8) -> None:
        super().__init__()
        hidden = max(channels // ratio, 1)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(),
                                nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc(x.mean(dim=(2, 3)))
        return x * weights[:, :, None, None]


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling as in ResUNet++: 3x3 convolutions at `rates` and at
    rate 1, each with BatchNorm, summed, then a 1x1 convolution."""

    def __init__(self, in_channels: int, out_channels: int,
                 rates: tuple[int, ...] = (6, 12, 18)) -> None:
        super().__init__()
        self.branches = nn.ModuleList([
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=r, dilation=r),
                          nn.BatchNorm2d(out_channels)) for r in (*rates, 1)])
        self.project = nn.Conv2d(out_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(sum(branch(x) for branch in self.branches))


class Attention(nn.Module):
    """ResUNet++'s attention block: the skip g (2x the size) BN-ReLU-conv and max-pooled,
    plus the decoder features x BN-ReLU-conv, BN-ReLU-conv again, multiply x."""

    def __init__(self, skip_channels: int, channels: int) -> None:
        super().__init__()
        self.skip = nn.Sequential(bn_relu_conv(skip_channels, channels), nn.MaxPool2d(2))
        self.features = bn_relu_conv(channels, channels)
        self.gate = bn_relu_conv(channels, channels)

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.skip(skip) + self.features(x)) * x


class ResUNet(nn.Module):
    """Zhang et al.'s deep residual U-Net (see the module docstring); `base` 64 in the paper."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, base: int = 64,
                 binary: bool = False) -> None:
        super().__init__()
        w = [base * 2**i for i in range(4)]  # 64, 128, 256, 512 (the bridge)
        self.down = nn.ModuleList([ResidualUnit(in_channels, w[0], stem=True)] + [
            ResidualUnit(w[i], w[i + 1], stride=2) for i in range(3)])
        self.merge = nn.ModuleList([ResidualUnit(w[i + 1] + w[i], w[i])
                                    for i in reversed(range(3))])
        self.head = nn.Conv2d(w[0], head_channels(num_classes, binary), 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skips, x = [], image
        for unit in self.down:
            x = unit(x)
            skips.append(x)
        skips.pop()  # the bridge is not a skip
        for merge in self.merge:
            x = merge(torch.cat([up2(x), skips.pop()], dim=1))
        return self.head(x)


class UNetPlusPlus(nn.Module):
    """Zhou et al.'s UNet++ (see the module docstring); `base` 32 in the paper.

    `nodes["i_j"]` is X(i,j); `heads` one 1x1 head per X(0,1..4) with deep supervision,
    else one on X(0,4).
    """

    DEPTH = 4

    def __init__(self, in_channels: int = 1, num_classes: int = 2, base: int = 32,
                 binary: bool = False, deep_supervision: bool = False) -> None:
        super().__init__()
        w = [base * 2**i for i in range(self.DEPTH + 1)]  # 32 ... 512
        self.deep_supervision = deep_supervision
        self.pool = nn.MaxPool2d(2)
        nodes = {}
        for i in range(self.DEPTH + 1):
            nodes[f"{i}_0"] = DoubleConv(in_channels if i == 0 else w[i - 1], w[i])
        for j in range(1, self.DEPTH + 1):
            for i in range(self.DEPTH + 1 - j):
                nodes[f"{i}_{j}"] = DoubleConv(w[i] * j + w[i + 1], w[i])
        self.nodes = nn.ModuleDict(nodes)
        k = head_channels(num_classes, binary)
        self.heads = nn.ModuleList([nn.Conv2d(w[0], k, 1)
                                    for _ in range(self.DEPTH if deep_supervision else 1)])

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        x: dict[tuple[int, int], torch.Tensor] = {(0, 0): self.nodes["0_0"](image)}
        for i in range(1, self.DEPTH + 1):
            x[i, 0] = self.nodes[f"{i}_0"](self.pool(x[i - 1, 0]))
        for j in range(1, self.DEPTH + 1):
            for i in range(self.DEPTH + 1 - j):
                dense = [x[i, m] for m in range(j)] + [up2(x[i + 1, j - 1])]
                x[i, j] = self.nodes[f"{i}_{j}"](torch.cat(dense, dim=1))
        if not self.deep_supervision:
            return self.heads[0](x[0, self.DEPTH])
        outputs = tuple(head(x[0, j + 1]) for j, head in enumerate(self.heads))
        if self.training:
            return outputs  # every nested head gets a loss
        return torch.stack(outputs).mean(dim=0)


class ResUNetPlusPlus(nn.Module):
    """Jha et al.'s ResUNet++ (see the module docstring); `base` 16 in the authors' code."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, base: int = 16,
                 binary: bool = False) -> None:
        super().__init__()
        w = [base * 2**i for i in range(5)]  # 16, 32, 64, 128; 256 the bridge
        self.down = nn.ModuleList([ResidualUnit(in_channels, w[0], stem=True)] + [
            ResidualUnit(w[i], w[i + 1], stride=2) for i in range(3)])
        self.excite = nn.ModuleList([SqueezeExcite(w[i]) for i in range(4)])
        self.bridge = ASPP(w[3], w[4])
        # level i: the features from below (w[i + 2]) gated by skip i, upsampled, + skip i
        self.attend = nn.ModuleList([Attention(w[i], w[i + 2]) for i in reversed(range(3))])
        self.merge = nn.ModuleList([ResidualUnit(w[i + 2] + w[i], w[i + 1])
                                    for i in reversed(range(3))])
        self.out = ASPP(w[1], w[0])
        self.head = nn.Conv2d(w[0], head_channels(num_classes, binary), 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skips, x = [], image
        for unit, excite in zip(self.down, self.excite, strict=True):
            x = excite(unit(x))
            skips.append(x)
        skips.pop()  # the deepest unit feeds the bridge, not a skip
        x = self.bridge(x)
        for attend, merge in zip(self.attend, self.merge, strict=True):
            skip = skips.pop()
            x = merge(torch.cat([up2(attend(skip, x)), skip], dim=1))
        return self.head(self.out(x))


def build_resunet(num_classes: int = 2, in_channels: int = 1, base: int = 64,
                  binary: bool = False) -> ResUNet:
    return ResUNet(in_channels, num_classes, base, binary)


def build_unetplusplus(num_classes: int = 2, in_channels: int = 1, base: int = 32,
                       binary: bool = False, deep_supervision: bool = True) -> UNetPlusPlus:
    return UNetPlusPlus(in_channels, num_classes, base, binary, deep_supervision)


def build_resunetplusplus(num_classes: int = 2, in_channels: int = 1, base: int = 16,
                          binary: bool = False) -> ResUNetPlusPlus:
    return ResUNetPlusPlus(in_channels, num_classes, base, binary)


def _options(first: str, head: str) -> Callable[[dict[str, torch.Tensor]], dict]:
    """options_from_weights for a net whose first conv is `first` and head `head`."""

    def read(state: dict[str, torch.Tensor]) -> dict:
        weight = state[first]
        options = {**labels_from_head(int(state[head].shape[0])),
                   "in_channels": int(weight.shape[1]), "base": int(weight.shape[0])}
        if head.startswith("heads."):  # UNet++: one head per nested output with supervision
            options["deep_supervision"] = "heads.1.weight" in state
        return options

    return read


def _register(name: str, build: Callable[..., nn.Module], base: int, light: bool,
              options: Callable[[dict], dict], cam: Callable[[nn.Module], list[nn.Module]],
              description: str) -> None:
    register(Architecture(
        name=name, lab=4, task="segmentation", build=partial(build, base=base),
        example_inputs=lambda: tiny_images(1, 32), input_names=("image",),
        output_names=("logits",), dynamic_axes=DYNAMIC_IMAGE, cam_layers=cam, full=not light,
        default_options={"base": base}, options_from_weights=options, description=description))


LIGHT = ("The same network at base width 8, small enough to train on two CPU cores in "
         "minutes: the shipped demo.")
_RESUNET = _options("down.0.body.0.weight", "head.weight")
_UNETPP = _options("nodes.0_0.0.weight", "heads.0.weight")
for _suffix, _light in (("", False), ("_small", True)):
    _register(f"lab4.resunet{_suffix}", build_resunet, 8 if _light else 64, _light, _RESUNET,
              lambda m: [m.merge[-1]], LIGHT if _light else
              "ResUNet (Zhang 2018): pre-activation residual units, stride-2 downsampling, "
              "bilinear 2x upsampling, concatenated skips; widths 64-512.")
    _register(f"lab4.unetplusplus{_suffix}", build_unetplusplus, 8 if _light else 32, _light,
              _UNETPP, lambda m: [m.nodes["0_4"]], LIGHT if _light else
              "UNet++ (Zhou 2018): nested dense skip pathways, widths 32-512; deep "
              "supervision (build option, on by default): four heads trained, their mean "
              "exported as one logits output.")
    _register(f"lab4.resunetplusplus{_suffix}", build_resunetplusplus, 8 if _light else 16,
              _light, _RESUNET, lambda m: [m.merge[-1]], LIGHT if _light else
              "ResUNet++ (Jha 2019): residual units with squeeze-excitation, ASPP bridge and "
              "output, attention-gated decoder; widths 16-256.")
