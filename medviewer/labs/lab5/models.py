"""Lab 5's torch builders: Faster R-CNN on chest radiographs (torchvision), full and light.

Both variants share two changes to torchvision's detector:
- `ImagesAsGiven`: the detector normalises and batches but never resizes. The plugin already
  resized the film to the manifest's working size (numpy), so the ONNX graph has no resize and
  boxes come out in that working grid.
- `DetectorExport`: one image tensor (1, 3, rows, cols) in, (boxes, scores, labels) out, the
  ONNX signature. The score threshold and the RPN's pre/post-NMS top-k are attributes baked
  into the traced graph: with threshold 0, up to 90k boxes reached NMS and ONNX Runtime ran
  5-7x slower than torch (the AI plugins issue). Its weights are the detector's own, keyed as
  torchvision writes them (backbone.body.conv1.weight ... roi_heads.box_predictor.bbox_pred.bias),
  so the course's `torch.save(model.state_dict())` loads as it is; files written with the
  older `detector.` prefix load too.
Labels out of the graph are 1-based (0 is torchvision's background): label k is the
manifest's labels[k - 1].
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet50
from torchvision.models.detection import FasterRCNN, fasterrcnn_resnet50_fpn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign, poolers
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from medviewer.labs.architectures import Architecture, register
from medviewer.labs.pretrained import load_backbone_weights

LABELS = ("cardiomegaly", "normal heart")
FULL_SIZE = 512  # the lab's working size
DEMO_SIZE = 256
SCORE_THRESHOLD = 0.05  # kept inside the exported graph
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class ImagesAsGiven(GeneralizedRCNNTransform):
    """Normalise and batch only: the plugin resizes to the working size before the model."""

    def resize(self, image: torch.Tensor, target: dict | None = None
               ) -> tuple[torch.Tensor, dict | None]:
        return image, target


class DetectorExport(nn.Module):
    """The ONNX face of a torchvision detector: (1, 3, H, W) -> boxes, scores, labels.

    The detector's children (transform, backbone, rpn, roi_heads) are this module's, so its
    keys are torchvision's with no prefix; `detector` is the torchvision module itself (same
    layers), for training (images, targets -> losses) and CAM (images -> detections).
    """

    def __init__(self, detector: FasterRCNN) -> None:
        super().__init__()
        for name, child in detector.named_children():
            self.add_module(name, child)
        self.__dict__["detector"] = detector  # not a child: its layers are registered above

    def train(self, mode: bool = True) -> DetectorExport:
        super().train(mode)
        self.detector.training = mode  # the shared children already follow
        return self

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with _gather_merge() if torch.jit.is_tracing() else contextlib.nullcontext():
            found = self.detector([image[0]])[0]
        return found["boxes"], found["scores"], found["labels"]

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        old = prefix + "detector."  # weights exported before the keys were torchvision's
        for key in [k for k in state_dict if k.startswith(old)]:
            state_dict[prefix + key[len(old):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _merge_levels(levels: torch.Tensor, per_level: list[torch.Tensor]) -> torch.Tensor:
    """The RoIs' pooled features in RoI order: each FPN level's results concatenated, then
    gathered through the inverse of the order they came in. The same tensor as torchvision's
    `_onnx_merge_levels`, which scatters each level into zeros through an index expanded to
    every value (up to 1000 x 256 x 7 x 7 int64 per level): 4-7 % of Faster R-CNN 512's time
    in ONNX Runtime and OpenVINO, against a 1-D scatter and one gather here."""
    order = torch.cat([torch.where(levels == level)[0] for level in range(len(per_level))])
    rank = torch.arange(order.size(0), dtype=order.dtype, device=order.device)
    return torch.cat(per_level)[torch.zeros_like(order).scatter(0, order, rank)]


@contextlib.contextmanager
def _gather_merge() -> Iterator[None]:
    """While the detector is traced for ONNX: torchvision's multi-scale RoIAlign merges its
    levels with `_merge_levels` (eager runs never take that path)."""
    original = getattr(poolers, "_onnx_merge_levels", None)
    if original is None:  # another torchvision: its own export path, unchanged
        yield
        return
    poolers._onnx_merge_levels = _merge_levels
    try:
        yield
    finally:
        poolers._onnx_merge_levels = original


def _keep_input_size(detector: FasterRCNN, mean: list[float], std: list[float]) -> FasterRCNN:
    t = detector.transform
    detector.transform = ImagesAsGiven(t.min_size[0], t.max_size, mean, std)
    return detector


def build_full(num_classes: int = len(LABELS), *, score_threshold: float = SCORE_THRESHOLD,
               pre_nms_top_n: int = 1000, post_nms_top_n: int = 1000,
               detections: int = 100, frozen_batchnorm: bool = False,
               backbone_weights: str | Path | None = None) -> DetectorExport:
    """torchvision's fasterrcnn_resnet50_fpn from scratch (no download), thresholds baked in
    (torchvision's own defaults), box predictor FastRCNNPredictor(1024, K + 1).

    `frozen_batchnorm`: the backbone's batch norms are torchvision's FrozenBatchNorm2d, as
    `fasterrcnn_resnet50_fpn` builds them whenever it starts from pretrained weights (the
    course's case); such a checkpoint has no num_batches_tracked tensors. Equal in eval mode.
    `backbone_weights`: a local safetensors file of torchvision ResNet50 ImageNet weights,
    loaded into the backbone when the user has one (never fetched from the network).
    """
    options = {"num_classes": num_classes + 1, "box_score_thresh": score_threshold,
               "rpn_pre_nms_top_n_test": pre_nms_top_n,
               "rpn_post_nms_top_n_test": post_nms_top_n, "box_detections_per_img": detections}
    if frozen_batchnorm:  # what torchvision builds with pretrained weights, without them
        body = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
        detector = FasterRCNN(_resnet_fpn_extractor(body, 3), **options)
    else:
        detector = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, **options)
    if backbone_weights is not None:
        load_backbone_weights(detector.backbone.body, backbone_weights)  # fc.* skipped
    return DetectorExport(_keep_input_size(detector, IMAGENET_MEAN, IMAGENET_STD))


def full_options(state: dict[str, torch.Tensor]) -> dict:
    """K foreground classes from the box predictor; frozen batch norms when the checkpoint
    has no num_batches_tracked (a detector started from pretrained weights)."""
    return {"num_classes": int(state["roi_heads.box_predictor.cls_score.weight"].shape[0]) - 1,
            "frozen_batchnorm": "backbone.body.bn1.num_batches_tracked" not in state}


def _stage(cin: int, cout: int) -> nn.Sequential:
    """Two 3x3 convolutions, the first with stride 2."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def light_backbone(width: int = 12, out_channels: int = 32) -> BackboneWithFPN:
    """A 5-stage CNN (strides 2..32) under an FPN on strides 8, 16, 32 (+ max-pool level)."""
    w = width
    body = nn.Sequential(OrderedDict(
        stem=_stage(3, w), layer1=_stage(w, 2 * w), layer2=_stage(2 * w, 4 * w),
        layer3=_stage(4 * w, 8 * w), layer4=_stage(8 * w, 8 * w)))
    return BackboneWithFPN(body, {"layer2": "0", "layer3": "1", "layer4": "2"},
                           [4 * w, 8 * w, 8 * w], out_channels, extra_blocks=LastLevelMaxPool())


def build_light(num_classes: int = len(LABELS), *, width: int = 12, out_channels: int = 32,
                score_threshold: float = SCORE_THRESHOLD, pre_nms_top_n: int = 200,
                post_nms_top_n: int = 50, detections: int = 20) -> DetectorExport:
    """A few-MB Faster R-CNN for the demo heart detector (256 px films, one large object).

    Anchors 32-256 px cover hearts of CTR 0.35-0.7 at 256 px; RoI pooling maps a 64 px box
    (not torchvision's 224) to the stride-16 level, so heart-sized boxes pool from coarser
    features that still see the chest wall the cardiothoracic ratio is judged against.
    """
    anchors = AnchorGenerator(((32,), (64,), (128,), (256,)), ((0.5, 0.75, 1.0),) * 4)
    detector = FasterRCNN(
        light_backbone(width, out_channels), num_classes=None, rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(["0", "1", "2"], 7, 2, canonical_scale=64),
        box_head=TwoMLPHead(out_channels * 49, 128),
        box_predictor=FastRCNNPredictor(128, num_classes + 1),
        min_size=DEMO_SIZE, max_size=DEMO_SIZE, box_score_thresh=score_threshold,
        rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=100,
        rpn_pre_nms_top_n_test=pre_nms_top_n, rpn_post_nms_top_n_test=post_nms_top_n,
        rpn_batch_size_per_image=64, box_batch_size_per_image=64,
        box_detections_per_img=detections)
    return DetectorExport(_keep_input_size(detector, [0.5] * 3, [0.25] * 3))


def light_options(state: dict[str, torch.Tensor]) -> dict:
    """Classes, stem width and FPN channels of a light detector's weights."""
    return {"num_classes": int(state["roi_heads.box_predictor.cls_score.weight"].shape[0]) - 1,
            "width": int(state["backbone.body.stem.0.weight"].shape[0]),
            "out_channels": int(state["backbone.fpn.inner_blocks.0.0.weight"].shape[0])}


def example_inputs(size: int = 64) -> tuple[torch.Tensor]:
    """A tiny film: a bright ellipse on a darker field, so an untrained net still finds boxes.

    Untrained class logits are near 0, so softmax scores sit near 1/(classes+1) ~ 0.33, above
    the 0.05 threshold: the contract test compares real boxes, not two empty tensors.
    """
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size),
                          indexing="ij")
    heart = (((x - 0.1) / 0.45) ** 2 + ((y - 0.2) / 0.3) ** 2 < 1).float()
    image = 0.3 + 0.5 * heart + 0.05 * torch.sin(7 * x) * torch.cos(5 * y)
    return (image.expand(1, 3, size, size).contiguous(),)


def cam_layers(model: nn.Module) -> list[nn.Module]:
    """EigenCAM / AblationCAM read the FPN's outputs (grad-cam's Faster R-CNN recipe)."""
    return [model.detector.backbone]


_COMMON = {"lab": 5, "task": "detection", "example_inputs": example_inputs,
           "input_names": ("image",), "output_names": ("boxes", "scores", "labels"),
           "dynamic_axes": {"image": {2: "rows", 3: "columns"}, "boxes": {0: "found"},
                            "scores": {0: "found"}, "labels": {0: "found"}},
           "cam_layers": cam_layers}

register(Architecture(
    name="lab5.fasterrcnn_resnet50_fpn", build=build_full, full=True,
    options_from_weights=full_options,
    description="torchvision Faster R-CNN, ResNet50-FPN backbone, from scratch; works at "
                f"{FULL_SIZE} px after log transform and simplest colour balance.", **_COMMON))
register(Architecture(
    name="lab5.fasterrcnn_light", build=build_light, full=False,
    options_from_weights=light_options,
    description="Faster R-CNN with a 5-stage 12-96 channel CNN under a 32-channel FPN "
                f"(~0.5M parameters) for the demo heart detector at {DEMO_SIZE} px.",
    **_COMMON))
