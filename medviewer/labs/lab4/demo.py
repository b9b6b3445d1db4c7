"""Train and export lab 4's shipped demo models: light U-Net-family nets for chest CT labels.

    python -m medviewer.labs.lab4.demo [--out models] [--seed 0] [--model ID ...]

Each model (`DEMOS`: the U-Net, ResUNet, UNet++ and ResUNet++ at base width 8) trains on the
same random chest phantoms (random nodules, noise, pixel size, seed), is scored per label on
other random phantoms (disjoint seed range) and on the demo CT at 512^2, then exported to
models/<id> (ONNX + safetensors + manifest, parity-checked). `--model` trains only those.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medviewer.core.lesions import lesion_labels
from medviewer.core.synthetic import DEMO_NODULES, ct_chest_labels, ct_chest_phantom
from medviewer.inference import preprocess as pp
from medviewer.inference.metrics import compare_label_maps, overall_scores, per_label_scores
from medviewer.labs.architectures import ARCHITECTURES
from medviewer.labs.lab4 import data
from medviewer.labs.lab4 import models as _models  # noqa: F401 - registers the architectures
from medviewer.labs.lab4.plugin import refine_lesion_edges, upsample_labels
from medviewer.training import plan
from medviewer.training.export import export_model
from medviewer.training.plan import Plan

COMMAND = "python -m medviewer.labs.lab4.demo"
RECIPE = {"train_volumes": 160, "slices_per_volume": 12, "validation_volumes": 16}
# 500 random batches of 16 slices (ten epochs of 50), Adam, one-cycle; weighted CrossEntropy
# + soft Dice (recipes.batch_loss)
PLAN = Plan(epochs=10, steps=50, batch=16, lr=3e-3, optimizer="adam", schedule="onecycle",
            # the nodule is ~0.05 % of the voxels: without a weight the model shrinks it
            class_weights=(1.0, 1.0, 1.0, 4.0, 1.0))


@dataclass(frozen=True)
class Demo:
    """One shipped model: its folder name, light architecture, title words and plan."""

    model_id: str
    arch: str
    network: str  # "U-Net", as the title and description name it
    plan: Plan = PLAN
    note: str = ""  # what differs from the U-Net's recipe, and why


# ResUNet++ takes fewer steps of the same recipe: 4.9x the U-Net's compute per step, and
# the shared 2-core machine trains one at a time
DEMOS = {d.model_id: d for d in (
    Demo("lab4-chest-unet", "lab4.unet_small", "U-Net"),
    Demo("lab4-chest-resunet", "lab4.resunet_small", "ResUNet"),
    # the U-Net's 500 steps (300 left every head without the nodule: Dice 0) and the nodule
    # weighed 10 (at 4 the mean of the heads found 0.39 of it: the shallow heads miss it)
    Demo("lab4-chest-unetpp", "lab4.unetplusplus_small", "UNet++",
         Plan(**{**asdict(PLAN), "class_weights": (1.0, 1.0, 1.0, 10.0, 1.0)}),
         "deep supervision: the four nested heads trained, their mean exported; nodule "
         "weight 10 instead of 4"),
    Demo("lab4-chest-resunetpp", "lab4.resunetplusplus_small", "ResUNet++",
         Plan(**{**asdict(PLAN), "steps": 25}), "250 steps instead of 500 (4.9x the compute "
         "per step)"),
)}


def predict_logits(model: nn.Module, images: np.ndarray, batch: int = 32) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(images[i:i + batch])).numpy()
                               for i in range(0, len(images), batch)])


def _rounded(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: _rounded(v) if isinstance(v, dict) else round(v, 4) if isinstance(v, float)
            else v for k, v in scores.items()}


def scores_table(pred: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Overlap scores per label and overall, of slices from many phantoms stacked (no
    boundary scores: their surfaces would run across unrelated slices)."""
    return _rounded({"per_label": per_label_scores(pred, truth, data.LABELS, boundary=False),
                     "overall": overall_scores(pred, truth, len(data.LABELS))})


