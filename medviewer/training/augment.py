"""Augmentation of training items that keeps the diagnostic content.

Small contrast / brightness jitter (scanners and films differ in exposure), small zoom and
shift (patients are not centred alike). No left-right flip by default: the heart sits on the
patient's left, and a segmenter or detector that learnt mirrored anatomy would accept a
situs inversus film as normal; `flip=True` allows it for models where the side carries no
meaning. Masks and boxes go through the same geometric transform as their image, masks with
nearest-neighbour sampling so label values stay labels.

Randomness comes from torch's global generator: `torch.manual_seed(job.seed)` makes a run
repeatable, and each DataLoader worker gets its own stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F


def _uniform(half_width: float) -> float:
    return (torch.rand(()).item() * 2 - 1) * half_width


@dataclass(frozen=True)
class Augment:
    """A random transform per call: item dict in, new item dict out (the input is untouched).

    intensity: contrast factor 1 +- intensity and brightness +- intensity image stds.
    scale: zoom 1 +- scale about the image centre. shift: +- shift of the width / height.
    size: (rows, cols) of a flat image input (lab 1's 64 numbers are an 8 x 8 digit).
    gamma: grey levels to the power exp(+- gamma), for images in 0..1 (films: exposure and
    processing curves differ more than a linear stretch can say). 0: none.
    """

    intensity: float = 0.1
    scale: float = 0.05
    shift: float = 0.05
    flip: bool = False
    size: tuple[int, int] | None = None
    gamma: float = 0.0

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        image = item["image"]
        flat = image.ndim == 1
        planes = image.reshape(1, *self.size) if flat else image
        zoom, dx, dy = 1 + _uniform(self.scale), _uniform(self.shift), _uniform(self.shift)
        mirror = self.flip and torch.rand(()).item() < 0.5
        out = dict(item)
        planes = _jitter(warp(planes, zoom, dx, dy, "bilinear"), self.intensity)
        planes = _gamma(planes, self.gamma)
        out["image"] = _mirror(planes, mirror).reshape(image.shape)
        target = item.get("target")
        if isinstance(target, dict):
            out["target"] = warp_boxes(target, zoom, dx, dy, planes.shape[-2:], mirror)
        elif isinstance(target, torch.Tensor) and target.ndim == 2:
            mask = warp(target[None].float(), zoom, dx, dy, "nearest")[0]
            out["target"] = _mirror(mask, mirror).round().to(target.dtype)
        return out


def _mirror(x: torch.Tensor, mirror: bool) -> torch.Tensor:
    return x.flip(-1) if mirror else x


def _jitter(image: torch.Tensor, amount: float) -> torch.Tensor:
    """Contrast about the image mean and a brightness step in units of its spread."""
    if amount <= 0:
        return image
    mean, spread = image.mean(), image.std()
    contrast, brightness = 1 + _uniform(amount), _uniform(amount)
    return (image - mean) * contrast + mean + brightness * spread


def _gamma(image: torch.Tensor, amount: float) -> torch.Tensor:
    if amount <= 0:
        return image
    return image.clamp(0, 1) ** math.exp(_uniform(amount))


def warp(planes: torch.Tensor, zoom: float, dx: float, dy: float, mode: str) -> torch.Tensor:
    """(C, H, W) or (C, D, H, W) zoomed about the centre, then moved by (dx, dy) of its size.

    Edges repeat the border pixels (air stays air). A D axis (3D input) is kept as channels.
    """
    if zoom == 1 and dx == 0 and dy == 0:
        return planes
    shape = planes.shape
    x = planes.reshape(1, -1, *shape[-2:]).float()
    # output point u samples the input at (u - t) / zoom (normalised -1..1 coordinates)
    theta = torch.tensor([[1 / zoom, 0, -2 * dx / zoom], [0, 1 / zoom, -2 * dy / zoom]],
                         dtype=x.dtype)[None]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)
    return out.reshape(shape).to(planes.dtype)


def warp_boxes(target: dict[str, torch.Tensor], zoom: float, dx: float, dy: float,
               size: tuple[int, int] | torch.Size, mirror: bool = False
               ) -> dict[str, torch.Tensor]:
    """Boxes (x0, y0, x1, y1 in pixel edges) moved as `warp` moves their image, clipped to it.

    A box pushed (almost) out of the image is dropped with its label.
    """
    rows, cols = int(size[0]), int(size[1])
    boxes = target["boxes"].to(torch.float32).clone()
    for axis, length, step in ((0, cols, dx), (1, rows, dy)):
        coords = boxes[:, axis::2]
        coords.mul_(zoom).add_((1 - zoom) * length / 2 + step * length).clamp_(0, length)
        boxes[:, axis::2] = coords
    if mirror:
        boxes[:, [0, 2]] = cols - boxes[:, [2, 0]]
    keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
    return {**target, "boxes": boxes[keep], "labels": target["labels"][keep]}
