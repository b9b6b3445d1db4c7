"""training.plan: the labs' demo recipes train through the loop (steps, schedules, weights)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from medviewer.training import plan, recipes
from medviewer.training.plan import Plan


class Tiny(nn.Module):
    """A classifier with BatchNorm: enough to see statistics move or stay."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8),
                                 nn.ReLU(), nn.Linear(8, 2))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


class Arch:
    input_names = ("image",)


def tiny_data(n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 1, 4, 4)).astype(np.float16) + y[:, None, None, None]
    return x, y.astype(np.int64)


def test_a_plan_in_steps_draws_that_many_batches_per_epoch_and_learns() -> None:
    torch.manual_seed(0)
    model = Tiny()
    setup = plan.make_setup(model, Arch(), "classification", plan.samples(*tiny_data()),
                            Plan(epochs=3, steps=5, batch=4, lr=0.05, schedule="onecycle"),
                            seed=0)
    assert setup.steps == 5 and len(list(setup.loader)) == 5
    outcome = plan.train(model, Arch(), "classification", plan.samples(*tiny_data()),
                         Plan(epochs=6, steps=5, batch=4, lr=0.05), seed=0, name="tiny")
    losses = [e["train_loss"] for e in outcome.history]
    assert len(losses) == 6 and losses[-1] < losses[0] and not model.training
    assert plan.final_loss(outcome) == round(losses[-1], 4)


def test_frozen_norm_keeps_the_batchnorm_statistics() -> None:
    torch.manual_seed(0)
    model = Tiny()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    plan.train(model, Arch(), "classification", plan.samples(*tiny_data()),
               Plan(epochs=1, batch=8, lr=0.01, frozen_norm=True), seed=0, name="tiny")
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert not torch.equal(model.net[1].weight, Tiny().net[1].weight)  # the rest trained


def test_warm_up_ramps_the_rate_then_cosine_takes_it_to_zero() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = recipes.make_schedule(optimizer, "cosine", 2, 10, warmup=4)
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    cosine = [0.5 * (1 + np.cos(np.pi * step / 20)) for step in range(20)]
    ramp = [min(1.0, (step + 1) / 4) for step in range(20)]
    assert rates == pytest.approx([r * c for r, c in zip(ramp, cosine, strict=True)])
    assert rates[0] == 0.25 and rates[-1] < 0.01


def test_class_weights_weigh_the_cross_entropy() -> None:
    logits, target = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    weights = (1.0, 1.0, 4.0)
    objective = recipes.Objective(nn.Identity(), Arch(), "classification", weights)
    expected = nn.functional.cross_entropy(logits, target, weight=torch.tensor(weights))
    assert objective({"image": logits, "target": target}) == pytest.approx(float(expected))


def test_adamw_and_adam_weight_decay() -> None:
    params = nn.Linear(2, 2)
    assert isinstance(recipes.make_optimizer(params, "adamw", 1e-3, "classification"),
                      torch.optim.AdamW)
    adam = recipes.make_optimizer(params, "adam", 1e-3, "classification", weight_decay=1e-4)
    assert adam.param_groups[0]["weight_decay"] == 1e-4
    assert replace(Plan(1, 1, 1.0), optimizer="sgd").optimizer == "sgd"
