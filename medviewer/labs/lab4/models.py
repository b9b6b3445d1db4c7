"""Lab 4's segmentation networks: the classic U-Net, and U-Net and FCN-8s on a VGG16 encoder.

Both take "image" (batch, channels, rows, cols) and give "logits" (batch, outputs, rows, cols)
at the input size; batch, rows and columns are dynamic in the ONNX export. Rows and columns
must be multiples of 16 (U-Net: four 2x poolings) or 32 (FCN-8s: five). The VGG16 encoders
are torchvision's `vgg16().features` whole (keys features.0.weight ... features.28.bias), so a
course checkpoint's encoder loads key for key.

Labels and outputs: `num_classes` is always the number of labels in the manifest, background
first (label map value k is labels[k]). A network with one logit per label has num_classes
output channels (softmax / cross-entropy training). A binary network (sigmoid / BCE training,
common in the course's U-Nets) has ONE output channel, the foreground logit: it is built with
`binary=True` and num_classes=2 (labels [background, foreground]), and the lab 4 plugin reads
a one-channel output as foreground where the logit is > 0 (sigmoid > 0.5).
`options_from_weights` reads a one-channel head as {"num_classes": 2, "binary": True}.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from medviewer.labs.architectures import Architecture, register
from medviewer.labs.pretrained import load_backbone_weights

DYNAMIC_IMAGE = {"image": {0: "batch", 2: "rows", 3: "columns"},
                 "logits": {0: "batch", 2: "rows", 3: "columns"}}


class DoubleConv(nn.Sequential):
    """(3x3 conv -> BatchNorm -> ReLU) twice: the U-Net's building block ('same' padding)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def head_channels(num_classes: int, binary: bool) -> int:
    """Output channels: one logit per label, or the single foreground logit of a binary net."""
    if binary and num_classes != 2:
        raise ValueError(f"a binary network (one foreground logit) segments 2 labels, "
                         f"background and foreground, not {num_classes}")
    return 1 if binary else num_classes


