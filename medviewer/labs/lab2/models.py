"""Lab 2's torch networks: 3-channel (previous / current / next slice) classifiers.

Age and sex enter as a second input, `extras` (batch, 2): age in years / 100 and sex (M 1,
F 0, other 0.5), as medviewer.inference.preprocess.extras_vector reads them from the header.
Backbones start from random weights; `backbone_weights` loads a local file (never the network).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from medviewer.labs.architectures import Architecture, register
from medviewer.labs.pretrained import load_backbone_weights

CLASSES = 2  # no nodule / nodule on this slice
EXTRAS = 2  # age, sex
IMAGE_AXES = {0: "batch", 2: "height", 3: "width"}
SWIN_SIZE = 56


class AgeSexHead(nn.Module):
    """Image features concatenated with [age, sex] -> class logits (the lab's fusion)."""

    def __init__(self, backbone: nn.Module, features: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = nn.Linear(features + EXTRAS, num_classes)

    def forward(self, image: torch.Tensor, extras: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.cat([self.backbone(image), extras], dim=1))


# --- VGG16 without max-pooling ---------------------------------------------------------------

class AdaptiveAvgPool(nn.Module):
    """nn.AdaptiveAvgPool2d's bins as two averaging matrices, so the ONNX graph keeps dynamic
    rows and columns: the TorchScript exporter only writes an adaptive pool whose input size
    is known and a multiple of the output size. Same bins as torch (floor start, ceil end)."""

    def __init__(self, size: tuple[int, int] = (7, 7)) -> None:
        super().__init__()
        self.size = size

    @staticmethod
    def _bins(n: torch.Tensor | int, m: int, like: torch.Tensor) -> torch.Tensor:
        i = torch.arange(m, device=like.device)
        start = torch.div(i * n, m, rounding_mode="floor")
        end = -torch.div(-(i + 1) * n, m, rounding_mode="floor")  # ceil
        j = torch.arange(n, device=like.device)
        inside = ((j[None] >= start[:, None]) & (j[None] < end[:, None])).to(like.dtype)
        return inside / (end - start).to(like.dtype)[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self._bins(x.shape[-2], self.size[0], x)
        cols = self._bins(x.shape[-1], self.size[1], x)
        return torch.einsum("ih,nchw,jw->ncij", rows, x, cols)


def build_vgg16(num_classes: int = CLASSES, backbone_weights: str | None = None) -> nn.Module:
    """torchvision's VGG16 as the lab built it: every MaxPool2d replaced by Identity and
    classifier[6] by Linear(4096, K). The module is torchvision's own, so a course checkpoint
    (`features.*`, `classifier.0/3/6.*`) loads key for key; only the (weightless) avgpool is
    swapped for the same averaging written so it exports with dynamic image sizes.

    The feature maps keep the input's full size through all 13 convolutions (the lab's design,
    and its cost). `backbone_weights`: a local ImageNet VGG16 file (its 1000-class layer is
    skipped by shape).
    """
    from torchvision.models import vgg16

    net = vgg16(weights=None)
    for i, layer in enumerate(net.features):
        if isinstance(layer, nn.MaxPool2d):
            net.features[i] = nn.Identity()
    net.avgpool = AdaptiveAvgPool((7, 7))
    net.classifier[6] = nn.Linear(4096, num_classes)
    if backbone_weights:
        load_backbone_weights(net, backbone_weights)
    return net


# --- ResNet50 + age/sex ----------------------------------------------------------------------

def build_resnet50_agesex(num_classes: int = CLASSES, backbone_weights: str | None = None
                          ) -> AgeSexHead:
    """torchvision ResNet50 with fc removed: 2048-d pooled features ++ [age, sex] -> Linear."""
    from torchvision.models import resnet50

    backbone = resnet50(weights=None)
    if backbone_weights:
        load_backbone_weights(backbone, backbone_weights)
    backbone.fc = nn.Identity()
    return AgeSexHead(backbone, 2048, num_classes)


# --- Swin Transformer at 56 x 56 + age/sex ---------------------------------------------------

def build_swin56_agesex(num_classes: int = CLASSES, backbone_weights: str | None = None,
                        variant: str = "swin_tiny_patch4_window7_224") -> AgeSexHead:
    """timm Swin-T at img_size 56 with head.fc removed: 768-d features ++ [age, sex] -> Linear.

    56 / patch 4 = 14 x 14 tokens, which window 7 divides; timm shrinks the windows of the
    later stages to their 7 x 7 (padded to 8), 4 x 4 and 2 x 2 grids and drops the shift there.
    """
    import timm

    backbone = timm.create_model(variant, pretrained=False, img_size=SWIN_SIZE)
    if backbone_weights:
        load_backbone_weights(backbone, backbone_weights)
    backbone.head.fc = nn.Identity()
    return AgeSexHead(backbone, backbone.num_features, num_classes)


# --- the light demo backbone -----------------------------------------------------------------

class BasicBlock(nn.Module):
    """ResNet's two 3x3 convolutions with a shortcut (1x1 projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class SmallResNet(nn.Module):
    """A stride-2 stem and one BasicBlock per stage (widths double, size halves): ~0.3 M weights."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages, cin = [], widths[0]
        for i, cout in enumerate(widths):
            stages.append(BasicBlock(cin, cout, 1 if i == 0 else 2))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x)))


