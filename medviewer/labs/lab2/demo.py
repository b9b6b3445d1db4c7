"""Train lab 2's shipped model: nodule / no nodule per slice on chest CT phantoms.

    python -m medviewer.labs.lab2.demo        # rewrites models/lab2-nodule-slice

Light ResNet-style backbone (lab2.resnet_small_agesex) with the lab's age/sex fusion, on
previous / current / next slices at 128 x 128. Training and validation phantoms come from
disjoint seeds (different anatomy sizes, nodules, noise); the demo study's CT (seed 1, its
four fixed nodules) is a third, untouched check. About 2 minutes on one free CPU core.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from torch import nn

from medviewer.core import demo as demo_study
from medviewer.core import synthetic as syn
from medviewer.inference.manifest import InputSpec
from medviewer.inference.preprocess import normalise
from medviewer.inference.registry import shipped_models_dir
from medviewer.labs.architectures import ARCHITECTURES
from medviewer.labs.lab2 import data
from medviewer.labs.lab2.models import build_resnet_small_agesex
from medviewer.training import plan
from medviewer.training.augment import Augment
from medviewer.training.export import export_model
from medviewer.training.plan import Plan

MODEL_ID = "lab2-nodule-slice"
ARCH = "lab2.resnet_small_agesex"
COMMAND = "python -m medviewer.labs.lab2.demo"
TRAIN_SEEDS = list(range(1000, 1040))
VALIDATION_SEEDS = list(range(9000, 9012))
PLAN = Plan(epochs=6, batch=32, lr=2e-3, optimizer="adamw", weight_decay=1e-4,
            schedule="onecycle")
# a nodule is a nodule on either side: mirror half the slices, nothing else
AUGMENT = Augment(intensity=0.0, scale=0.0, shift=0.0, flip=True)
COLOURS = ("#4daf4a", "#e41a1c")


def nodule_probability(model: nn.Module, x: np.ndarray, extras: np.ndarray) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), 64):
            logits = model(torch.from_numpy(x[i:i + 64].astype(np.float32)),
                           torch.from_numpy(extras[i:i + 64]))
            out.append(torch.softmax(logits, dim=1)[:, 1].numpy())
    return np.concatenate(out)


def scores(y: np.ndarray, p: np.ndarray) -> dict:
    predicted = (p >= 0.5).astype(int)
    return {"accuracy": round(float(accuracy_score(y, predicted)), 4),
            "f1": round(float(f1_score(y, predicted)), 4),
            "roc_auc": round(float(roc_auc_score(y, p)), 4),
            "n": int(len(y)), "positives": int(y.sum())}


def demo_ct_set(spec: InputSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every lung slice of the demo study's CT (seed 1, DEMO_NODULES), made in memory."""
    shape, spacing = demo_study.CT_SHAPE, demo_study.CT_SPACING
    hu, _ = syn.ct_chest_phantom(shape, spacing, seed=1)
    labels = syn.ct_chest_labels(shape, spacing)
    nodule = (labels == syn.CHEST_LABELS["nodule"]).any(axis=(1, 2))
    lung = (labels == syn.CHEST_LABELS["lung"]).any(axis=(1, 2)) | nodule
    case = data.Case(1, hu, nodule, lung, dict(demo_study.CHEST), spacing)
    return data.samples(case, np.flatnonzero(lung), spec)


def manifest_fields(spec: InputSpec, metrics: dict, seed: int, seconds: tuple[float, float]
                    ) -> dict:
    spec_dict = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items()}
    return {
        "id": MODEL_ID, "title": "Nodule on this slice (Lab 2, light ResNet + age/sex)",
        "plugin": "lab2", "version": "1.0.0",
        "labels": [{"name": n, "colour": c} for n, c in zip(data.LABELS, COLOURS, strict=True)],
        "input": spec_dict, "metrics": metrics,
        "provenance": {
            "command": COMMAND, "seed": seed, "pretrained": "none: trained from scratch",
            "backbone": f"{ARCH}: stem + 4 BasicBlocks (16-128 channels), ~0.3 M weights; "
                        "the lab's full VGG16 / ResNet50 / Swin-56 are registered as "
                        "lab2.vgg16, lab2.resnet50_agesex, lab2.swin56_agesex",
            "data": f"{len(TRAIN_SEEDS)} chest CT phantoms (seeds {TRAIN_SEEDS[0]}-"
                    f"{TRAIN_SEEDS[-1]}), 256x256 matrix, 300 mm high, 2.0-3.0 mm slices, "
                    "320-420 mm field of view, 2-5 random nodules of 6-20 mm, random age/sex; "
                    "all nodule slices + ~2 lung slices without a nodule per nodule slice",
            "optimiser": f"AdamW lr {PLAN.lr} one-cycle, weight decay {PLAN.weight_decay}, "
                         f"CrossEntropy, {PLAN.epochs} epochs, batch {PLAN.batch}, left-right "
                         "flips (medviewer.training's loop)", "plan": asdict(PLAN),
            "torch": torch.__version__, "python": platform.python_version(),
            # wall clock and CPU time of the training loop (the machine may be shared)
            "train_seconds": round(seconds[0], 1), "train_cpu_seconds": round(seconds[1], 1)},
        "options": {"pipeline": "classification"},
        "description": "Scores each CT slice for a lung nodule, from the slice and its two "
                       "neighbours (lung window) plus the patient's age and sex. Trained on "
                       "synthetic phantoms only: a teaching model, not for clinical use.",
    }


def train(out_dir: Path, *, seed: int = 0) -> list[Path]:
    """Build the phantom sets, train, measure on held-out phantoms and the demo CT, export."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    x, extras, y = data.build_set(TRAIN_SEEDS, train=True)
    mean, std = float(x.mean(dtype=np.float64)), float(x.std(dtype=np.float64))
    spec = replace(data.INPUT, mean=(round(mean, 4),) * 3, std=(round(std, 4),) * 3)
    x = normalise(x, spec).astype(np.float16)
    model = build_resnet_small_agesex(**ARCHITECTURES[ARCH].default_options)
    outcome = plan.train(model, ARCHITECTURES[ARCH], "classification",
                         plan.samples(x, y, extras, AUGMENT), PLAN, seed=seed, name=MODEL_ID)
    seconds = (outcome.seconds, outcome.cpu_seconds)
    xv, ev, yv = data.build_set(VALIDATION_SEEDS, train=False, spec=spec)
    xd, ed, yd = demo_ct_set(spec)
    metrics = {**scores(yv, nodule_probability(model, xv, ev)),
               "split": f"every lung slice of {len(VALIDATION_SEEDS)} held-out phantoms "
                        f"(seeds {VALIDATION_SEEDS[0]}-{VALIDATION_SEEDS[-1]}, never trained "
                        "on); positive = a nodule covers a voxel of the slice; threshold 0.5",
               "demo_ct": {**scores(yd, nodule_probability(model, xd, ed)),
                           "split": "every lung slice of the demo study's CT (DEMO-0001)"},
               "train_samples": int(len(y)), "final_train_loss": plan.final_loss(outcome)}
    folder = Path(out_dir) / MODEL_ID
    example = (torch.from_numpy(xv[:4].astype(np.float32)), torch.from_numpy(ev[:4]))
    export_model(model, ARCHITECTURES[ARCH], folder, manifest_fields(spec, metrics, seed, seconds),
                 inputs=example)
    return [folder]


if __name__ == "__main__":
    for path in train(shipped_models_dir()):
        print(path)
