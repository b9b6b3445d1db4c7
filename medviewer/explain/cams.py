"""The CAM methods over torch modules (grad-cam package): no manifests, no volumes here.

Each function takes a model, its input tensor(s) at the model's working size and a target,
and returns a float32 heatmap (rows, cols) in 0..1 on the model's input grid.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import scipy.sparse.linalg
import torch
from pytorch_grad_cam import AblationCAM, EigenCAM, GradCAM
from pytorch_grad_cam.ablation_layer import AblationLayer
from pytorch_grad_cam.utils.find_layers import replace_layer_recursive
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, FasterRCNNBoxScoreTarget
from torch import nn

from medviewer.inference.pipeline import InferenceCancelled

Progress = Callable[[int, int], None]
Cancelled = Callable[[], bool]
HEATMAP_STRIDE = 16  # detector heatmaps: FPN levels resampled to 1/16 of the input
ABLATED_VALUE = -1000.0  # what grad-cam's Faster R-CNN ablation layer writes into a channel


class FixedExtras(nn.Module):
    """A model of (image, extras...) seen as a model of the image alone, for grad-cam."""

    def __init__(self, model: nn.Module, extras: Sequence[torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.extras = list(extras)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image, *self.extras)


def channels_first(x: torch.Tensor) -> torch.Tensor:
    """Transformer layer outputs as CNN maps: tokens (B, N, C) or NHWC (B, H, W, C) -> NCHW."""
    if x.ndim == 3:  # (batch, tokens, channels): a square grid of tokens
        side = int(round(x.shape[1] ** 0.5))
        return x[:, -side * side:].reshape(x.shape[0], side, side, -1).permute(0, 3, 1, 2)
    if x.ndim == 4 and x.shape[1] == x.shape[2] != x.shape[3]:  # timm Swin stages are NHWC
        return x.permute(0, 3, 1, 2)
    return x


def plane_at(position: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """grad-cam reshape: CNN maps as they are, transformer outputs channels-first, and a 3D
    CNN's (B, C, depth, h, w) maps cut at the depth plane `position` (0..1) of the series."""
    def reshape(x: torch.Tensor) -> torch.Tensor:
        x = channels_first(x)
        if x.ndim == 5:
            x = x[:, :, min(int(position * x.shape[2]), x.shape[2] - 1)]
        return x
    return reshape


@contextmanager
def gradients_from(layers: list[nn.Module], model: nn.Module) -> Iterator[None]:
    """Only the CAM layers' own parameters ask for gradients while Grad-CAM runs.

    Their outputs still carry gradients (what Grad-CAM reads), but the backward pass stops
    at them instead of running down to the first convolution: on ResNet50 at 224 px that is
    most of the backward's cost. A layer without parameters (a ReLU) keeps the full pass.
    """
    own = [p for layer in layers for p in layer.parameters()]
    if not own:
        yield
        return
    before = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in before:
            p.requires_grad_(False)
        for p in own:
            p.requires_grad_(True)
        yield
    finally:
        for p, flag in before:
            p.requires_grad_(flag)


def grad_cam(model: nn.Module, image: torch.Tensor, layers: list[nn.Module],
             category: int | None = None, position: float = 0.5) -> tuple[np.ndarray, int]:
    """Grad-CAM of one (1, C, H, W) input for `category` (None: the predicted class).

    `position` (0..1) places the explained slice in a series-level input: a 3D CNN's maps
    are cut at that depth, and a late-fusion model (one 2D pass per slab, so one map per
    slab) gives the map of the slab there.
    """
    cam = GradCAM(model, layers, reshape_transform=plane_at(position))
    targets = None if category is None else [ClassifierOutputTarget(category)]
    try:
        with gradients_from(layers, model):
            maps = cam(image, targets)  # None: grad-cam explains its argmax
        if category is None:
            category = int(cam.outputs[0].argmax())
    finally:
        cam.activations_and_grads.release()
    pick = min(int(position * len(maps)), len(maps) - 1)
    return np.asarray(maps[pick], np.float32), category


def fpn_to_grid(grid: tuple[int, int]) -> Callable[[OrderedDict], torch.Tensor]:
    """grad-cam's fasterrcnn_reshape_transform, but onto `grid` instead of the 'pool' level.

    The pool level is 1/64 of the input (4 x 4 cells on a 256 px film): too coarse to show a
    heart. 1/16 keeps the SVD small (grid cells x all FPN channels) and the map readable.
    """
    def reshape(features: OrderedDict) -> torch.Tensor:
        return torch.cat([nn.functional.interpolate(v.abs(), grid, mode="bilinear")
                          for v in features.values()], dim=1)
    return reshape


