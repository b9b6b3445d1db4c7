"""Explanation timings: Grad-CAM, EigenCAM and AblationCAM (subsampled vs all channels).

    python3 benchmarks/bench_cam.py [--threads 2] [--ratio 0.05] [--batch 8] [--full-ablation]

Rows (median of --repeat runs for the fast methods, one run for AblationCAM):
- Grad-CAM on lab 2's full ResNet50 (+ age/sex) at 224 x 224, its working size;
- EigenCAM and AblationCAM (grad-cam's ratio_channels_to_ablate, default 0.05) on the full
  Faster R-CNN ResNet50-FPN at 512 x 512 (seeded random weights: the timings depend on the
  architecture and the number of boxes, not on what the weights learnt);
- AblationCAM with all channels on that model is ~22 min on 2 cores (the issue), so by
  default it is EXTRAPOLATED from the subsampled run's per-batch time (said in the row);
  --full-ablation runs it;
- the demo detector (models/lab5-heart-frcnn, 256 px): EigenCAM, AblationCAM subsampled and
  with all channels, both run.
The film is a phantom radiograph prepared as the lab 5 plugin does. CUDA is used when torch
sees a GPU (AblationCAM's batches are where it pays). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medviewer.core.synthetic import chest_xray_phantom  # noqa: E402
from medviewer.explain import cams, explainer  # noqa: E402
from medviewer.labs import architectures  # noqa: E402
from medviewer.labs.lab5.plugin import prepare_film  # noqa: E402

DEMO = ROOT / "models" / "lab5-heart-frcnn"


def film(size: int, device: torch.device) -> torch.Tensor:
    pixels, _ = chest_xray_phantom(1024, enlarged_heart=True, seed=7)
    return torch.from_numpy(prepare_film(pixels, (size, size))[None]).to(device)


def timed(fn, repeat: int) -> tuple[float, object]:
    """Median seconds of `repeat` calls after one warm-up, and the last result."""
    fn()
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def paired(ours, baseline, repeat: int) -> tuple[float, float]:
    """Medians of alternating runs, so a busy spell on a shared machine hits both alike."""
    ours(), baseline()
    a, b = [], []
    for _ in range(repeat):
        for fn, times in ((ours, a), (baseline, b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


class BatchClock:
    """Progress callback that records when each ablation batch ended."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.ends: list[float] = []

    def __call__(self, done: int, total: int) -> None:
        self.ends.append(time.perf_counter())

    def per_batch(self) -> float:
        """Mean gap between batch ends (the first batch also holds the set-up)."""
        if len(self.ends) > 1:
            return float(np.mean(np.diff(self.ends)))
        return self.ends[0] - self.start

    def setup(self) -> float:
        """Start to the first batch's end, less one batch: the forward passes and SVD."""
        return max(0.0, self.ends[0] - self.start - self.per_batch())


def gradcam_rows(device: torch.device, repeat: int) -> list[list[str]]:
    arch = architectures.get("lab2.resnet50_agesex")
    torch.manual_seed(0)
    model = arch.build().eval().to(device)
    image = torch.rand(1, 3, 224, 224, device=device)
    net = cams.FixedExtras(model, [torch.tensor([[0.6, 1.0]], device=device)])
    layers = arch.cam_layers(model)

    def plain() -> None:  # grad-cam as shipped: backward down to the first convolution
        cam = GradCAM(net, layers)
        cam(image, [ClassifierOutputTarget(0)])
        cam.activations_and_grads.release()

    seconds, baseline = paired(lambda: cams.grad_cam(net, image, layers), plain, 2 * repeat + 1)
    return [["Grad-CAM, lab2.resnet50_agesex, 224 px", f"{seconds:.2f} s",
             f"median; **{seconds / baseline:.2f}x** grad-cam's own GradCAM"],
            ["grad-cam GradCAM as shipped (baseline), same model", f"{baseline:.2f} s",
             "median; full backward pass"]]


def detector(name: str, device: torch.device, weights: Path | None = None):
    arch = architectures.get(name)
    torch.manual_seed(0)
    model = arch.build().eval()
    if weights is not None:
        from medviewer.training.export import load_weights

        load_weights(model, weights)
    return arch, model.to(device)