def build_resnet_small_agesex(num_classes: int = CLASSES,
                              widths: tuple[int, ...] = (16, 32, 64, 128)) -> AgeSexHead:
    backbone = SmallResNet(tuple(widths))
    return AgeSexHead(backbone, backbone.num_features, num_classes)


# --- registry --------------------------------------------------------------------------------

def _seeded(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(sum(shape)))


def _image_and_extras(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    return _seeded(2, 3, size, size), _seeded(2, EXTRAS)


def _last_block(model: nn.Module) -> list[nn.Module]:
    return [model.backbone.stages[-1]]


def _swin_last_norm(model: nn.Module) -> list[nn.Module]:
    # timm's Swin keeps (batch, rows, cols, channels) activations: CAM needs a reshape
    return [model.backbone.layers[-1].blocks[-1].norm1]


_AGESEX_IO = {"input_names": ("image", "extras"), "output_names": ("logits",)}
_AXES = {"image": IMAGE_AXES, "extras": {0: "batch"}, "logits": {0: "batch"}}

def _classes(key: str) -> Callable[[dict[str, torch.Tensor]], dict]:
    return lambda state: {"num_classes": int(state[key].shape[0])}


def _small_options(state: dict[str, torch.Tensor]) -> dict:
    stages = sorted({k.split(".")[2] for k in state if k.startswith("backbone.stages.")}, key=int)
    widths = [int(state[f"backbone.stages.{i}.body.0.weight"].shape[0]) for i in stages]
    return {"num_classes": int(state["classifier.weight"].shape[0]), "widths": widths}


register(Architecture(
    name="lab2.vgg16", lab=2, task="classification", build=build_vgg16,
    example_inputs=lambda: (_seeded(2, 3, 16, 16),), input_names=("image",),
    output_names=("logits",), dynamic_axes={"image": IMAGE_AXES, "logits": {0: "batch"}},
    description="torchvision VGG16, every MaxPool2d replaced by Identity, torchvision's "
                "avgpool and classifier (last layer K classes); prev/current/next slices as 3 "
                "channels", cam_layers=lambda m: [m.features[28]],
    options_from_weights=_classes("classifier.6.weight")))
register(Architecture(
    name="lab2.resnet50_agesex", lab=2, task="classification", build=build_resnet50_agesex,
    example_inputs=lambda: _image_and_extras(32), **_AGESEX_IO, dynamic_axes=_AXES,
    description="ResNet50 (fc removed), 2048-d features ++ [age, sex] -> Linear",
    cam_layers=lambda m: [m.backbone.layer4[-1]],
    options_from_weights=_classes("classifier.weight")))
register(Architecture(
    name="lab2.swin56_agesex", lab=2, task="classification", build=build_swin56_agesex,
    example_inputs=lambda: _image_and_extras(SWIN_SIZE), **_AGESEX_IO,
    dynamic_axes={"extras": {0: "batch"}, "image": {0: "batch"}, "logits": {0: "batch"}},
    description="timm Swin-T at 56x56 (head.fc removed), 768-d features ++ [age, sex] -> "
                "Linear", cam_layers=_swin_last_norm,
    options_from_weights=_classes("classifier.weight")))
register(Architecture(
    name="lab2.resnet_small_agesex", lab=2, task="classification",
    build=build_resnet_small_agesex, example_inputs=lambda: _image_and_extras(32),
    **_AGESEX_IO, dynamic_axes=_AXES, full=False,
    description="Light ResNet-style CNN (stem + 4 BasicBlocks, 16-128 channels) ++ [age, sex]"
                " -> Linear: the shipped demo model's backbone",
    cam_layers=_last_block, default_options={"widths": (16, 32, 64, 128)},
    options_from_weights=_small_options))