class UNet(nn.Module):
    """Ronneberger's U-Net: 4 poolings down, 4 transposed-conv 2x ups, skips by concatenation.

    `base` is the width of the first level (64 in the paper); each level down doubles it.
    Padded convolutions keep the output at the input size (the paper's valid convolutions
    crop it), which is what a viewer overlay needs.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, base: int = 64,
                 binary: bool = False) -> None:
        super().__init__()
        widths = [base * 2**i for i in range(5)]  # 64, 128, 256, 512, 1024
        self.down = nn.ModuleList([DoubleConv(in_channels, widths[0])] + [
            DoubleConv(widths[i], widths[i + 1]) for i in range(4)])
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                 for i in reversed(range(4))])
        self.merge = nn.ModuleList([DoubleConv(widths[i] * 2, widths[i])
                                    for i in reversed(range(4))])
        self.head = nn.Conv2d(widths[0], head_channels(num_classes, binary), 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skips = []
        x = image
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        skips.pop()  # the bottleneck is not a skip
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


class FCN8s(nn.Module):
    """Long et al.'s FCN-8s: VGG16 conv layers, fc6/fc7 as convolutions, scores fused at
    pool4 (1/16) and pool3 (1/8) by 2x upsampling and summing, then 8x up to the input size.

    `fc_channels` is 4096 in the paper; `fc_kernel` 7 (fc6 as a 7x7 convolution, padded here
    so small inputs still work, instead of the paper's 100-pixel input padding and crop).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 21, fc_channels: int = 4096,
                 fc_kernel: int = 7, backbone_weights: str | Path | None = None,
                 binary: bool = False) -> None:
        super().__init__()
        from torchvision.models import vgg16

        encoder = vgg16(weights=None)  # never downloaded: weights=None
        if backbone_weights:  # a local ImageNet VGG16 file (features.* are used)
            load_backbone_weights(encoder, backbone_weights)
        self.features = encoder.features  # torchvision's keys: features.0 ... features.28
        if in_channels != 3:
            self.features[0] = nn.Conv2d(in_channels, 64, 3, padding=1)
        self.fc = nn.Sequential(
            nn.Conv2d(512, fc_channels, fc_kernel, padding=fc_kernel // 2), nn.ReLU(inplace=True),
            nn.Dropout2d(), nn.Conv2d(fc_channels, fc_channels, 1), nn.ReLU(inplace=True),
            nn.Dropout2d())
        k = head_channels(num_classes, binary)
        self.score_conv7 = nn.Conv2d(fc_channels, k, 1)
        self.score_pool4 = nn.Conv2d(512, k, 1)
        self.score_pool3 = nn.Conv2d(256, k, 1)
        self.up2_conv7 = nn.ConvTranspose2d(k, k, 4, stride=2, padding=1, bias=False)
        self.up2_pool4 = nn.ConvTranspose2d(k, k, 4, stride=2, padding=1, bias=False)
        self.up8 = nn.ConvTranspose2d(k, k, 16, stride=8, padding=4, bias=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # VGG16 features: pool3 ends at index 16, pool4 at 23, pool5 at 30
        pool3 = self.features[:17](image)
        pool4 = self.features[17:24](pool3)
        conv7 = self.fc(self.features[24:](pool4))
        x = self.up2_conv7(self.score_conv7(conv7)) + self.score_pool4(pool4)
        x = self.up2_pool4(x) + self.score_pool3(pool3)
        return self.up8(x)


class UNetVGG16(nn.Module):
    """U-Net whose encoder is torchvision's `vgg16().features` whole (keys features.0 ...
    features.28): skips from the last ReLU of blocks 1-4 (64, 128, 256, 512 channels at 1,
    1/2, 1/4, 1/8), block 5 (512 at 1/16) the bottleneck; pool5 is not used. The decoder is
    the U-Net's: 2x transposed convolutions, concatenation, double 3x3 conv, 1x1 head.
    """

    STAGES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))  # conv blocks, each after a pool
    WIDTHS = (64, 128, 256, 512, 512)

    def __init__(self, in_channels: int = 3, num_classes: int = 2, binary: bool = False,
                 backbone_weights: str | Path | None = None) -> None:
        super().__init__()
        from torchvision.models import vgg16

        encoder = vgg16(weights=None)
        if backbone_weights:
            load_backbone_weights(encoder, backbone_weights)
        self.features = encoder.features
        if in_channels != 3:
            self.features[0] = nn.Conv2d(in_channels, 64, 3, padding=1)
        w = self.WIDTHS
        self.up = nn.ModuleList([nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2)
                                 for i in reversed(range(4))])
        self.merge = nn.ModuleList([DoubleConv(w[i] * 2, w[i]) for i in reversed(range(4))])
        self.head = nn.Conv2d(w[0], head_channels(num_classes, binary), 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skips, x = [], image
        for start, end in self.STAGES:
            x = self.features[start:end](x)
            skips.append(x)
        skips.pop()  # the bottleneck is not a skip
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


def build_unet(num_classes: int = 2, in_channels: int = 1, base: int = 64,
               binary: bool = False) -> UNet:
    return UNet(in_channels, num_classes, base, binary)


def build_unet_small(num_classes: int = 2, in_channels: int = 1, base: int = 8,
                     binary: bool = False) -> UNet:
    return UNet(in_channels, num_classes, base, binary)


def build_fcn8s(num_classes: int = 21, in_channels: int = 3, fc_channels: int = 4096,
                fc_kernel: int = 7, backbone_weights: str | Path | None = None,
                binary: bool = False) -> FCN8s:
    return FCN8s(in_channels, num_classes, fc_channels, fc_kernel, backbone_weights, binary)


def build_unet_vgg16(num_classes: int = 2, in_channels: int = 3, binary: bool = False,
                     backbone_weights: str | Path | None = None) -> UNetVGG16:
    return UNetVGG16(in_channels, num_classes, binary, backbone_weights)


def _labels(outputs: int) -> dict:
    """num_classes (and binary) from a head's output channels: see the module docstring."""
    return {"num_classes": 2, "binary": True} if outputs == 1 else {"num_classes": outputs}


def _unet_options(state: dict[str, torch.Tensor]) -> dict:
    first = state["down.0.0.weight"]
    return {**_labels(int(state["head.weight"].shape[0])), "in_channels": int(first.shape[1]),
            "base": int(first.shape[0])}


def _unet_vgg16_options(state: dict[str, torch.Tensor]) -> dict:
    return {**_labels(int(state["head.weight"].shape[0])),
            "in_channels": int(state["features.0.weight"].shape[1])}


def _fcn_options(state: dict[str, torch.Tensor]) -> dict:
    fc6 = state["fc.0.weight"]
    return {**_labels(int(state["score_conv7.weight"].shape[0])),
            "in_channels": int(state["features.0.weight"].shape[1]),
            "fc_channels": int(fc6.shape[0]), "fc_kernel": int(fc6.shape[-1])}


def _tiny(channels: int, size: int) -> tuple[torch.Tensor, ...]:
    return (torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(0)),)


