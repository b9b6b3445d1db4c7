"""The epoch loop: train, validate, keep the best weights, stop early, report progress.

Lean on purpose (a benchmark holds it to a bare PyTorch loop's samples/s): the loss stays a
tensor between progress events, so there is one host sync per event, not per step, and no
file is written per step. The best weights go to best.safetensors atomically when the main
metric improves; the candidate is exported from them after the loop (run.py).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from medviewer.training import recipes
from medviewer.training.evaluate import DETAIL_KEYS, Collector, json_safe, main_metric

EVENTS_PER_EPOCH = 4
BEST_FILE = "best.safetensors"
Emit = Callable[[dict[str, Any]], None]


@dataclass
class Setup:
    """Everything the loop needs, made once by run.py (or a benchmark / test)."""

    model: nn.Module  # the plain model (validation, checkpoints)
    objective: nn.Module  # Objective, possibly wrapped in DistributedDataParallel
    arch: Any
    task: str
    labels: list[str]
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    loader: DataLoader
    steps: int  # per epoch
    validation: DataLoader | None
    device: torch.device
    epochs: int
    patience: int | None = None
    min_delta: float = 0.0
    run_dir: Path | None = None  # where best.safetensors goes; None: keep it in memory
    keep_best: bool = True  # False on ranks > 0: rank 0 keeps the checkpoint
    world_size: int = 1
    sampler: Any = None


@dataclass
class Outcome:
    epochs_run: int = 0
    best_epoch: int = 0
    best_metric: float | None = None
    main_metric: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None  # when run_dir is None
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # what a busy, shared machine does not inflate


def make_loader(dataset: Dataset, collate: Callable, batch_size: int, seed: int,
                world_size: int = 1, rank: int = 0, draws: int | None = None
                ) -> tuple[DataLoader, Any]:
    """Shuffled batches (a DistributedSampler's share per rank); no worker processes.

    draws: items drawn at random, with replacement, per epoch instead of one pass (a recipe
    counted in steps: a few thousand draws from a large phantom set). One process only.
    """
    generator = torch.Generator().manual_seed(seed)
    if draws:
        sampler = RandomSampler(dataset, replacement=True, num_samples=draws,
                                generator=generator)
    elif world_size > 1:
        sampler = DistributedSampler(dataset, world_size, rank, shuffle=True, seed=seed)
    else:
        sampler = RandomSampler(dataset, generator=generator)
    n = len(sampler)
    # BatchNorm cannot learn from a batch of one: drop a lone last sample
    drop_last = n > batch_size and n % batch_size == 1
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate,
                        num_workers=0, drop_last=drop_last,
                        pin_memory=torch.cuda.is_available())
    return loader, sampler


def steps_per_epoch(loader: DataLoader, max_steps: int | None) -> int:
    return max(1, min(len(loader), max_steps) if max_steps else len(loader))


class Clock:
    """Progress over the whole run and the ETA from the time it has taken so far."""

    def __init__(self, total_steps: int) -> None:
        self.start = time.perf_counter()
        self.total, self.done = max(1, total_steps), 0

    @property
    def progress(self) -> float:
        return min(1.0, self.done / self.total)

    def eta(self) -> float:
        elapsed = time.perf_counter() - self.start
        p = self.progress
        return round(elapsed / p * (1 - p), 1) if p > 0 else 0.0


class Window:
    """Loss and samples since the last step event: the loss stays on the device until then."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), device=device)
        self.steps, self.samples, self.start, self.total = 0, 0, time.perf_counter(), 0.0

    def add(self, loss: torch.Tensor, samples: int) -> None:
        self.loss += loss.detach()
        self.steps += 1
        self.samples += samples

    def flush(self) -> tuple[float, float]:
        """(mean loss, samples/s) of the window (one host sync), then start a new one."""
        value = self.loss.item()
        self.total += value
        mean = value / max(self.steps, 1)
        rate = self.samples / max(time.perf_counter() - self.start, 1e-9)
        self.loss.zero_()
        self.steps, self.samples, self.start = 0, 0, time.perf_counter()
        return mean, rate


def run_epoch(s: Setup, epoch: int, clock: Clock, emit: Emit) -> float:
    """One pass over the training batches; the mean loss."""
    s.objective.train()
    if s.sampler is not None and hasattr(s.sampler, "set_epoch"):
        s.sampler.set_epoch(epoch)
    every, window, step = max(1, s.steps // EVENTS_PER_EPOCH), Window(s.device), 0
    on_cpu = s.device.type == "cpu"  # the batches are there already
    for step, batch in enumerate(s.loader, 1):
        loss = s.objective(batch if on_cpu else recipes.to_device(batch, s.device))
        s.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        s.optimizer.step()
        s.schedule.step()
        window.add(loss, recipes.batch_size_of(batch))
        clock.done += 1
        if step % every == 0 or step == s.steps:
            mean, rate = window.flush()
            emit({"event": "step", "epoch": epoch + 1, "step": step, "steps": s.steps,
                  "loss": _num(mean), "samples_per_s": round(rate * s.world_size, 1),
                  "eta_s": clock.eta(), "progress": round(clock.progress, 4)})
        if step >= s.steps:
            break
    if window.steps:
        window.flush()
    return window.total / max(step, 1)


@torch.no_grad()
def validate(s: Setup) -> tuple[float | None, dict[str, Any]]:
    """(mean validation loss or None for detection, the metrics' scores) of the torch model."""
    if s.validation is None:
        return None, {}
    s.model.eval()
    collector = Collector(s.task, s.labels)
    loss_sum, count = 0.0, 0
    for batch in s.validation:
        batch = recipes.to_device(batch, s.device)
        if s.task == "detection":
            found = s.model.detector([item["image"] for item in batch])
            for item, f in zip(batch, found, strict=True):
                collector.add_boxes(tuple(f[k].cpu().numpy() for k in ("boxes", "scores",
                                                                       "labels")),
                                    _cpu(item["target"]), item["case"])
            continue
        logits = s.model(*recipes.model_inputs(s.arch, batch))
        n = int(logits.shape[0])
        loss_sum += float(recipes.batch_loss(s.task, logits, batch["target"])) * n
        count += n
        collector.add_logits(logits.float().cpu().numpy(), batch["target"].cpu().numpy(),
                             batch["case"])
    scores = json_safe(collector.scores()) if collector.cases else {}
    return (loss_sum / count if count else None), scores


def _cpu(target: dict) -> dict:
    return {k: v.cpu().numpy() for k, v in target.items()}


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def sync_buffers(model: nn.Module, world_size: int) -> None:
    """BatchNorm statistics from rank 0 on every rank: same weights, same validation."""
    if world_size > 1:
        import torch.distributed as dist

        for buffer in model.buffers():
            dist.broadcast(buffer, 0)


def fit(s: Setup, emit: Emit) -> Outcome:
    """The epoch loop with validation, the best checkpoint and early stopping."""
    out, clock, stale = Outcome(), Clock(s.epochs * s.steps), 0
    start, cpu = time.perf_counter(), time.process_time()
    for epoch in range(s.epochs):
        train_loss = run_epoch(s, epoch, clock, emit)
        sync_buffers(s.model, s.world_size)
        val_loss, scores = validate(s)
        out.main_metric = main_metric(s.task, scores) if scores else None
        value = scores.get(out.main_metric) if out.main_metric else None
        # no usable score (no validation truth): keep the latest weights, never stop early
        best = (_improved(value, out.best_metric, s.min_delta) or out.best_epoch == 0
                or not _finite(value))
        if best:
            out.best_epoch, stale = epoch + 1, 0
            out.best_metric = value if _finite(value) else out.best_metric
            _keep_best(s, out)
        else:
            stale += 1
        out.epochs_run = epoch + 1
        event = {"event": "epoch", "epoch": epoch + 1, "epochs": s.epochs,
                 "train_loss": _num(train_loss), "val_loss": _num(val_loss),
                 "metrics": _headline(scores), "main_metric": out.main_metric, "best": best,
                 "lr": s.optimizer.param_groups[0]["lr"], "eta_s": clock.eta(),
                 "progress": round((epoch + 1) / s.epochs, 4)}
        out.history.append(event)
        emit(event)
        if s.patience is not None and stale >= s.patience and epoch + 1 < s.epochs:
            emit({"event": "early_stop", "epoch": epoch + 1,
                  "message": f"Stopped after epoch {epoch + 1}: {out.main_metric} has not "
                             f"improved for {stale} epochs (best {out.best_metric} at epoch "
                             f"{out.best_epoch})."})
            break
    out.seconds = time.perf_counter() - start
    out.cpu_seconds = time.process_time() - cpu
    return out


def _headline(scores: dict[str, Any]) -> dict[str, Any]:
    """The numbers for the live curves (per-case tables and ROC points stay out)."""
    return {k: v for k, v in scores.items()
            if k not in DETAIL_KEYS and (isinstance(v, (int, float)) or v is None)}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _improved(value: Any, best: float | None, min_delta: float) -> bool:
    return _finite(value) and (best is None or value > best + min_delta)


def _keep_best(s: Setup, out: Outcome) -> None:
    if not s.keep_best:
        return
    state = {k: v.detach().cpu().clone() for k, v in s.model.state_dict().items()}
    if s.run_dir is None:
        out.best_state = state
        return
    from safetensors.torch import save_file

    path = Path(s.run_dir) / BEST_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{BEST_FILE}-{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, path)
