"""Per-task training recipes: the model of a manifest, its loss, optimiser and schedule.

The course's choices: CrossEntropy for classifiers (lab 1-3), Dice + CrossEntropy for
segmentation (lab 4), Faster R-CNN's own losses summed for detection (lab 5); Adam, or SGD
with momentum 0.9 and Nesterov (the detection default, as in lab 5).

The loss is computed inside `Objective.forward`, so DistributedDataParallel (which syncs
gradients only for what runs through its forward) sees the whole step, detection included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medviewer.inference.errors import ModelError
from medviewer.inference.manifest import WEIGHTS_FILE, Manifest
from medviewer.training.errors import TrainingError

SGD_MOMENTUM = 0.9
SGD_WEIGHT_DECAY = 1e-4


def task_of(manifest: Manifest) -> str:
    """Lab 3's fusion models are classifiers of a whole series."""
    return "classification" if manifest.task == "fusion" else manifest.task


@dataclass
class Built:
    """A torch model for a manifest and how it was initialised (for the start event)."""

    model: nn.Module
    arch: Any  # medviewer.labs.architectures.Architecture
    init: str
    message: str


def build_model(manifest: Manifest, init: str, job_path: str | None = None,
                backbone_weights: str | None = None) -> Built:
    """The manifest's architecture, with the baseline's weights ("current") or fresh, its
    backbone from a local pretrained file when one is given."""
    from medviewer.labs import architectures

    try:
        arch = architectures.ARCHITECTURES.get(manifest.arch) or architectures.get(manifest.arch)
    except (KeyError, ImportError) as exc:
        raise TrainingError(manifest.folder, f"This MedViewer has no architecture "
                            f"{manifest.arch!r} to train {manifest.id}; update MedViewer.") from exc
    options = {**arch.default_options, **manifest.options.get("build", {})}
    if backbone_weights:
        options["backbone_weights"] = backbone_weights
    try:
        model = arch.build(num_classes=len(manifest.labels), **options)
    except TypeError as exc:
        if not backbone_weights:
            raise
        raise TrainingError(job_path, f"{manifest.arch} takes no pretrained backbone file; "
                            "remove 'backbone_weights'.") from exc
    except ModelError as exc:  # the file does not fit the backbone
        raise TrainingError(backbone_weights, exc.reason) from exc
    if init == "scratch":
        return Built(model, arch, init, f"Training from scratch, backbone from {backbone_weights}"
                     if backbone_weights else "Training from scratch: no starting weights "
                     "(no pretrained backbone file given)")
    weights = manifest.path(WEIGHTS_FILE)
    if not weights.is_file():
        raise TrainingError(job_path, f"{manifest.id} {manifest.version} has no "
                            f"{WEIGHTS_FILE} to fine-tune; set \"init\": \"scratch\".")
    from medviewer.training.export import load_weights

    try:
        load_weights(model, weights)
    except ModelError as exc:
        raise TrainingError(weights, exc.reason) from exc
    return Built(model, arch, init, f"Fine-tuning {manifest.id} {manifest.version}")


# --- moving batches -----------------------------------------------------------------------

def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors (in dicts / lists, any depth) onto `device`; everything else as it is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def model_inputs(arch: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The positional inputs in the architecture's ONNX order: "extras" or the image."""
    return tuple(batch["extras"] if name == "extras" else batch["image"]
                 for name in arch.input_names)


def batch_size_of(batch: Any) -> int:
    return len(batch) if isinstance(batch, list) else int(batch["image"].shape[0])


# --- losses --------------------------------------------------------------------------------

def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice over the foreground labels (the background would dominate it)."""
    probs = logits.softmax(dim=1)[:, 1:]
    onehot = nn.functional.one_hot(target, logits.shape[1]).movedim(-1, 1)[:, 1:]
    dims = (0, *range(2, logits.ndim))
    overlap = (probs * onehot).sum(dim=dims)
    total = probs.sum(dim=dims) + onehot.sum(dim=dims)
    return 1 - ((2 * overlap + 1) / (total + 1)).mean()


def detector_targets(batch: list[dict]) -> tuple[list[torch.Tensor], list[dict]]:
    images = [item["image"] for item in batch]
    targets = [{"boxes": item["target"]["boxes"], "labels": item["target"]["labels"]}
               for item in batch]
    return images, targets


class Objective(nn.Module):
    """model + loss: forward(batch) -> scalar loss (what DDP wraps)."""

    def __init__(self, model: nn.Module, arch: Any, task: str) -> None:
        super().__init__()
        self.model, self.arch, self.task = model, arch, task

    def forward(self, batch: Any) -> torch.Tensor:
        if self.task == "detection":
            return sum(self.model.detector(*detector_targets(batch)).values())
        logits = self.model(*model_inputs(self.arch, batch))
        return batch_loss(self.task, logits, batch["target"])


def batch_loss(task: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    loss = nn.functional.cross_entropy(logits, target)
    if task == "segmentation":
        loss = loss + soft_dice_loss(logits, target)
    return loss


# --- optimiser and schedule ------------------------------------------------------------------

def make_optimizer(model: nn.Module, name: str | None, lr: float, task: str
                   ) -> torch.optim.Optimizer:
    """Adam, or SGD with momentum 0.9 and Nesterov (detection's default)."""
    name = name or ("sgd" if task == "detection" else "adam")
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM, nesterov=True,
                               weight_decay=SGD_WEIGHT_DECAY)
    return torch.optim.Adam(params, lr=lr)


def make_schedule(optimizer: torch.optim.Optimizer, name: str, epochs: int,
                  steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per batch: cosine to 0 over the run, x0.1 every third of it, or flat."""
    total = max(1, epochs * steps_per_epoch)
    every = max(1, epochs // 3) * steps_per_epoch

    def factor(step: int) -> float:
        if name == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        if name == "step":
            return 0.1 ** (step // every)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
