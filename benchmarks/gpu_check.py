"""GPU check (issue 17 item 6): one prepared script for a session that is lent a GPU.

    python3 benchmarks/gpu_check.py [--quick] [--out FILE] [--runs 10] [--slices 300]
                                    [--threads N] [--trt-budget 150]

Prints a Markdown report and writes the same to --out, rewritten after every section (a run
cut short keeps what it measured). Sections, each catching its own failure in one line:
1. the machine: GPU, torch / onnxruntime versions, ORT's providers, working_providers();
2. ONNX Runtime's CUDA (use_tf32 off) and TensorRT (fp32, engines cached, builds capped by
   --trt-budget seconds in all) providers on every shipped model and the full architectures
   (bench_inference.FULL, random weights, exported by export_model), against ORT CPU in the
   same run; parity = largest relative error against the CPU fp32 output (contract 1e-4);
3. torch on CUDA (eager, inference_mode, channels_last, and channels_last with TF32 as its
   own row) against torch's fastest CPU path, parity against torch CPU eager;
4. CAM on CUDA: medviewer.explain on shipped models (EigenCAM, AblationCAM, Grad-CAM), cuda
   against cpu (time, heatmap correlation);
5. lab4-chest-unet over a --slices x 512 x 512 CT phantom through its pipeline: ORT CPU,
   torch CUDA and ORT CUDA slices/s, label agreement with ORT CPU;
6. a 2-rank NCCL training step (`medviewer train JOB --nproc-per-node 2`) when torch sees
   more than one GPU.
Without a GPU (or without onnxruntime-gpu) every GPU part prints one line saying it was
skipped and why; the CPU rows still run. --quick: shipped lab4-chest-unet and
lab2-nodule-slice only, 24 slices, no full architectures (tests/test_gpu_check_script.py).
GPU rows time device-resident inputs with a synchronize after each call; cuDNN benchmark on.

Through the device tool (nvidia-h200: its python3 has torch, onnx, onnxruntime (CPU build),
timm, scipy, safetensors, scikit-learn, opencv; not pydicom, grad-cam and its ttach,
jsonschema and its referencing / rpds-py, platformdirs). Once, here, in the repository root
(3 MB of wheels; grad-cam is published as source only, so pip builds its pure-Python wheel):

    mkdir -p .git/info && echo /.whl/ >> .git/info/exclude
    scripts/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \\
        --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \\
        -d .whl pydicom==3.0.2 ttach==0.0.3 platformdirs==4.14.9 jsonschema==4.26.0 \\
        jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
    scripts/python -m pip wheel --no-deps -w .whl grad-cam==1.5.7

then ONE call, run(timeout_s=480, carry=[".whl", "medviewer.egg-info"], command=<one line>):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit;
    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --out $OUT/gpu.md 2>$OUT/gpu.err

medviewer.egg-info (made by `pip install -e .`) carries the lab plugins' entry points; without
it the script registers them from pyproject.toml, but the NCCL step's children need it.
$OUT/gpu.md and gpu.err come back; the reply's output_tail holds the report's end. Expected
well under 8 minutes (TensorRT builds, where onnxruntime-gpu is there, capped at 150 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check_models import (  # noqa: E402
    CPU,
    FP32,
    QUICK,
    ROOT,
    arrays,
    bench,
    first_line,
    gpu_providers,
    ort_gpu,
    ratio,
    torch_cuda,
)

CAMS = (("lab5-heart-frcnn", "EigenCAM"), ("lab5-heart-frcnn", "AblationCAM"),
        ("lab2-nodule-slice", "Grad-CAM"))
SERIES = "lab4-chest-unet"


class Report:
    """Markdown printed as it comes and kept for --out."""

    def __init__(self, out: Path | None) -> None:
        self.out, self.lines = out, []

    def add(self, *lines: str) -> None:
        for line in lines:
            print(line, flush=True)
            self.lines.append(line)
        if self.out:
            self.out.write_text("\n".join(self.lines) + "\n", encoding="utf-8")

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        self.add("", f"| {' | '.join(header)} |", "|" + "---|" * len(header),
                 *(f"| {' | '.join(str(c) for c in row)} |" for row in rows), "")

    def skipped(self, what: str, why: str) -> None:
        self.add(f"- {what}: skipped: {why}")


# --- 1. the machine -------------------------------------------------------------------------

def machine(report: Report, ctx: SimpleNamespace) -> None:
    import onnxruntime as ort
    import torch

    from medviewer.inference import working_providers

    rows = [["python", sys.version.split()[0]],
            ["CPU", f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, "
                    f"{ctx.args.threads} threads for the CPU rows"],
            ["torch", f"{torch.__version__} (CUDA {torch.version.cuda}, cuDNN "
                      f"{torch.backends.cudnn.version() if torch.cuda.is_available() else '-'})"]]
    for i in range(torch.cuda.device_count() if not ctx.gpu_missing else 0):
        p = torch.cuda.get_device_properties(i)
        rows.append([f"GPU {i}", f"{p.name}, {p.total_memory / 2**30:.0f} GiB, compute "
                                 f"capability {p.major}.{p.minor}, {p.multi_processor_count} SMs"])
    if ctx.gpu_missing:
        rows.append(["GPU", f"none: {ctx.gpu_missing}"])
    else:
        rows.append(["first CUDA init", f"{ctx.cuda_init:.1f} s"])
        rows.append(["driver", driver_version()])
    rows += [["onnxruntime", f"{ort.__version__} (device {ort.get_device()})"],
             ["ORT available providers", ", ".join(ort.get_available_providers())],
             ["working_providers()", ", ".join(working_providers())]]
    report.table(["", "value"], rows)


def driver_version() -> str:
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                               "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=30)
        return done.stdout.strip() or done.stderr.strip()[:200]
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nvidia-smi: {first_line(exc)}"


# --- 4. CAM on CUDA ---------------------------------------------------------------------------

def cam_cuda(report: Report, ctx: SimpleNamespace) -> None:
    from medviewer.explain import explain
    from medviewer.inference.registry import find_model

    devices = ["cpu"] if ctx.gpu_missing else ["cpu", "cuda"]
    if ctx.gpu_missing:
        report.skipped("CAM on CUDA", ctx.gpu_missing + "; the CPU rows follow")
    rows = []
    for model_id, method in CAMS:
        if ctx.args.quick and model_id not in QUICK:
            continue
        try:
            m = find_model(model_id)
            volume = bench.volume_for(m)
            index = len(volume.voxels) // 2
            maps, times = {}, {}
            for device in devices:
                explain(m, volume, index, method, device=device)  # loads onto the device
                runs = [explain(m, volume, index, method, device=device) for _ in range(3)]
                times[device] = statistics.median(e.seconds for e in runs)
                maps[device] = runs[-1].heatmap
            for device in devices:
                a, b = maps["cpu"].ravel(), maps[device].ravel()
                corr = float(np.corrcoef(a, b)[0, 1]) if a.std() and b.std() else float("nan")
                rows.append([model_id, method, device, bench.ms(times[device]),
                             ratio(times[device], times["cpu"]),
                             "-" if device == "cpu" else
                             f"r = {corr:.4f}, max diff {np.abs(a - b).max():.3f}"])
        except Exception as exc:  # noqa: BLE001
            rows.append([model_id, method, "-", "-", "-", first_line(exc)])
    report.add("torch defaults (cuDNN may use TF32 on CUDA), median of 3 after a warm-up; "
               "time includes the pipeline's preprocessing and the resize to the slice.")
    report.table(["model", "method", "device", "median", "/ cpu", "heatmap vs cpu"], rows)


# --- 5. whole-series U-Net ------------------------------------------------------------------

class TorchSession:
    """A pipeline's session run by torch on a device instead of ONNX Runtime."""

    def __init__(self, model: Any, arch: Any, manifest: Any, device: str) -> None:
        self.model, self.arch, self.device = model.to(device).eval(), arch, device
        self.outputs, self.provider = list(manifest.onnx_outputs), f"torch {device}"

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        tensors = [torch.from_numpy(np.ascontiguousarray(
            inputs[n], np.float32 if inputs[n].dtype.kind == "f" else None)).to(self.device)
            for n in self.arch.input_names]
        with torch.inference_mode():
            return dict(zip(self.outputs, arrays(self.model(*tensors)), strict=True))


