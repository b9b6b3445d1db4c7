"""Train lab 1's shipped models on scikit-learn's digits, with held-out test metrics.

    python -m medviewer.labs.lab1.demo              # rewrites both (train_all's call)
    python -m medviewer.labs.lab1.demo --model mlp  # models/lab1-digits-mlp only
    python -m medviewer.labs.lab1.demo --model cnn  # models/lab1-digits-cnn only

SimpleNN (fully connected) reads the 64 pixel values; MedicalCNN, the overview's
conv -> pool -> conv -> pool -> fully connected network in its light width, reads the 8 x 8
image. Both see what the viewer's plugin gives them (`digit_features` / `digit_images`).

The train/test split is the demo study's (medviewer.core.demo.digits_split), so the DIGITS
series in the demo study holds only digits this model never saw. Runs in seconds on one core.
"""

from __future__ import annotations

import argparse
import platform
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from torch import nn

from medviewer.core.demo import DIGITS_SEED, DIGITS_TEST_SIZE, digits_split
from medviewer.inference.registry import shipped_models_dir
from medviewer.labs.lab1.models import MEDICAL_CNN_LIGHT, SIMPLENN, SimpleNN
from medviewer.labs.lab1.plugin import DIGIT_SIZE, digit_features, digit_images
from medviewer.training import plan
from medviewer.training.export import export_model
from medviewer.training.plan import Plan

MODEL_ID = "lab1-digits-mlp"
COMMAND = "python -m medviewer.labs.lab1.demo"  # the MLP's manifest keeps this command
PLAN = Plan(epochs=60, batch=64, lr=1e-3, optimizer="adam", schedule="none")
CNN_ID = "lab1-digits-cnn"
CNN_COMMAND = f"{COMMAND} --model cnn"
CNN_PLAN = Plan(epochs=40, batch=64, lr=2e-3, optimizer="adam", schedule="none")
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


def cnn_manifest_fields(metrics: dict, seed: int, seconds: float) -> dict:
    """The CNN's manifest: the MLP's, with its own id, network and command."""
    fields = manifest_fields(metrics, seed, seconds)
    options = MEDICAL_CNN_LIGHT.default_options
    return {**fields, "id": CNN_ID, "title": "Handwritten digits 0-9 (Lab 1 MedicalCNN)",
            "provenance": {
                **fields["provenance"], "command": CNN_COMMAND,
                "backbone": f"MedicalCNN light: conv {options['channels'][0]}, max-pool, conv "
                            f"{options['channels'][1]}, max-pool, FC {options['hidden']} on "
                            "8x8 (the overview's network at a width for 8x8 digits; "
                            "lab1.medical_cnn is the 28x28 MNIST width)",
                "optimiser": f"Adam lr {CNN_PLAN.lr}, CrossEntropy, {CNN_PLAN.epochs} epochs, "
                             f"batch {CNN_PLAN.batch} (medviewer.training's loop)",
                "plan": asdict(CNN_PLAN)},
            "options": {**fields["options"], "layout": "image (1, 8, 8)"},
            "description": "Classifies the digit drawn on each slice with a small convolutional "
                           "network (conv, pool, conv, pool, fully connected; scikit-learn's "
                           "8x8 digits scale). Run it on the demo study's DIGITS series "
                           "(DEMO-0004) beside the SimpleNN."}


def held_out_metrics(model: nn.Module, inputs: np.ndarray, labels: np.ndarray,
                     outcome) -> dict:
    predicted = predict(model, torch.from_numpy(inputs))
    return {
        "accuracy": round(float(accuracy_score(labels, predicted)), 4),
        "f1_macro": round(float(f1_score(labels, predicted, average="macro")), 4),
        "final_train_loss": plan.final_loss(outcome),
        "split": f"held-out test split of scikit-learn's digits ({DIGITS_TEST_SIZE:.0%}, "
                 f"stratified, random_state {DIGITS_SEED}); never used in training",
        "n": len(labels)}


def train(out_dir: Path, *, seed: int = 0, model: str = "both") -> list[Path]:
    """Train SimpleNN (`model` "mlp"), MedicalCNN ("cnn") or both on the digits' training
    split, evaluate on the test split, export each model into `out_dir`."""
    if model == "both":
        return [*train(out_dir, seed=seed, model="mlp"), *train(out_dir, seed=seed, model="cnn")]
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    x_train, x_test, y_train, y_test = digits_split(DIGITS_SEED)
    if model == "cnn":
        arch, net, model_id, schedule = (MEDICAL_CNN_LIGHT,
                                         MEDICAL_CNN_LIGHT.build(**MEDICAL_CNN_LIGHT.default_options),
                                         CNN_ID, CNN_PLAN)
        features, fields = digit_images, cnn_manifest_fields
    else:
        arch, net, model_id, schedule = (SIMPLENN, SimpleNN(**SIMPLENN.default_options),
                                         MODEL_ID, PLAN)
        features, fields = digit_features, manifest_fields
    data = plan.samples(features(x_train), np.asarray(y_train, np.int64))
    outcome = plan.train(net, arch, "classification", data, schedule, seed=seed, name=model_id)
    metrics = held_out_metrics(net, features(x_test), np.asarray(y_test), outcome)
    folder = Path(out_dir) / model_id
    export_model(net, arch, folder, fields(metrics, seed, outcome.seconds),
                 inputs=arch.example_inputs())
    return [folder]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("both", "mlp", "cnn"), default="both",
                        help="mlp: SimpleNN (lab1-digits-mlp); cnn: MedicalCNN (lab1-digits-cnn)")
    parser.add_argument("--out", type=Path, default=shipped_models_dir(), help="models folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for path in train(args.out, seed=args.seed, model=args.model):
        print(path)


if __name__ == "__main__":
    main()
