"""Train lab 5's demo model: a light Faster R-CNN that boxes the heart on PA chest phantoms.

    python -m medviewer.labs.lab5.demo [--out models] [--seed 0]

Films come from `chest_xray_phantom` with a random cardiothoracic ratio (0.35-0.70) and a
small random heart shift, drawn at 256, 512 or 1024 px and prepared exactly as the plugin
does (log transform, simplest colour balance, resize to 256 px). Label: "cardiomegaly" when
the phantom's measured CTR > 0.5, else "normal heart". Training films use phantom seeds
10000+, validation films 20000+ with their own CTRs and shifts; the demo study's films
(seeds 2 and 3) are in neither. SGD with momentum and Nesterov, as in the lab, in
medviewer.training's loop.
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from medviewer.core.synthetic import chest_xray_phantom
from medviewer.inference.detection_metrics import ImageBoxes, detection_report
from medviewer.labs.architectures import ARCHITECTURES
from medviewer.labs.lab5.models import DEMO_SIZE, LABELS, DetectorExport, build_light
from medviewer.labs.lab5.plugin import BALANCE_PERCENT, prepare_film
from medviewer.training import loop
from medviewer.training import plan as training_plan
from medviewer.training.augment import Augment
from medviewer.training.plan import Plan

MODEL_ID = "lab5-heart-frcnn"
ARCH = "lab5.fasterrcnn_light"
COMMAND = "python -m medviewer.labs.lab5.demo"
TRAIN_SEEDS = range(10_000, 10_192)
VALIDATION_SEEDS = range(20_000, 20_064)
SOURCE_SIZES = (256, 512, 1024)
CTR_RANGE = (0.35, 0.70)
SHIFT = 0.03  # largest heart shift, unit coordinates
CARDIOMEGALY_CTR = 0.5
COLOURS = {"cardiomegaly": "#e4572e", "normal heart": "#4caf50"}
# SGD (momentum 0.9, Nesterov, weight decay 1e-4), 50 steps of linear warm-up, then cosine
PLAN = Plan(epochs=14, batch=4, lr=0.02, optimizer="sgd", schedule="cosine", warmup=50)
# films differ in exposure even after the contrast steps: a random gamma, nothing else
AUGMENT = Augment(intensity=0.0, scale=0.0, shift=0.0, gamma=0.25)


@dataclass
class Films:
    images: np.ndarray  # (n, 3, DEMO_SIZE, DEMO_SIZE) float32 model inputs
    boxes: np.ndarray  # (n, 4) heart box in the working grid
    labels: np.ndarray  # (n,) 0-based index into LABELS
    ctrs: np.ndarray  # (n,) measured cardiothoracic ratio


def heart_label(ctr: float) -> int:
    """0 cardiomegaly (CTR > 0.5), 1 normal heart: indices into LABELS."""
    return 0 if ctr > CARDIOMEGALY_CTR else 1


def make_films(seeds: range, size: int = DEMO_SIZE) -> Films:
    """One phantom film per seed; its CTR, shift and source size drawn from that seed."""
    images, boxes, labels, ctrs = [], [], [], []
    for seed in seeds:
        rng = np.random.default_rng([seed, 5])
        source = int(rng.choice(SOURCE_SIZES))
        shift = tuple(rng.uniform(-SHIFT, SHIFT, 2))
        pixels, truth = chest_xray_phantom(source, ctr=float(rng.uniform(*CTR_RANGE)),
                                           heart_shift=shift, seed=seed)
        images.append(prepare_film(pixels, (size, size)))
        boxes.append(np.asarray(truth["heart_box"], np.float32) * size / source)
        labels.append(heart_label(truth["ctr"]))
        ctrs.append(truth["ctr"])
    return Films(np.stack(images), np.stack(boxes), np.asarray(labels), np.asarray(ctrs))


def fit(model: DetectorExport, films: Films, plan: Plan = PLAN, seed: int = 0
        ) -> loop.Outcome:
    """Train the detector on `films` with the training package's loop (heart box, 1-based
    label as torchvision counts them); the model is left in eval mode."""
    targets = [{"boxes": box[None].astype(np.float32), "labels": np.array([label + 1])}
               for box, label in zip(films.boxes, films.labels, strict=True)]
    return training_plan.train(model, ARCHITECTURES[ARCH], "detection",
                               training_plan.samples(films.images, targets, augment=AUGMENT),
                               plan, seed=seed, name=MODEL_ID)


def predict(model: DetectorExport, images: np.ndarray) -> list[ImageBoxes]:
    """Each film's boxes, 0-based labels, as the exported graph returns them."""
    model.eval()
    out = []
    with torch.no_grad():
        for image in images:
            boxes, scores, labels = model(torch.from_numpy(image[None]))
            out.append(ImageBoxes(boxes.numpy(), labels.numpy() - 1, scores.numpy()))
    return out