def _unet_cam(model: nn.Module) -> list[nn.Module]:
    return [model.merge[-1]]


def _fcn_cam(model: nn.Module) -> list[nn.Module]:
    return [model.fc]


register(Architecture(
    name="lab4.unet", lab=4, task="segmentation", build=build_unet,
    example_inputs=lambda: _tiny(1, 32), input_names=("image",), output_names=("logits",),
    dynamic_axes=DYNAMIC_IMAGE, cam_layers=_unet_cam, default_options={"base": 64},
    options_from_weights=_unet_options,
    description="U-Net (Ronneberger 2015): 4 down / 4 up, double 3x3 conv, transposed-conv "
                "upsampling, concatenated skips; base width 64."))
register(Architecture(
    name="lab4.unet_small", lab=4, task="segmentation", build=build_unet_small,
    example_inputs=lambda: _tiny(1, 32), input_names=("image",), output_names=("logits",),
    dynamic_axes=DYNAMIC_IMAGE, cam_layers=_unet_cam, full=False,
    default_options={"base": 8}, options_from_weights=_unet_options,
    description="The same U-Net at base width 8 (1/64 of the compute, 0.5 M weights): the "
                "shipped demo."))
register(Architecture(
    name="lab4.fcn8s", lab=4, task="segmentation", build=build_fcn8s,
    example_inputs=lambda: _tiny(3, 32), input_names=("image",), output_names=("logits",),
    dynamic_axes=DYNAMIC_IMAGE, cam_layers=_fcn_cam,
    default_options={"fc_channels": 4096, "fc_kernel": 7}, options_from_weights=_fcn_options,
    description="FCN-8s (Long 2015): torchvision VGG16 features, fc6/fc7 as convolutions, "
                "score layers on pool3/pool4/conv7, 2x + 2x + 8x transposed-conv upsampling."))
register(Architecture(
    name="lab4.unet_vgg16", lab=4, task="segmentation", build=build_unet_vgg16,
    example_inputs=lambda: _tiny(3, 32), input_names=("image",), output_names=("logits",),
    dynamic_axes=DYNAMIC_IMAGE, cam_layers=_unet_cam, options_from_weights=_unet_vgg16_options,
    description="U-Net on torchvision VGG16 features (skips after blocks 1-4, block 5 the "
                "bottleneck), transposed-conv upsampling, concatenated skips."))

# ResUNet, UNet++ and ResUNet++ live beside these (registered on import; they reuse
# DoubleConv and head_channels above, hence the import at the end)
from medviewer.labs.lab4 import family as _family  # noqa: E402, F401
