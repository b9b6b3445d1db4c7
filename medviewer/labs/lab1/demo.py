"""Train lab 1's shipped model: SimpleNN on scikit-learn's digits, held-out test metrics.

    python -m medviewer.labs.lab1.demo        # rewrites models/lab1-digits-mlp

The train/test split is the demo study's (medviewer.core.demo.digits_split), so the DIGITS
series in the demo study holds only digits this model never saw. Runs in seconds on one core.
"""

from __future__ import annotations

import platform
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from torch import nn

from medviewer.core.demo import DIGITS_SEED, DIGITS_TEST_SIZE, digits_split
from medviewer.inference.registry import shipped_models_dir
from medviewer.labs.lab1.models import SIMPLENN, SimpleNN
from medviewer.labs.lab1.plugin import DIGIT_SIZE, digit_features
from medviewer.training import plan
from medviewer.training.export import export_model
from medviewer.training.plan import Plan

MODEL_ID = "lab1-digits-mlp"
COMMAND = "python -m medviewer.labs.lab1.demo"
PLAN = Plan(epochs=60, batch=64, lr=1e-3, optimizer="adam", schedule="none")
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


def predict(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(x).argmax(dim=1).numpy()


def manifest_fields(metrics: dict, seed: int, seconds: float) -> dict:
    return {
        "id": MODEL_ID, "title": "Handwritten digits 0-9 (Lab 1 SimpleNN)", "plugin": "lab1",
        "version": "1.0.0",
        "labels": [{"name": str(d), "colour": c} for d, c in enumerate(COLOURS)],
        "input": {"size": list(DIGIT_SIZE), "channels": 1, "context": "single", "window": None,
                  "mean": [0.0], "std": [1.0], "extras": [], "modalities": ["OT"]},
        "metrics": metrics,
        "provenance": {
            "command": COMMAND, "seed": seed, "pretrained": "none: trained from scratch",
            "backbone": "SimpleNN 64-128-64-10 (the lab's full architecture)",
            "data": "scikit-learn load_digits (1797 8x8 digits), stratified train_test_split "
                    f"test_size={DIGITS_TEST_SIZE} random_state={DIGITS_SEED}",
            "optimiser": f"Adam lr {PLAN.lr}, CrossEntropy, {PLAN.epochs} epochs, batch "
                         f"{PLAN.batch} (medviewer.training's loop)", "plan": asdict(PLAN),
            "torch": torch.__version__, "python": platform.python_version(),
            "train_seconds": round(seconds, 1)},
        "options": {"pipeline": "classification",
                    "scaling": "slice block-averaged to 8x8, min-max stretched to 0..16"},
        "description": "Classifies the digit drawn on each slice (scikit-learn's 8x8 digits "
                       "scale). Run it on the demo study's DIGITS series (DEMO-0004); "
                       "lab1.plugin.write_submission writes the course's id,label CSV.",
    }


def train(out_dir: Path, *, seed: int = 0) -> list[Path]:
    """Train on the digits' training split, evaluate on the test split, export the model."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    x_train, x_test, y_train, y_test = digits_split(DIGITS_SEED)
    data = plan.samples(digit_features(x_train), np.asarray(y_train, np.int64))
    model = SimpleNN(**SIMPLENN.default_options)
    outcome = plan.train(model, SIMPLENN, "classification", data, PLAN, seed=seed, name=MODEL_ID)
    predicted = predict(model, torch.from_numpy(digit_features(x_test)))
    metrics = {
        "accuracy": round(float(accuracy_score(y_test, predicted)), 4),
        "f1_macro": round(float(f1_score(y_test, predicted, average="macro")), 4),
        "final_train_loss": plan.final_loss(outcome),
        "split": f"held-out test split of scikit-learn's digits ({DIGITS_TEST_SIZE:.0%}, "
                 f"stratified, random_state {DIGITS_SEED}); never used in training",
        "n": len(y_test)}
    folder = Path(out_dir) / MODEL_ID
    export_model(model, SIMPLENN, folder, manifest_fields(metrics, seed, outcome.seconds),
                 inputs=SIMPLENN.example_inputs())
    return [folder]


if __name__ == "__main__":
    for path in train(shipped_models_dir()):
        print(path)
