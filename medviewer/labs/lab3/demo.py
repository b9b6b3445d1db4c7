"""Train and export lab 3's four shipped fusion models on one shared set of phantom series.

    python -m medviewer.labs.lab3.demo [--out models] [--seed 0] [--only late_fusion ...]

Question per series: does it hold a nodule of 10 mm or more? Each method (single slice,
early fusion, late fusion, 3D CNN) trains on the same random phantoms and is scored on the
same held-out ones (disjoint seed range): accuracy, F1 and ROC-AUC (scikit-learn), plus its
verdict on the demo CT and on a phantom with no nodule.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medviewer.core.synthetic import ct_chest_phantom
from medviewer.labs.architectures import ARCHITECTURES
from medviewer.labs.lab3 import data
from medviewer.labs.lab3 import models as _models  # noqa: F401 - registers the architectures
from medviewer.labs.lab3.plugin import series_sample
from medviewer.training import loop, plan
from medviewer.training.augment import Augment
from medviewer.training.export import export_model
from medviewer.training.plan import Plan

COMMAND = "python -m medviewer.labs.lab3.demo"
SETS = {"train": 400, "validation": 160}
# a nodule is a nodule in either lung: mirror half the series, nothing else
AUGMENT = Augment(intensity=0.0, scale=0.0, shift=0.0, flip=True)


def _plan(steps: int, batch: int, lr: float = 3e-3, frozen_norm: bool = False) -> Plan:
    """`steps` random batches (of `batch` series) in ten epochs, Adam, one-cycle."""
    return Plan(epochs=10, steps=steps // 10, batch=batch, lr=lr, optimizer="adam",
                weight_decay=1e-4, schedule="onecycle", frozen_norm=frozen_norm)


@dataclass(frozen=True)
class Method:
    model_id: str
    arch: str
    title: str
    plan: Plan
    # late fusion starts from the single-slice model's 2D network and fine-tunes it with the
    # fusion weights, BatchNorm statistics kept (frozen_norm): from scratch, averaging 12
    # slabs' answers buries the one slab with the nodule and it learned nothing in the same time
    start_from: str | None = None


# each trains in 0.5-2 min of one CPU core; late fusion runs its 2D network on every
# slab, so it takes smaller batches
METHODS = {
    "single_slice": Method("lab3-fusion-single", "lab3.single_slice_small", "Single slice",
                           _plan(600, 16)),
    "early_fusion": Method("lab3-fusion-early", "lab3.early_fusion_small", "Early fusion",
                           _plan(600, 16)),
    "late_fusion": Method("lab3-fusion-late", "lab3.late_fusion_small", "Late fusion",
                          _plan(300, 8, lr=3e-4, frozen_norm=True), start_from="single_slice"),
    "cnn3d": Method("lab3-fusion-3d", "lab3.cnn3d_small", "3D CNN", _plan(400, 16)),
}


def probabilities(model: nn.Module, samples: np.ndarray, batch: int = 32) -> np.ndarray:
    """P(nodule >= 10 mm) per sample."""
    model.eval()
    with torch.no_grad():
        logits = [model(torch.from_numpy(samples[i:i + batch]).float())
                  for i in range(0, len(samples), batch)]
    return torch.cat(logits).softmax(dim=1)[:, 1].numpy()


def held_out_metrics(p: np.ndarray, verdicts: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    predicted = (p >= 0.5).astype(int)
    return {"accuracy": round(float(accuracy_score(verdicts, predicted)), 4),
            "f1": round(float(f1_score(verdicts, predicted)), 4),
            "roc_auc": round(float(roc_auc_score(verdicts, p)), 4),
            "positives": int(verdicts.sum()), "n": int(len(verdicts)),
            "split": f"{len(verdicts)} random chest phantoms from a seed range disjoint from "
                     "training (half drawn with a nodule of 10-25 mm, half with none or only "
                     "3-7 mm ones), threshold 0.5"}


def reference_cases() -> dict[str, np.ndarray]:
    """Series samples of the demo CT (nodules 6/10/15/20 mm) and of a nodule-free phantom."""
    shape, spacing = (120, 512, 512), (2.5, 0.7, 0.7)
    demo, _ = ct_chest_phantom(shape, spacing, seed=1)
    clear, _ = ct_chest_phantom(shape, spacing, seed=2, nodules=())
    return {"demo_ct": series_sample(demo, data.SPEC)[None],
            "no_nodule_phantom": series_sample(clear, data.SPEC)[None]}


def manifest_fields(name: str, metrics: dict[str, Any], seed: int,
                    seconds: tuple[float, float]) -> dict[str, Any]:
    """seconds: (wall, CPU) of the training loop; CPU is what a busy machine does not inflate."""
    method, spec = METHODS[name], data.SPEC
    start = METHODS[method.start_from].model_id if method.start_from else None
    return {
        "id": method.model_id, "title": f"{method.title}: nodule >= 10 mm (lab 3 demo)",
        "plugin": "lab3", "version": "1.0.0",
        "labels": [{"name": n, "colour": c} for n, c in zip(data.LABELS, data.COLOURS,
                                                             strict=True)],
        "input": {"size": list(spec.size), "channels": spec.channels, "context": spec.context,
                  "window": list(spec.window), "mean": list(spec.mean), "std": list(spec.std),
                  "extras": [], "modalities": list(spec.modalities)},
        "metrics": metrics, "options": {"pipeline": "fusion", "projection": "mip",
                                        "method": name},
        "provenance": {"command": COMMAND, "seed": seed,
                       "pretrained": "none: trained from scratch" + (
                           f" (its 2D network starts from {start}, trained just before on "
                           "the same series)" if start else ""),
                       "backbone": method.arch,
                       "data": f"{SETS['train']} random chest CT phantom series "
                               "(medviewer.core.synthetic), 40-90 slices at 256^2, noise "
                               "4-25 HU, random nodules; 12 slab MIPs at 128^2",
                       "recipe": {**asdict(method), "optimiser": "Adam, one-cycle",
                                  "loss": "cross-entropy", "augment": "left-right flip",
                                  "loop": "medviewer.training"},
                       "torch": torch.__version__, "train_seconds": round(seconds[0], 1),
                       "train_cpu_seconds": round(seconds[1], 1), "threads": 1},
        "description": f"{ARCHITECTURES[method.arch].description} Says whether the series "
                       "holds a lung nodule of 10 mm or more, from 12 slab maximum-intensity "
                       "projections of it. A light backbone instead of the lab's ResNet50 "
                       "keeps the folder small. Trained on phantoms only: a teaching model."}


def fit_method(name: str, sets: dict, seed: int, trained: dict[str, nn.Module]
               ) -> tuple[nn.Module, loop.Outcome]:
    """Build and train one method; late fusion starts from the trained single-slice net."""
    method = METHODS[name]
    torch.manual_seed(seed)
    arch = ARCHITECTURES[method.arch]
    model = arch.build(num_classes=len(data.LABELS), **arch.default_options)
    if method.start_from:
        model.net.load_state_dict(trained[method.start_from].net.state_dict())
    outcome = plan.train(model, arch, "classification", plan.samples(*sets["train"],
                         augment=AUGMENT), method.plan, seed=seed, name=method.model_id)
    return model, outcome


def export_method(name: str, fitted: tuple, sets: dict, cases: dict, out_dir: Path,
                  seed: int) -> Path:
    """Score on the held-out series and the reference cases, then export the folder."""
    model, outcome = fitted
    method = METHODS[name]
    seconds = (outcome.seconds, outcome.cpu_seconds)
    # held-out numbers at the top level (what the viewer and `medviewer models` show), checks
    # on named reference cases beside them
    metrics = {**held_out_metrics(probabilities(model, sets["validation"][0]),
                                  sets["validation"][1]),
               "final_train_loss": plan.final_loss(outcome),
               "demo_checks": {f"p_positive_{case}": round(float(probabilities(model, x)[0]), 4)
                               for case, x in cases.items()}}
    export_model(model.eval(), ARCHITECTURES[method.arch], out_dir / method.model_id,
                 manifest_fields(name, metrics, seed, seconds),
                 inputs=(torch.from_numpy(sets["validation"][0][:2]).float(),))
    print(f"{method.model_id}: {metrics} {seconds[1]:.0f} s CPU", flush=True)
    return out_dir / method.model_id


def train(out_dir: Path, *, seed: int = 0, only: list[str] | None = None) -> list[Path]:
    """Train, score and export the four fusion models (or `only` some) into `out_dir`."""
    torch.set_num_threads(1)
    wanted = list(METHODS) if not only else list(only)
    needed = set(wanted) | {METHODS[m].start_from for m in wanted if METHODS[m].start_from}
    sets = {split: data.make_set(split, count, seed) for split, count in SETS.items()}
    cases = reference_cases()
    trained: dict[str, nn.Module] = {}
    folders = []
    for name in (m for m in METHODS if m in needed):  # METHODS order: single before late
        fitted = fit_method(name, sets, seed, trained)
        trained[name] = fitted[0]
        if name in wanted:
            folders.append(export_method(name, fitted, sets, cases, Path(out_dir), seed))
    return folders


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[3] / "models")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", choices=list(METHODS))
    args = parser.parse_args(argv)
    for folder in train(args.out, seed=args.seed, only=args.only):
        print(folder)


if __name__ == "__main__":
    main()