def _grid(image: torch.Tensor) -> tuple[int, int]:
    return (max(1, image.shape[-2] // HEATMAP_STRIDE), max(1, image.shape[-1] // HEATMAP_STRIDE))


def detections(detector: nn.Module, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """The torchvision detector's own boxes for one (1, 3, H, W) image, best first."""
    with torch.no_grad():
        return detector(image)[0]


def box_target(boxes: np.ndarray, labels: Sequence[int]) -> FasterRCNNBoxScoreTarget:
    """grad-cam's target: the summed IoU + score of the detections matching these boxes."""
    return FasterRCNNBoxScoreTarget(labels=list(labels),
                                    bounding_boxes=np.asarray(boxes, np.float32).reshape(-1, 4))


def first_component(activations: np.ndarray) -> np.ndarray:
    """grad-cam's get_2d_projection without its full SVD: each (C, h, w) map projected on
    the first principal component of its h*w rows of C channels (sign arbitrary).

    grad-cam's full-matrices SVD of 1024 cells x 1280 FPN channels (the full Faster R-CNN
    at 512 px) took 5-13 s on 2 cores; ARPACK's top singular vector alone takes ~0.05 s.
    """
    out = []
    for a in np.nan_to_num(np.asarray(activations, np.float64)):
        m = a.reshape(a.shape[0], -1).T
        m = m - m.mean(axis=0)
        if min(m.shape) > 2:
            start = np.random.default_rng(0).standard_normal(min(m.shape))  # repeatable
            _, _, vt = scipy.sparse.linalg.svds(m, k=1, tol=1e-8, v0=start)
        else:  # ARPACK needs k < min(shape)
            vt = np.linalg.svd(m, full_matrices=False)[2]
        out.append((m @ vt[0]).reshape(a.shape[1:]))
    return np.asarray(out, np.float32)


class BoxSignedEigenCAM(EigenCAM):
    """EigenCAM with the principal component's sign chosen by the explained box.

    An SVD component's sign is arbitrary: on the demo films one sign lights the lungs, the
    other the heart and bones, and grad-cam keeps whichever the SVD returned (then clips the
    negative half away). Here the sign is the one that makes the component positive, on
    average, inside the box being explained; the map is not masked to the box.
    """

    def __init__(self, model: nn.Module, target_layers: list[nn.Module],
                 reshape_transform: Callable, box: np.ndarray) -> None:
        super().__init__(model, target_layers, reshape_transform)
        self.box = np.asarray(box, np.float64).reshape(4)

    def get_cam_image(self, input_tensor: torch.Tensor, target_layer: nn.Module,
                      targets: list, activations: np.ndarray, grads: np.ndarray,
                      eigen_smooth: bool) -> np.ndarray:
        projection = first_component(activations)
        rows, cols = projection.shape[-2:]
        sy, sx = rows / input_tensor.shape[-2], cols / input_tensor.shape[-1]
        x0, x1 = int(self.box[0] * sx), max(int(self.box[0] * sx) + 1, int(self.box[2] * sx))
        y0, y1 = int(self.box[1] * sy), max(int(self.box[1] * sy) + 1, int(self.box[3] * sy))
        inside = projection[:, y0:y1, x0:x1].mean(axis=(1, 2))
        return projection * np.where(inside < 0, -1.0, 1.0)[:, None, None].astype(np.float32)


def eigen_cam(detector: nn.Module, image: torch.Tensor, layers: list[nn.Module],
              target: FasterRCNNBoxScoreTarget) -> np.ndarray:
    """EigenCAM: the first principal component of the FPN activations, signed by the box."""
    cam = BoxSignedEigenCAM(detector, layers, fpn_to_grid(_grid(image)),
                            target.bounding_boxes[0])
    try:
        with torch.no_grad():
            heat = cam(image, [target])[0]
    finally:
        cam.activations_and_grads.release()
    return np.asarray(heat, np.float32)


class FPNAblationLayer(AblationLayer):
    """Stands in for the FPN backbone: its cached outputs with some channels ablated.

    grad-cam's AblationLayerFasterRCNN assumes 256 channels and five levels; this reads the
    levels and their widths from the cached outputs, so the light demo FPN works too.
    """

    def objectiveness_mask_from_svd(self, activations: np.ndarray, threshold: float = 0.01
                                    ) -> np.ndarray:
        """grad-cam's channel-picking mask, with the fast first component."""
        projection = np.abs(first_component(activations[None])[0])
        projection = projection - projection.min()
        return projection / max(float(projection.max()), 1e-12) > threshold

    def set_next_batch(self, input_batch_index: int, activations: OrderedDict,
                       num_channels_to_ablate: int) -> None:
        self.activations = OrderedDict(
            (k, v[input_batch_index:input_batch_index + 1].clone().repeat(
                num_channels_to_ablate, 1, 1, 1)) for k, v in activations.items())

    def __call__(self, x: torch.Tensor) -> OrderedDict:
        levels = list(self.activations.items())
        for i in range(next(iter(self.activations.values())).shape[0]):
            channel = int(self.indices[i])
            for _, value in levels:  # channel counts along the concatenated levels
                if channel < value.shape[1]:
                    value[i, channel] = ABLATED_VALUE
                    break
                channel -= value.shape[1]
        return self.activations


class SteppedAblationCAM(AblationCAM):
    """grad-cam's AblationCAM with progress, cancel and a record of what it ablated."""

    def __init__(self, model: nn.Module, target_layers: list[nn.Module], *,
                 reshape_transform: Callable, batch_size: int, ratio: float,
                 progress: Progress | None, cancelled: Cancelled | None) -> None:
        super().__init__(model, target_layers, reshape_transform, FPNAblationLayer(),
                         batch_size=batch_size, ratio_channels_to_ablate=ratio)
        self.progress, self.cancelled = progress, cancelled
        self.ablated = self.channels = 0

    def get_cam_weights(self, input_tensor: torch.Tensor, target_layer: nn.Module,
                        targets: list[Callable], activations: np.ndarray,
                        grads: np.ndarray) -> np.ndarray:
        handle = target_layer.register_forward_hook(self.save_activation)
        with torch.no_grad():
            outputs = self.model(input_tensor[:1])
        handle.remove()
        original = float(targets[0](outputs[0]).cpu().item())
        if original == 0:
            raise ValueError("the target box is not among this model's detections")
        layer = self.ablation_layer
        chosen = np.asarray(layer.activations_to_be_ablated(activations[0],
                                                            self.ratio_channels_to_ablate))
        self.ablated, self.channels = len(chosen), activations.shape[1]
        replace_layer_recursive(self.model, target_layer, layer)
        try:
            scores = self._ablate(input_tensor[0], targets[0], chosen)
        finally:  # a cancelled run leaves the model as it found it
            replace_layer_recursive(self.model, layer, target_layer)
        weights = np.full(activations.shape[1], original, np.float32)
        weights[chosen] = scores
        return ((original - weights) / original)[None]

    def _ablate(self, image: torch.Tensor, target: Callable, chosen: np.ndarray) -> np.ndarray:
        scores = []
        batches = range(0, len(chosen), self.batch_size)
        for done, start in enumerate(batches):
            if self.cancelled is not None and self.cancelled():
                raise InferenceCancelled()
            part = chosen[start:start + self.batch_size]
            self.ablation_layer.set_next_batch(0, self.activations, len(part))
            self.ablation_layer.indices = part
            with torch.no_grad():
                outputs = self.model(image.expand(len(part), *image.shape))
            scores += [float(target(o).cpu().item()) for o in outputs]
            if self.progress is not None:
                self.progress(done + 1, len(batches))
        return np.asarray(scores, np.float32)


def ablation_cam(detector: nn.Module, image: torch.Tensor, layers: list[nn.Module],
                 target: FasterRCNNBoxScoreTarget, *, ratio: float = 0.05,
                 batch_size: int = 16, progress: Progress | None = None,
                 cancelled: Cancelled | None = None) -> tuple[np.ndarray, int, int]:
    """AblationCAM: the drop in the target box's score when each chosen channel is ablated.

    `ratio` is grad-cam's ratio_channels_to_ablate: it ablates the ratio of channels most
    inside EigenCAM's mask and the same number least inside it (so 2 x ratio in all); 1.0 is
    the full method. Returns the heatmap, channels ablated and channels in all.
    """
    cam = SteppedAblationCAM(detector, layers, reshape_transform=fpn_to_grid(_grid(image)),
                             batch_size=batch_size, ratio=ratio, progress=progress,
                             cancelled=cancelled)
    try:
        heat = cam(image, [target])[0]
    finally:
        cam.activations_and_grads.release()
    return np.asarray(heat, np.float32), cam.ablated, cam.channels
