"""CPU runtimes against torch's fastest CPU path, per model, and whole-volume segmentation.

    python3 benchmarks/bench_inference.py [--runs 10] [--threads 2] [--slices 300]
                                          [--unet-size 256] [--skip-full] [--skip-volume]
                                          [--skip-demo] [--full ARCH ...]

Rows: every shipped demo model (models/*/manifest.json) at its manifest's input size, and the
full lab architectures (ResNet50 + age/sex at 224 x 224, U-Net at --unet-size, Faster R-CNN
ResNet50-FPN at 512 x 512) built with seeded random weights and exported by the project's own
export_model (parity-checked), each on its lab pipeline's own preprocessed input.

Torch, same thread count, denormals flushed, OpenMP workers passive (--omp-wait-policy): "torch
eager" (the old baseline: eval mode under torch.no_grad()), "torch inference_mode" and "torch
channels_last" (inference_mode with the module and image input in channels_last); "torch
fastest" is the fastest of the three, and every ratio is against it. Contenders, through the
viewer's own ModelSession: ONNX Runtime fp32, OpenVINO fp32 (when installed), and for
classification / segmentation models the static int8 file of `python -m
medviewer.inference.quantize` (calibrated on demo phantom seed 0) on ONNX Runtime and OpenVINO.
Parity: fp32 rows give the largest relative error against torch; int8 rows their agreement with
fp32 on held-out phantom seed 1 (Dice of the argmax masks, worst label, or top-1 agreement) and
the largest relative output difference. Each time is the median of --runs calls after 2 warm-up
calls, batch 1, all contenders' calls interleaved.
Targets (issue 17): best / torch fastest <= 0.6 for classifiers and U-Net, <= 0.75 for
Faster R-CNN. Then lab 4's shipped U-Net segments a --slices x 512 x 512 CT phantom with
batch sizes 1, 8 and 16.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from inference_contenders import check_text, quantized, torch_contenders  # noqa: E402

CPU = ["CPUExecutionProvider"]
THREADS = 2  # --threads: torch and ONNX Runtime alike
TARGETS = {"classification": 0.6, "fusion": 0.6, "segmentation": 0.6, "detection": 0.75}
CONTENDERS = ("onnxruntime,fp32", "openvino,fp32", "onnxruntime,int8", "openvino,int8")
FULL = (  # architecture, input size, why this size
    ("lab2.resnet50_agesex", (224, 224)),
    ("lab4.unet", None),  # --unet-size
    ("lab5.fasterrcnn_resnet50_fpn", (512, 512)),
)


def paired_medians(fns: list[Callable[[], Any]], runs: int, warmup: int = 2) -> list[float]:
    """Median seconds of each function, calls interleaved (a b c a b c ...): a burst of load
    from another process hits every contender alike instead of one of them."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, out in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


# --- volumes the pipelines read ------------------------------------------------------------

def volume_for(manifest: Any, slices: int = 24) -> SimpleNamespace:
    """A phantom in the manifest's modality (CT chest, chest X-ray, else a smooth image)."""
    from medviewer.core import synthetic

    modalities = manifest.input.modalities
    header = {"PatientAge": "061Y", "PatientSex": "F"}
    if "CT" in modalities or not modalities:
        voxels, _ = synthetic.ct_chest_phantom((slices, 512, 512), (2.5, 0.7, 0.7))
        modality = "CT"
    elif {"DX", "CR"} & set(modalities):
        image, _ = synthetic.chest_xray_phantom(1024)
        voxels, modality = image[None], sorted({"DX", "CR"} & set(modalities))[0]
    else:
        rows, cols = (max(s, 64) for s in manifest.input.size)
        yy, xx = np.mgrid[:rows, :cols]
        voxels = np.stack([(np.sin(xx / 5 + k) * np.cos(yy / 7) * 8 + 8) for k in range(4)])
        modality = modalities[0]
    return fake_volume(voxels, modality, header)


