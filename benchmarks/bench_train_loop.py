"""Training-loop throughput: medviewer's loop against a bare PyTorch loop, same run.

    python3 benchmarks/bench_train_loop.py [--model lab4-chest-unet] [--repeat 5] [--steps 30]
        [--epochs 3] [--batch 8] [--threads 1] [--device cpu|cuda]

Both loops train the same architecture (fresh copies of the same initial weights) on the same
DataLoader (the job's demo cases, augmentation off so data loading is the same cheap path),
with the same optimiser, schedule, batch size and threads. The bare loop is what a tutorial
writes: forward, loss, zero_grad, backward, step, schedule.step, nothing else. Ours runs
`loop.run_epoch` with its progress events (to a no-op sink). Repeats alternate the two; the
figure is the median ratio ours / bare of samples per second (target >= 0.95).
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from medviewer.training import loop, recipes, run  # noqa: E402
from medviewer.training.distributed import World  # noqa: E402


def make_setup(model: str, batch: int, steps: int, device: str, folder: Path) -> loop.Setup:
    job = {"model": model, "init": "current", "data": {"demo": 6}, "epochs": 1,
           "batch_size": batch, "lr": 1e-4, "augment": False, "device": device,
           "max_steps_per_epoch": steps, "out": str(folder / "run"), "early_stopping": None}
    path = folder / "job.json"
    path.write_text(json.dumps(job), encoding="utf-8")
    p = run.prepare(path, World())
    built = recipes.build_model(p.manifest, "current")
    return run.make_setup(p, World(), built, run.pick_device(p.job, World()))


def fresh(s: loop.Setup, initial: dict) -> tuple[torch.nn.Module, torch.optim.Optimizer, object]:
    model = copy.deepcopy(s.model)
    model.load_state_dict(initial)
    optimizer = recipes.make_optimizer(model, None, 1e-4, s.task)
    return model, optimizer, recipes.make_schedule(optimizer, "cosine", 1, s.steps)


def bare_epochs(s: loop.Setup, initial: dict, epochs: int) -> float:
    """samples/s of the textbook loop (classification / segmentation) over `epochs` passes."""
    model, optimizer, schedule = fresh(s, initial)
    model.train()
    samples, start = 0, time.perf_counter()
    for _ in range(epochs):
        samples += bare_pass(s, model, optimizer, schedule)
    return samples / (time.perf_counter() - start)


def bare_pass(s: loop.Setup, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
              schedule: object) -> int:
    samples = 0
    for step, batch in enumerate(s.loader, 1):
        image, target = batch["image"].to(s.device), batch["target"].to(s.device)
        inputs = [batch["extras"].to(s.device) if n == "extras" else image
                  for n in s.arch.input_names]
        logits = model(*inputs)
        loss = torch.nn.functional.cross_entropy(logits, target)
        if s.task == "segmentation":
            loss = loss + recipes.soft_dice_loss(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        samples += int(image.shape[0])
        if step >= s.steps:
            break
    loss.item()  # wait for the device, as our loop's last event does
    return samples


def our_epochs(s: loop.Setup, initial: dict, epochs: int) -> float:
    model, optimizer, schedule = fresh(s, initial)
    ours = copy.copy(s)
    ours.model, ours.optimizer, ours.schedule = model, optimizer, schedule
    ours.objective = recipes.Objective(model, s.arch, s.task)
    clock = loop.Clock(s.steps * epochs)
    start = time.perf_counter()
    for epoch in range(epochs):
        loop.run_epoch(ours, epoch, clock, lambda event: None)
    return epoch_samples(s) * epochs / (time.perf_counter() - start)


def epoch_samples(s: loop.Setup) -> int:
    """Samples in the first `s.steps` batches of the loader (the last one may be partial)."""
    n, b = len(s.loader.sampler), s.loader.batch_size
    sizes = [b] * (n // b) + ([n % b] if n % b and not s.loader.drop_last else [])
    return sum(sizes[:s.steps])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lab4-chest-unet")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30, help="at most, per epoch")
    ap.add_argument("--epochs", type=int, default=3, help="passes per repeat")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        s = make_setup(args.model, args.batch, args.steps, args.device, Path(tmp))
        if s.task == "detection":
            raise SystemExit("detection has no textbook loop here; use a classifier or lab 4")
        initial = copy.deepcopy(s.model.state_dict())
        our_epochs(s, initial, 1), bare_epochs(s, initial, 1)  # warm-up: allocator, caches
        bare, ours = [], []
        for _ in range(args.repeat):
            bare.append(bare_epochs(s, initial, args.epochs))
            ours.append(our_epochs(s, initial, args.epochs))
    ratios = [o / b for o, b in zip(ours, bare, strict=True)]
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"model {args.model} ({s.task}), batch {args.batch}, {args.epochs} x {s.steps} steps "
          "per repeat, "
          f"{args.threads} thread(s), device {s.device}, torch {torch.__version__}")
    print(f"bare PyTorch loop: {statistics.median(bare):9.1f} samples/s  "
          f"(runs: {', '.join(f'{v:.1f}' for v in bare)})")
    print(f"medviewer loop:    {statistics.median(ours):9.1f} samples/s  "
          f"(runs: {', '.join(f'{v:.1f}' for v in ours)})")
    print(f"ratio medviewer / bare: median {statistics.median(ratios):.3f} "
          f"(runs: {', '.join(f'{r:.3f}' for r in ratios)}; target >= 0.95)")


if __name__ == "__main__":
    main()
