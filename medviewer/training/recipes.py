"""Per-task training recipes: the model of a manifest, its loss, optimiser and schedule.

The course's choices: CrossEntropy for classifiers (lab 1-3), Dice + CrossEntropy for
segmentation (lab 4), Faster R-CNN's own losses summed for detection (lab 5); Adam, AdamW, or
SGD with momentum 0.9 and Nesterov (the detection default, as in lab 5). The labs' demo
recipes (training.plan) and `medviewer train JOB.json` (run.py) both build from here.

The loss is computed inside `Objective.forward`, so DistributedDataParallel (which syncs
gradients only for what runs through its forward) sees the whole step, detection included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medviewer.inference.errors import ModelError
from medviewer.inference.manifest import WEIGHTS_FILE, Manifest
from medviewer.training.errors import TrainingError
from medviewer.training.labels import IGNORE

SGD_MOMENTUM = 0.9
SGD_WEIGHT_DECAY = 1e-4
DEFAULT_WEIGHT_DECAY = {"adam": 0.0, "adamw": SGD_WEIGHT_DECAY, "sgd": SGD_WEIGHT_DECAY}


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
    from medviewer.inference.manifest import external_problem
    from medviewer.labs import architectures

    problem = external_problem(manifest, "train")  # imported from ONNX: no torch layers
    if problem is not None:
        raise TrainingError(manifest.folder, problem)
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
    except ModelError as exc:  # a damaged file whose checksum the manifest matches
        raise TrainingError(weights, f"The weights of {manifest.id} {manifest.version} cannot "
                            f"be loaded: {exc.reason} Pick another version (`medviewer models "
                            f"--versions {manifest.id}`) or set \"init\": \"scratch\".") from exc
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
    """1 - mean soft Dice over the foreground labels (the background would dominate it);
    voxels of excluded segments (IGNORE) count for neither side."""
    keep = (target != IGNORE).unsqueeze(1)
    probs = logits.softmax(dim=1)[:, 1:] * keep
    onehot = nn.functional.one_hot(target.masked_fill(~keep[:, 0], 0),
                                   logits.shape[1]).movedim(-1, 1)[:, 1:] * keep
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
    """model + loss: forward(batch) -> scalar loss (what DDP wraps).

    class_weights: CrossEntropy weight per label (a rare label the model would otherwise
    shrink, e.g. lab 4's nodule). frozen_norm: BatchNorm layers keep their running
    statistics while the rest trains (fine-tuning a trained network on a new task).
    """

    def __init__(self, model: nn.Module, arch: Any, task: str,
                 class_weights: Sequence[float] | None = None, frozen_norm: bool = False
                 ) -> None:
        super().__init__()
        self.model, self.arch, self.task, self.frozen_norm = model, arch, task, frozen_norm
        weights = None if class_weights is None else torch.tensor(class_weights)
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, batch: Any) -> torch.Tensor:
        if self.task == "detection":
            return sum(self.model.detector(*detector_targets(batch)).values())
        logits = self.model(*model_inputs(self.arch, batch))
        if isinstance(logits, tuple):  # deep supervision (lab4.unetplusplus): every head
            return sum(batch_loss(self.task, x, batch["target"], self.class_weights)
                       for x in logits) / len(logits)
        return batch_loss(self.task, logits, batch["target"], self.class_weights)

    def train(self, mode: bool = True) -> Objective:
        super().train(mode)
        if self.frozen_norm:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


def batch_loss(task: str, logits: torch.Tensor, target: torch.Tensor,
               class_weights: torch.Tensor | None = None) -> torch.Tensor:
    if task == "segmentation" and logits.shape[1] == 1:
        # a binary net's foreground logit x (lab4 models): cross-entropy over [0, x] is BCE(x)
        logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
    loss = nn.functional.cross_entropy(logits, target, weight=class_weights,
                                       ignore_index=IGNORE)  # excluded segments: no loss
    if task == "segmentation":
        loss = loss + soft_dice_loss(logits, target)
    return loss


# --- optimiser and schedule ------------------------------------------------------------------

def make_optimizer(model: nn.Module, name: str | None, lr: float, task: str,
                   weight_decay: float | None = None) -> torch.optim.Optimizer:
    """Adam, AdamW, or SGD with momentum 0.9 and Nesterov (detection's default); weight
    decay None: the optimiser's default here (1e-4 for SGD and AdamW, none for Adam)."""
    name = name or ("sgd" if task == "detection" else "adam")
    decay = DEFAULT_WEIGHT_DECAY[name] if weight_decay is None else weight_decay
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM, nesterov=True,
                               weight_decay=decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=decay)


def make_schedule(optimizer: torch.optim.Optimizer, name: str, epochs: int,
                  steps_per_epoch: int, warmup: int = 0) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per batch: cosine to 0 over the run, x0.1 every third of it, flat, or
    one-cycle (up to lr over the first 30 %, then down; torch's OneCycleLR). `warmup` steps
    ramp the others up linearly (a detector's first SGD steps would blow up at full lr)."""
    total = max(1, epochs * steps_per_epoch)
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total)
    every = max(1, epochs // 3) * steps_per_epoch

    def factor(step: int) -> float:
        ramp = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
        if name == "cosine":
            return ramp * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        if name == "step":
            return ramp * 0.1 ** (step // every)
        return ramp

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