def demo_ct_scores(model: nn.Module) -> dict[str, Any]:
    """Every segmentation score (boundary F1 at 2 mm, HD95 in mm) on the demo CT at its full
    120 x 512 x 512 grid, as the viewer computes it."""
    shape, spacing = (120, 512, 512), (2.5, 0.7, 0.7)
    hu, _ = ct_chest_phantom(shape, spacing, seed=1)
    truth = ct_chest_labels(shape, spacing, nodules=DEMO_NODULES)
    pred = np.zeros(shape, np.uint8)
    for k in range(0, shape[0], 16):
        rows = list(range(k, min(k + 16, shape[0])))
        logits = predict_logits(model, pp.prepare_slices(hu, rows, data.SPEC))
        pred[rows] = upsample_labels(logits, shape[1:])
        for row in rows:  # the lesion edges on the series' pixels, as the viewer draws them
            refine_lesion_edges(pred[row], hu[row], lesion_labels(data.LABELS))
    return {"split": "the demo study's chest CT (seed 1, the four demo nodules of 6/10/15/20 mm)"
                     ", 120 x 512 x 512, never seen in training", "n": 1,
            **_rounded(per_label_named(compare_label_maps(pred, truth, data.LABELS, spacing)))}


def per_label_named(report: dict[str, Any]) -> dict[str, Any]:
    """The metrics' report with its per-label scores under "per_label", as every lab 4
    manifest names them."""
    rest = {k: v for k, v in report.items() if k != "labels"}
    return {"per_label": report["labels"], **rest}


def manifest_fields(demo: Demo, model: nn.Module, metrics: dict[str, Any], seed: int,
                    seconds: tuple[float, float]) -> dict[str, Any]:
    """seconds: (wall, CPU) of the training loop; CPU is what a busy machine does not inflate."""
    spec, net = data.SPEC, demo.network
    weights = sum(p.numel() for p in model.parameters()) / 1e6
    full = demo.arch.removesuffix("_small")
    recipe = {**RECIPE, **asdict(demo.plan), "loop": "medviewer.training"}
    return {
        "id": demo.model_id, "title": f"Chest CT labels ({net}, lab 4 demo)", "plugin": "lab4",
        "version": "1.0.0",
        "labels": [{"name": n, "colour": data.COLOURS[n]} for n in data.LABELS],
        "input": {"size": list(spec.size), "channels": spec.channels, "context": spec.context,
                  "window": list(spec.window), "mean": list(spec.mean), "std": list(spec.std),
                  "extras": [], "modalities": list(spec.modalities)},
        "metrics": metrics, "options": {"pipeline": "chest-segmenter", "batch_size": 16},
        "provenance": {"command": f"{COMMAND} --model {demo.model_id}", "seed": seed,
                       "pretrained": "none: trained from scratch",
                       "backbone": f"{demo.arch} ({net}, base width 8)",
                       "data": "random chest CT phantoms (medviewer.core.synthetic): 0-4 "
                       "nodules of 4-25 mm, noise 4-30 HU, pixel 0.6-0.8 mm, 36-60 slices; "
                       "drawn at 256^2, block-averaged to 128^2",
                       "recipe": {**recipe, "note": demo.note} if demo.note else recipe,
                       "torch": torch.__version__, "train_seconds": round(seconds[0], 1),
                       "train_cpu_seconds": round(seconds[1], 1),
                       "threads": torch.get_num_threads()},
        "description": "Labels body, lung, nodule and spine on each axial slice of a chest CT, "
                       f"at 128 x 128 (edges refined to the series' grid). A light {net} "
                       f"(base width 8, {weights:.1f} M weights) instead of the full {full} "
                       "to keep the shipped folder small. Trained on phantoms only: a "
                       "teaching model, not for clinical use."}