def best_box(model, image: torch.Tensor) -> cams.FasterRCNNBoxScoreTarget:
    found = cams.detections(model.detector, image)
    k = int(found["scores"].argmax())
    return cams.box_target(found["boxes"][k:k + 1].cpu().numpy(), [int(found["labels"][k])])


def detector_rows(label: str, arch, model, image: torch.Tensor, args, *,
                  run_full: bool) -> list[list[str]]:
    layers, target, rows = arch.cam_layers(model), best_box(model, image), []
    seconds, _ = timed(lambda: cams.eigen_cam(model.detector, image, layers, target),
                       args.repeat)
    rows.append([f"EigenCAM, {label}", f"{seconds:.2f} s", "median"])
    repeat = args.repeat if run_full else 1  # the full model's runs take minutes
    part = ablation(model, image, layers, target, args.ratio, args.batch, repeat)
    rows.append([f"AblationCAM ratio {args.ratio}, {label}", f"{part['seconds']:.1f} s",
                 f"{part['ablated']} of {part['channels']} channels, "
                 f"{part['per_batch']:.2f} s per batch of {args.batch}"])
    if run_full:
        full = ablation(model, image, layers, target, 1.0, args.batch, repeat)
        rows.append([f"AblationCAM all channels, {label}", f"{full['seconds']:.1f} s",
                     f"{full['channels']} channels, run; subsampled is "
                     f"{part['seconds'] / full['seconds']:.2f}x of it"])
    else:
        batches = -(-part["channels"] // args.batch)
        estimate = part["setup"] + batches * part["per_batch"]
        rows.append([f"AblationCAM all channels, {label}", f"~{estimate:.0f} s (extrapolated)",
                     f"EXTRAPOLATED: {batches} batches x {part['per_batch']:.2f} s + "
                     f"{part['setup']:.1f} s set-up; subsampled is "
                     f"{part['seconds'] / estimate:.2f}x of it"])
    return rows


def ablation(model, image, layers, target, ratio: float, batch: int, repeat: int = 1
             ) -> dict[str, float]:
    """One timed AblationCAM run; with repeat > 1, a warm-up run then the median."""
    runs = []
    for _ in range(repeat + (repeat > 1)):
        clock = BatchClock()
        start = time.perf_counter()
        _, ablated, channels = cams.ablation_cam(model.detector, image, layers, target,
                                                 ratio=ratio, batch_size=batch, progress=clock)
        runs.append((time.perf_counter() - start, clock))
    seconds, clock = sorted(runs[1:] or runs, key=lambda r: r[0])[len(runs[1:] or runs) // 2]
    per_batch, setup = clock.per_batch(), clock.setup()
    return {"seconds": seconds, "ablated": ablated, "channels": channels,
            "per_batch": per_batch, "setup": setup}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ratio", type=float, default=0.05)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--full-ablation", action="store_true",
                        help="run AblationCAM with all channels on the full model (~22 min)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if seen)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    device = explainer.pick_device(args.device)
    started_load = os.getloadavg()[0]  # other work on a shared machine skews every row
    rows = gradcam_rows(device, args.repeat)
    arch, model = detector("lab5.fasterrcnn_resnet50_fpn", device)
    rows += detector_rows("Faster R-CNN R50-FPN, 512 px", arch, model, film(512, device), args,
                          run_full=args.full_ablation)
    if DEMO.is_dir():
        arch, model = detector("lab5.fasterrcnn_light", device, DEMO / "weights.safetensors")
        rows += detector_rows("demo detector, 256 px", arch, model, film(256, device), args,
                              run_full=True)
    command = " ".join(["python3 benchmarks/bench_cam.py", *(argv or sys.argv[1:])])
    print(f"`{command}`")
    load = os.getloadavg()[0]
    print(f"device {device.type}, torch {torch.__version__}, {args.threads} threads; load "
          f"average {started_load:.1f} at the start, {load:.1f} at the end\n")
    print("| measurement | time | note |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