def evaluate(model: DetectorExport, films: Films) -> dict[str, float]:
    truths = [ImageBoxes(b[None], [k]) for b, k in zip(films.boxes, films.labels, strict=True)]
    return detection_report(predict(model, films.images), truths, LABELS)


def manifest_fields(metrics: dict, outcome: loop.Outcome, seed: int) -> dict:
    return {
        "id": MODEL_ID, "title": "Heart detector, cardiomegaly (lab 5 demo, Faster R-CNN)",
        "plugin": "lab5", "version": "1.0.0",
        "labels": [{"name": n, "colour": COLOURS[n]} for n in LABELS],
        "input": {"size": [DEMO_SIZE, DEMO_SIZE], "channels": 3, "context": "single",
                  "window": None, "mean": [0.0], "std": [1.0], "extras": [],
                  "modalities": ["DX", "CR"]},
        "metrics": metrics,
        "provenance": {"command": COMMAND, "seed": seed, "pretrained": "none: trained from "
                       "scratch", "backbone": "light 5-stage CNN (12-96 channels) + 32-channel "
                       "FPN (lab5.fasterrcnn_light), not the lab's ResNet50-FPN",
                       "data": f"chest_xray_phantom, train seeds {TRAIN_SEEDS.start}-"
                       f"{TRAIN_SEEDS.stop - 1}", "plan": asdict(PLAN),
                       "augment": "random gamma exp(+-0.25)", "loop": "medviewer.training",
                       "torch": torch.__version__, "train_seconds": round(outcome.seconds, 1),
                       "train_cpu_seconds": round(outcome.cpu_seconds, 1)},
        "options": {"balance_percent": BALANCE_PERCENT, "score_threshold": 0.05},
        "description": "Boxes the heart on a PA chest radiograph and labels it cardiomegaly "
                       "(cardiothoracic ratio > 0.5) or normal heart. Demo model: trained on "
                       "synthetic phantoms only, with a light backbone to keep it small; not "
                       "for clinical use."}


def train(out_dir: Path, *, seed: int = 0, epochs: int = PLAN.epochs) -> list[Path]:
    """Train, evaluate on held-out phantoms, export `out_dir`/lab5-heart-frcnn."""
    from medviewer.training.export import export_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        films, held_out = make_films(TRAIN_SEEDS), make_films(VALIDATION_SEEDS)
        model = build_light()
        outcome = fit(model, films, replace(PLAN, epochs=epochs), seed)
        metrics = {**evaluate(model, held_out), "iou_threshold": 0.5, "score_threshold": 0.5,
                   "split": f"held-out phantoms: seeds {VALIDATION_SEEDS.start}-"
                   f"{VALIDATION_SEEDS.stop - 1} (own CTRs and shifts; training used "
                   f"{TRAIN_SEEDS.start}-{TRAIN_SEEDS.stop - 1})",
                   "n": len(held_out.images),
                   "n_cardiomegaly": int((held_out.labels == 0).sum())}
        folder = Path(out_dir) / MODEL_ID
        example = (torch.from_numpy(held_out.images[:1]),)  # a real film: real boxes to compare
        with warnings.catch_warnings():  # torchvision's tracer warnings are expected here
            warnings.simplefilter("ignore")
            export_model(model, ARCHITECTURES[ARCH], folder,
                         manifest_fields(metrics, outcome, seed), example)
    finally:
        torch.set_num_threads(threads)
    print(f"{folder}: {metrics}")
    return [folder]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[3] / "models"
    parser.add_argument("--out", type=Path, default=default, help="models folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train(args.out, seed=args.seed)


if __name__ == "__main__":
    main()