def series(report: Report, ctx: SimpleNamespace) -> None:
    from medviewer.core import synthetic
    from medviewer.inference import open_model
    from medviewer.inference.registry import find_model
    from medviewer.inference.session import ModelSession
    from medviewer.labs import architectures

    m = find_model(SERIES)
    loaded = open_model(m, providers=CPU, threads=ctx.args.threads, backend=FP32)
    slices = 24 if ctx.args.quick else ctx.args.slices
    voxels, _ = synthetic.ct_chest_phantom((slices, 512, 512), (1.0, 0.7, 0.7))
    volume = bench.fake_volume(voxels, "CT", {})
    runs = [("ORT CPU", loaded.pipeline.session, 8)]
    if ctx.gpu_missing:
        report.skipped("torch CUDA", ctx.gpu_missing)
    else:
        cuda = TorchSession(bench.torch_model_for(m), architectures.get(m.arch), m, "cuda")
        runs += [("torch CUDA", cuda, 16), ("torch CUDA", cuda, 64)]
    for label, chain in gpu_providers(report, ctx).items():
        if "CUDA" in label:
            gpu = ModelSession(m, chain, threads=ctx.args.threads, backend=FP32)
            runs += [(label, gpu, 16), (label, gpu, 64)]
    rows, reference = [], None
    for label, session, batch in runs:
        loaded.pipeline.session, loaded.pipeline.batch_size = session, batch
        loaded.run(volume, list(range(min(slices, 2 * batch))))  # warm-up
        start = time.perf_counter()
        result = loaded.run(volume)
        seconds = time.perf_counter() - start
        reference = result.label_map if reference is None else reference
        same = float(np.mean(result.label_map == reference))
        t = result.timings
        rows.append([label, batch, f"{seconds:.2f} s", f"{slices / seconds:.1f}",
                     *(f"{t[k]:.2f} s" for k in ("preprocess", "inference", "postprocess")),
                     f"{100 * same:.3f} %"])
    report.add(f"{SERIES} ({m.arch}, input {m.input.size}) on a {slices} x 512 x 512 CT "
               "phantom, the plugin's whole pipeline (its pre- and postprocessing on the CPU).")
    report.table(["runs on", "batch", "seconds", "slices/s", "preprocess", "inference",
                  "postprocess", "voxels as ORT CPU"], rows)