def held_out_metrics(model: nn.Module, val_images: np.ndarray, val_labels: np.ndarray
                     ) -> dict[str, Any]:
    """Scores on the validation phantoms at the top level, details and the demo CT beside."""
    scores = scores_table(predict_logits(model, val_images).argmax(axis=1), val_labels)
    per_label = scores["per_label"]
    return {"split": f"{RECIPE['validation_volumes']} random phantoms "
                     "from a seed range disjoint from training, every slice, scored at "
                     "128 x 128", "n": int(len(val_images)),
            **{f"dice_{name}": v["dice"] for name, v in per_label.items()},
            **{f"iou_{name}": v["iou"] for name, v in per_label.items()},
            **scores["overall"], **scores, "demo_ct": demo_ct_scores(model)}


def train(out_dir: Path, *, seed: int = 0, models: list[str] | None = None) -> list[Path]:
    """Train, evaluate and export each demo in `models` (default: all of DEMOS) into
    `out_dir`/<id>, one after the other on the same phantoms."""
    unknown = set(models or ()) - set(DEMOS)
    if unknown:
        raise ValueError(f"no lab 4 demo model {sorted(unknown)}; known: {sorted(DEMOS)}")
    r = RECIPE
    images, labels = data.make_set("train", r["train_volumes"], r["slices_per_volume"], seed)
    val_images, val_labels = data.make_set("validation", r["validation_volumes"], None, seed)
    folders = []
    for model_id in models or list(DEMOS):
        demo = DEMOS[model_id]
        torch.manual_seed(seed)
        arch = ARCHITECTURES[demo.arch]
        model = arch.build(num_classes=len(data.LABELS), in_channels=data.SPEC.channels,
                           **arch.default_options)
        outcome = plan.train(model, arch, "segmentation", plan.samples(images, labels),
                             demo.plan, seed=seed, name=model_id)
        metrics = {**held_out_metrics(model, val_images, val_labels),
                   "final_train_loss": plan.final_loss(outcome)}
        folder = Path(out_dir) / model_id
        fields = manifest_fields(demo, model, metrics, seed, (outcome.seconds,
                                                              outcome.cpu_seconds))
        export_model(model.eval(), arch, folder, fields,
                     inputs=(torch.from_numpy(val_images[:2]),))
        folders.append(folder)
    return folders


def remeasure(out_dir: Path, *, seed: int = 0, models: list[str] | None = None) -> list[Path]:
    """Score each shipped model's own weights again (the same validation phantoms and demo CT
    as `train`, with today's metrics and post-processing) and rewrite only its manifest's
    metrics, keeping its weights, graph and provenance: the numbers a manifest shows stay
    those of what the viewer runs."""
    from safetensors.torch import load_file

    from medviewer.inference import load_manifest, write_manifest

    r = RECIPE
    val_images, val_labels = data.make_set("validation", r["validation_volumes"], None, seed)
    folders = []
    for model_id in models or list(DEMOS):
        folder = Path(out_dir) / model_id
        manifest = load_manifest(folder)
        arch = ARCHITECTURES[manifest.arch]
        model = arch.build(num_classes=len(data.LABELS), in_channels=data.SPEC.channels,
                           **{**arch.default_options, **manifest.options.get("build", {})})
        model.load_state_dict(load_file(folder / "weights.safetensors"))
        metrics = {**held_out_metrics(model.eval(), val_images, val_labels),
                   "final_train_loss": manifest.metrics.get("final_train_loss")}
        provenance = {**manifest.provenance, "metrics_command":
                      f"{COMMAND} --remeasure --model {model_id}"}
        write_manifest(replace(manifest, metrics=metrics, provenance=provenance), folder)
        folders.append(folder)
    return folders


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[3] / "models")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", action="append", choices=sorted(DEMOS),
                        help="only this model (repeatable); default: every one")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    parser.add_argument("--remeasure", action="store_true",
                        help="no training: score the shipped weights again and rewrite only "
                        "the manifests' metrics")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = remeasure if args.remeasure else train
    for folder in run(args.out, seed=args.seed, models=args.model):
        print(folder)


if __name__ == "__main__":
    main()