def fake_volume(voxels: np.ndarray, modality: str, header: dict) -> SimpleNamespace:
    sources = [SimpleNamespace(sop_instance_uid=f"2.25.{k}", path="")
               for k in range(voxels.shape[0])]
    return SimpleNamespace(voxels=voxels, modality=modality, header=header, sources=sources,
                           series=None, is_colour=False)


# --- one row ------------------------------------------------------------------------------

def torch_model_for(manifest: Any) -> Any:
    """The torch module behind a model folder, as the explainer rebuilds it."""
    from medviewer.labs import architectures
    from medviewer.training.export import load_weights

    arch = architectures.get(manifest.arch)
    options = {**arch.default_options, **manifest.options.get("build", {})}
    model = arch.build(num_classes=len(manifest.labels), **options)
    return load_weights(model, manifest.path("weights.safetensors")).eval()


def measure(loaded: Any, model: Any, volume: Any, runs: int) -> dict[str, Any]:
    """Every contender's median on the pipeline's own preprocessed input, with its parity."""
    import torch

    from medviewer.inference.session import ModelSession
    from medviewer.labs import architectures
    from medviewer.training.export import torch_outputs

    pipeline, arch = loaded.pipeline, architectures.get(loaded.manifest.arch)
    voxels = pipeline.grey_voxels(volume)
    mid = [voxels.shape[0] // 2]
    feed = pipeline.preprocess(voxels, pipeline.indices(voxels, mid), volume)
    tensors = [torch.from_numpy(np.ascontiguousarray(feed[n])) for n in arch.input_names]
    expected = torch_outputs(model, tensors)
    fns = torch_contenders(model, tensors)
    checks: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        try:
            int8 = quantized(loaded, Path(tmp))
        except Exception as exc:  # noqa: BLE001 - the fp32 contenders still make a row
            print(f"({loaded.manifest.id}: no int8 row: {type(exc).__name__}: {exc})")
            int8 = None
        for wish in CONTENDERS:
            m = int8 if wish.endswith("int8") else loaded.manifest
            if m is None:
                continue
            session = ModelSession(m, CPU, threads=THREADS, backend=wish)
            if session.note:
                print(f"({loaded.manifest.id} {wish}: {session.note})")
                continue
            fns[session.backend_label] = functools.partial(session.run, feed)
            checks[session.backend_label] = check_text(arch, expected, session, feed, m)
            if m is int8 and m.options["runtime"]["precision"] != "int8":
                checks[session.backend_label] += " (below 0.98: not a default)"
        pre_post: list[float] = []

        def whole() -> None:
            t = loaded.run(volume, mid).timings
            pre_post.append(t["preprocess"] + t["postprocess"])

        fns["pipeline (ORT fp32)"] = whole
        medians = dict(zip(fns, paired_medians(list(fns.values()), runs), strict=True))
    shape = " + ".join("x".join(str(d) for d in v.shape) for v in feed.values())
    return {"input": shape, "times": medians, "checks": checks,
            "pre_post": statistics.median(pre_post)}


def demo_rows(runs: int) -> list[dict[str, Any]]:
    from medviewer.inference import ModelError, open_model
    from medviewer.inference.registry import find_model_folders, shipped_models_dir

    folders = find_model_folders([shipped_models_dir()])
    if not folders:
        print(f"(no shipped models under {shipped_models_dir()}: demo rows skipped)")
    rows = []
    for folder in folders:
        try:
            loaded = open_model(folder, providers=CPU, threads=THREADS)
            model = torch_model_for(loaded.manifest)
        except (ModelError, KeyError, ImportError) as exc:
            print(f"(skipped {folder.name}: {exc})")
            continue
        m = loaded.manifest
        row = measure(loaded, model, volume_for(m), runs)
        rows.append({"model": f"{m.id} ({m.arch})", "task": m.task, **row})
    return rows


def full_rows(runs: int, unet_size: int, only: list[str] | None = None
              ) -> list[dict[str, Any]]:
    """The full architectures, exported at their working size beside a borrowed manifest."""
    from medviewer.labs import architectures

    rows = []
    for name, size in FULL:
        if only and name not in only:
            continue
        size = size or (unet_size, unet_size)
        if name not in architectures.load_all():
            print(f"(architecture {name} is not registered: row skipped)")
            continue
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            try:
                rows.append(full_row(architectures.get(name), size, Path(tmp), runs))
            except Exception as exc:  # noqa: BLE001 - one broken row must not lose the others
                print(f"(row {name} failed: {type(exc).__name__}: {exc})")
    return rows


def full_row(arch: Any, size: tuple[int, int], tmp: Path, runs: int) -> dict[str, Any]:
    import torch

    from medviewer.training.export import export_model

    torch.manual_seed(0)
    model = arch.build(**arch.default_options).eval()
    inputs = tuple(working_input(t, size) for t in arch.example_inputs())
    fields, borrowed = borrowed_fields(arch, size)
    manifest = export_model(model, arch, tmp / "model", fields, inputs)
    name = f"{arch.name} (full, random weights)"
    loaded = open_with_pipeline(manifest) if borrowed else None
    if loaded is not None:  # the plugin's own input: every contender sees the same
        return {"model": name, "task": arch.task,
                **measure(loaded, model, volume_for(manifest), runs)}
    raise RuntimeError("no shipped model of its lab and task lends a pipeline")


def working_input(example: Any, size: tuple[int, int]) -> Any:
    """The example input at batch 1, its image axes at the working size."""
    import torch

    t = example[:1]
    if t.ndim == 4:
        g = torch.Generator().manual_seed(0)
        return torch.rand((1, t.shape[1], *size), generator=g, dtype=t.dtype)
    return t.clone()


def borrowed_fields(arch: Any, size: tuple[int, int]) -> tuple[dict[str, Any], bool]:
    """Manifest fields of the lab's shipped model of the same task (for its pipeline), else
    neutral ones, and whether they were borrowed; the input size is the working size."""
    from medviewer.inference.registry import list_models, shipped_models_dir

    models, _ = list_models([shipped_models_dir()])
    same = [m for m in models if m.lab == arch.lab and m.task == arch.task]
    if same:
        d = same[0].to_dict()
        keep = ("id", "title", "plugin", "version", "labels", "input", "options", "metrics")
        fields = {k: d[k] for k in keep}
        fields["id"] = f"bench-{arch.name}"
    else:
        fields = {"id": f"bench-{arch.name}", "title": arch.name, "plugin": f"lab{arch.lab}",
                  "version": "0.0.0", "labels": [{"name": "a"}, {"name": "b"}],
                  "input": {"channels": 3}}
    fields["input"] = {**fields["input"], "size": list(size)}
    fields["provenance"] = {"command": "benchmarks/bench_inference.py", "pretrained": "none"}
    return fields, bool(same)


def open_with_pipeline(manifest: Any) -> Any:
    """The exported full model behind its lab's pipeline, or None (no model to borrow from)."""
    from medviewer.inference import ModelError, open_model

    try:
        return open_model(manifest, providers=CPU, threads=THREADS)
    except ModelError as exc:
        print(f"(pipeline of {manifest.arch} not measured: {exc})")
        return None


# --- whole volume ------------------------------------------------------------------------

def volume_rows(slices: int) -> list[tuple[int, float]]:
    from medviewer.core import synthetic
    from medviewer.inference import open_model
    from medviewer.inference.registry import list_models, shipped_models_dir

    models, _ = list_models([shipped_models_dir()])
    seg = [m for m in models if m.lab == 4 and m.task == "segmentation"]
    if not seg:
        print("(lab 4 ships no segmentation model yet: whole-volume rows skipped)")
        return []
    loaded = open_model(seg[0], providers=CPU, threads=THREADS)
    voxels, _ = synthetic.ct_chest_phantom((slices, 512, 512), (1.0, 0.7, 0.7))
    volume = fake_volume(voxels, "CT", {})
    print(f"\nwhole volume: {seg[0].id} ({seg[0].arch}, input {seg[0].input.size}) on "
          f"{slices} x 512 x 512")
    out = []
    for batch in (1, 8, 16):
        loaded.pipeline.batch_size = batch
        start = time.perf_counter()
        result = loaded.run(volume)
        out.append((batch, time.perf_counter() - start, result.timings))
    return out


# --- report --------------------------------------------------------------------------------

def ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{1000 * seconds:.2f} ms" if seconds < 0.01 else f"{1000 * seconds:.1f} ms"


def print_tables(rows: list[dict[str, Any]], volume: list, args: argparse.Namespace) -> None:
    import onnxruntime
    import torch

    try:
        import openvino
        ov = f"openvino {openvino.__version__}"
    except ImportError:
        ov = "openvino not installed"
    print(f"\n`python3 benchmarks/bench_inference.py {' '.join(sys.argv[1:])}`; torch "
          f"{torch.__version__} (denormals flushed), onnxruntime {onnxruntime.__version__}, "
          f"{ov}, {args.threads} threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, "
          f"batch 1, median of {args.runs}, calls interleaved\n")
    print("| model | input | contender | median | / torch fastest | parity or accuracy |")
    print("|---|---|---|---|---|---|")
    verdicts = []
    for r in rows:
        times = r["times"]
        torch_name = min((n for n in times if n.startswith("torch ")), key=times.get)
        fastest = times[torch_name]
        for name, seconds in times.items():
            mark = " (torch fastest)" if name == torch_name else ""
            print(f"| {r['model']} | {r['input']} | {name}{mark} | {ms(seconds)} | "
                  f"{seconds / fastest:.2f}x | {r['checks'].get(name, '')} |")
        eligible = [n for n, text in r["checks"].items() if "not a default" not in text]
        best = min(eligible, key=times.get, default=None)
        if best:
            target = TARGETS.get(r["task"], 0.6)
            ratio = times[best] / fastest
            verdicts.append(f"| {r['model']} | {torch_name} | {best} | {ratio:.2f}x | <= "
                            f"{target} {'ok' if ratio <= target else 'MISSED'} | "
                            f"{r['checks'][best]} | {ms(r['pre_post'])} |")
    print("\n| model | torch fastest | best runtime | / torch fastest | target | parity or "
          "accuracy | pipeline pre+post |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(verdicts))
    if volume:
        print("\n| batch | seconds | slices/s | preprocess | inference | postprocess |")
        print("|---|---|---|---|---|---|")
        for batch, seconds, t in volume:
            print(f"| {batch} | {seconds:.1f} | {args.slices / seconds:.1f} | "
                  f"{t['preprocess']:.1f} s | {t['inference']:.1f} s | "
                  f"{t['postprocess']:.1f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--unet-size", type=int, default=256)
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--skip-volume", action="store_true")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--full", action="append", choices=[name for name, _ in FULL],
                        help="only this full architecture (repeatable)")
    parser.add_argument("--omp-wait-policy", default="passive", choices=("passive", "active"),
                        help="torch's OpenMP workers: passive (sleep) or active (spin)")
    args = parser.parse_args()
    # read when torch loads libgomp: on a shared machine torch's spinning workers lose their
    # cores mid-barrier, so passive is torch's faster setting there (ResNet50 224 px,
    # 2 threads, a busy 2-core box: 271 ms passive, 497 ms active)
    os.environ.setdefault("OMP_WAIT_POLICY", args.omp_wait_policy.upper())
    import torch

    global THREADS
    warnings.filterwarnings("ignore")  # the TorchScript exporter's deprecation chatter
    THREADS = args.threads
    torch.set_num_threads(args.threads)
    # trained weights leave denormal activations that slow eager torch 2-4x on x86; flushing
    # them makes the stronger baseline
    torch.set_flush_denormal(True)
    rows = [] if args.skip_demo else demo_rows(args.runs)
    if not args.skip_full:
        rows += full_rows(args.runs, args.unet_size, args.full)
    volume = [] if args.skip_volume else volume_rows(args.slices)
    print_tables(rows, volume, args)


if __name__ == "__main__":
    main()