# --- 6. NCCL ---------------------------------------------------------------------------------

def nccl(report: Report, ctx: SimpleNamespace) -> None:
    import json

    import torch

    from medviewer.training.distributed import DIGEST_ENV

    if ctx.gpu_missing:
        report.add(f"- no GPU: the NCCL 2-rank step was not run ({ctx.gpu_missing})")
        return
    if torch.cuda.device_count() < 2:
        report.add("- one GPU: the NCCL 2-rank step was not run")
        return
    job = ctx.tmp / "job.json"  # as tests/training/test_distributed.py, on CUDA
    job.write_text(json.dumps({
        "model": "lab1-digits-mlp", "init": "scratch", "data": {"demo": 6}, "epochs": 2,
        "batch_size": 16, "lr": 0.003, "device": "cuda", "out": str(ctx.tmp / "run")}))
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, DIGEST_ENV: "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(path)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "medviewer", "train", str(job),
                           "--nproc-per-node", "2"], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)
    seconds = time.perf_counter() - start
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    digests = {p.read_text().strip() for p in (ctx.tmp / "run").glob("weights-rank*.sha256")}
    epochs = [e for e in events if e.get("event") == "epoch"]
    report.table(["exit", "wall", "world size", "epochs", "loss first -> last",
                  "ranks' weights"], [[
        done.returncode, f"{seconds:.1f} s",
        next((e.get("world_size") for e in events if e.get("event") == "start"), "-"),
        len(epochs), " -> ".join(f"{e['train_loss']:.4f}" for e in epochs[:1] + epochs[-1:]),
        "identical" if len(digests) == 1 else f"{len(digests)} different digests"]])
    if done.returncode:
        report.add("```", done.stderr[-1500:], "```")


# --- the run -----------------------------------------------------------------------------

SECTIONS = (("1. Machine", machine),
            ("2. ONNX Runtime CUDA and TensorRT providers", ort_gpu),
            ("3. torch on CUDA", torch_cuda),
            ("4. CAM on CUDA", cam_cuda),
            ("5. Whole-series U-Net throughput", series),
            ("6. NCCL 2-rank training step", nccl))


def register_labs() -> None:
    """The lab plugins from pyproject.toml when no installed metadata names them (a bare
    checkout on the device machine)."""
    import importlib
    import tomllib

    from medviewer.inference.registry import list_plugins, register_plugin

    if list_plugins():
        return
    table = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for value in table["project"]["entry-points"]["medviewer.plugins"].values():
        module, name = value.split(":")
        register_plugin(getattr(importlib.import_module(module), name))


def cuda_state() -> tuple[str, float]:
    """Why torch cannot use a GPU here ('' when it can), and the first CUDA init's seconds."""
    import torch

    if not torch.backends.cuda.is_built():
        return f"torch {torch.__version__} is built without CUDA", 0.0
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device", 0.0
    start = time.perf_counter()
    torch.cuda.init()
    torch.zeros(1, device="cuda")
    return "", time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="lab4-chest-unet and lab2-nodule-slice only, 24 slices")
    parser.add_argument("--out", type=Path, help="also write the report here")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--trt-budget", type=float, default=150.0,
                        help="seconds for all TensorRT engine builds together")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench_inference
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    bench.THREADS = args.threads
    register_labs()
    report = Report(args.out)
    missing, init = cuda_state()
    report.add(f"# GPU check (`benchmarks/gpu_check.py {' '.join(sys.argv[1:])}`)", "",
               time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()) +
               f", batch 1, median of {args.runs} interleaved calls unless said")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        ctx = SimpleNamespace(args=args, report=report, tmp=Path(tmp), subjects=None,
                              providers=None, gpu_missing=missing, cuda_init=init)
        for title, section in SECTIONS:
            report.add("", f"## {title}", "")
            start = time.perf_counter()
            try:
                section(report, ctx)
            except Exception as exc:  # noqa: BLE001 - one broken section must not lose the others
                traceback.print_exc()
                report.add(f"- {title}: failed: {first_line(exc)}")
            report.add(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
