"""A training plan as data, and training a model with it in this process (no job file).

The labs' demo recipes (labs/labN/demo.py) build their phantom data and model, then train
here, with the loop (loop.fit), losses, optimisers and schedules (recipes) that train a
user's model in `medviewer train JOB.json`. What makes each demo model good - epochs or
steps, batch, learning rate, schedule, class weights, frozen BatchNorm - is its Plan, which
its manifest records.

Training runs without a validation split: each demo is scored afterwards on its own held-out
phantoms, and picking the best epoch on those would leak them into the model, so the final
weights are the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from medviewer.training import loop, recipes
from medviewer.training.datasets import Case, CaseDataset, collate_detection


@dataclass(frozen=True)
class Plan:
    """How long and how fast to train (see recipes.make_optimizer / make_schedule)."""

    epochs: int
    batch: int
    lr: float
    optimizer: str | None = None  # "adam" | "adamw" | "sgd"; None: the task's default
    weight_decay: float | None = None  # None: the optimiser's default
    schedule: str = "cosine"  # "cosine" | "step" | "onecycle" | "none"
    warmup: int = 0  # steps of linear warm-up (not with "onecycle": it has its own)
    # per epoch, `steps` batches drawn at random with replacement; None: one shuffled pass
    steps: int | None = None
    class_weights: tuple[float, ...] | None = None  # CrossEntropy weight per label
    frozen_norm: bool = False  # BatchNorm keeps its statistics (fine-tuning a trained net)


def samples(images: np.ndarray, targets: Sequence[Any], extras: np.ndarray | None = None,
            augment: Callable[[dict], dict] | None = None) -> Dataset:
    """Arrays of samples (targets: class indices, label maps or {"boxes", "labels"}) as the
    loop's dataset; one case, since demo phantoms have no patients to split by."""
    case = Case("demo", "demo", "demo", images, list(targets), list(range(len(targets))),
                extras)
    return CaseDataset([case], augment)


def make_setup(model: nn.Module, arch: Any, task: str, data: Dataset, plan: Plan,
               seed: int) -> loop.Setup:
    """The loop's Setup on the CPU, one process, no validation, final weights kept."""
    objective = recipes.Objective(model, arch, task, plan.class_weights, plan.frozen_norm)
    collate = collate_detection if task == "detection" else default_collate
    draws = plan.steps * plan.batch if plan.steps else None
    loader, sampler = loop.make_loader(data, collate, plan.batch, seed, draws=draws)
    steps = loop.steps_per_epoch(loader, None)
    optimizer = recipes.make_optimizer(model, plan.optimizer, plan.lr, task, plan.weight_decay)
    schedule = recipes.make_schedule(optimizer, plan.schedule, plan.epochs, steps, plan.warmup)
    return loop.Setup(model=model, objective=objective, arch=arch, task=task, labels=[],
                      optimizer=optimizer, schedule=schedule, loader=loader, steps=steps,
                      validation=None, device=torch.device("cpu"), epochs=plan.epochs,
                      keep_best=False, sampler=sampler)


def train(model: nn.Module, arch: Any, task: str, data: Dataset, plan: Plan, *, seed: int,
          name: str) -> loop.Outcome:
    """Train `model` in place (left in eval mode), printing one line per epoch as `name`."""
    outcome = loop.fit(make_setup(model, arch, task, data, plan, seed), _printer(name))
    model.eval()
    return outcome


def final_loss(outcome: loop.Outcome) -> float:
    """The last epoch's mean training loss (the manifests' final_train_loss)."""
    return round(float(outcome.history[-1]["train_loss"]), 4)


def _printer(name: str) -> loop.Emit:
    """About ten lines per run, however many epochs."""

    def emit(event: dict[str, Any]) -> None:
        every = max(1, int(event.get("epochs", 1)) // 10)
        if event["event"] == "epoch" and (event["epoch"] % every == 0
                                          or event["epoch"] == event["epochs"]):
            print(f"{name}: epoch {event['epoch']}/{event['epochs']} loss "
                  f"{event['train_loss']}", flush=True)

    return emit
