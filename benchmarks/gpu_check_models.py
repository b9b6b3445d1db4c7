"""Sections 2 and 3 of benchmarks/gpu_check.py, per model: ONNX Runtime's CUDA and TensorRT
providers against ORT CPU, and torch on CUDA against torch's fastest CPU path.

The models: every shipped one at its pipeline's own input (mid slice of a phantom), then the
full architectures of bench_inference.FULL (random weights, random input at the working
size), exported by the project's export_model only when an ORT GPU provider runs here.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import bench_inference as bench  # noqa: E402
from inference_contenders import parity, torch_contenders  # noqa: E402

CPU = ["CPUExecutionProvider"]
FP32 = "onnxruntime,fp32"
QUICK = ("lab4-chest-unet", "lab2-nodule-slice")
CONTRACT = 1e-4  # fp32 parity


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def verdict(error: float) -> str:
    return f"{error:.1e} ({'ok' if error <= CONTRACT else 'over 1e-4'})"


def arrays(out: Any) -> list[np.ndarray]:
    out = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().cpu().numpy() for o in out]


@dataclass
class Subject:
    """One model to time: its torch module and inputs on the CPU, and its ONNX manifest."""

    name: str
    arch: Any
    model: Any
    tensors: list
    manifest: Any = None  # shipped, or exported when ONNX Runtime needs it
    size: tuple[int, int] | None = None  # full architectures: the working size

    @property
    def feed(self) -> dict[str, np.ndarray]:
        return {n: t.numpy() for n, t in zip(self.arch.input_names, self.tensors, strict=True)}

    @property
    def shape(self) -> str:
        return " + ".join("x".join(str(d) for d in t.shape) for t in self.tensors)


# --- the models ------------------------------------------------------------------------

def subjects(ctx: SimpleNamespace) -> list[Subject]:
    """Shipped models at their pipeline's own input, then the full architectures (made once)."""
    if ctx.subjects is None:
        ctx.subjects = shipped_subjects(ctx) + ([] if ctx.args.quick else full_subjects(ctx))
    return ctx.subjects


def shipped_subjects(ctx: SimpleNamespace) -> list[Subject]:
    import torch

    from medviewer.inference import open_model
    from medviewer.inference.registry import find_model_folders, shipped_models_dir
    from medviewer.labs import architectures

    out = []
    for folder in find_model_folders([shipped_models_dir()]):
        if ctx.args.quick and folder.name not in QUICK:
            continue
        try:
            loaded = open_model(folder, providers=CPU, threads=ctx.args.threads, backend=FP32)
            m, pipeline = loaded.manifest, loaded.pipeline
            arch = architectures.get(m.arch)
            volume = bench.volume_for(m)
            voxels = pipeline.grey_voxels(volume)
            feed = pipeline.preprocess(voxels, pipeline.indices(voxels, [len(voxels) // 2]),
                                       volume)
            tensors = [torch.from_numpy(np.ascontiguousarray(feed[n])) for n in arch.input_names]
            out.append(Subject(m.id, arch, bench.torch_model_for(m), tensors, m))
        except Exception as exc:  # noqa: BLE001 - one broken model must not lose the others
            ctx.report.add(f"- {folder.name}: not measured: {first_line(exc)}")
    return out


def full_subjects(ctx: SimpleNamespace) -> list[Subject]:
    import torch

    from medviewer.labs import architectures

    out = []
    for name, size in bench.FULL:
        size = size or (256, 256)
        try:
            arch = architectures.get(name)
            torch.manual_seed(0)
            model = arch.build(**arch.default_options).eval()
            tensors = [bench.working_input(t, size) for t in arch.example_inputs()]
            out.append(Subject(f"{name} {size[0]} (full, random weights)", arch, model,
                               tensors, size=size))
        except Exception as exc:  # noqa: BLE001
            ctx.report.add(f"- {name}: not built: {first_line(exc)}")
    return out


def onnx_manifest(s: Subject, tmp: Path) -> Any:
    """The subject's ONNX model: shipped, or exported now (parity-checked) beside a manifest
    borrowed from its lab's shipped model of the same task."""
    if s.manifest is None:
        from medviewer.training.export import export_model

        fields, _ = bench.borrowed_fields(s.arch, s.size)
        s.manifest = export_model(s.model, s.arch, tmp / s.arch.name, fields, s.tensors)
    return s.manifest


# --- 2. ONNX Runtime's GPU providers ----------------------------------------------------------

def provider_name(entry: str | tuple) -> str:
    return entry if isinstance(entry, str) else entry[0]


def gpu_providers(report: Any, ctx: SimpleNamespace) -> dict[str, list]:
    """Provider lists for the GPU providers that run here (asked once; a line for each that
    does not)."""
    if ctx.providers is not None:
        return ctx.providers
    import onnxruntime as ort

    from medviewer.inference import working_providers

    cache = str(ctx.tmp / "trt")
    cuda = ("CUDAExecutionProvider", {"use_tf32": "0"})
    trt = ("TensorrtExecutionProvider", {
        "trt_fp16_enable": "False", "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": cache, "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": cache})
    lists = {"ORT CUDA": [cuda, "CPUExecutionProvider"],
             "ORT TensorRT fp32": [trt, cuda, "CPUExecutionProvider"]}
    ctx.providers, listed, working = {}, ort.get_available_providers(), working_providers()
    for label, providers in lists.items():
        name = provider_name(providers[0])
        if name not in listed:
            report.skipped(label, f"onnxruntime {ort.__version__} has no {name} (a CPU build; "
                                  "onnxruntime-gpu brings it)")
        elif name not in working:
            report.skipped(label, f"onnxruntime lists {name} but the project's provider probe "
                                  "could not run it here (no GPU, or its CUDA / TensorRT "
                                  "libraries are missing)")
        else:
            ctx.providers[label] = providers
    return ctx.providers


def ort_gpu(report: Any, ctx: SimpleNamespace) -> None:
    providers = gpu_providers(report, ctx)
    if not providers:
        return
    deadline = time.monotonic() + ctx.args.trt_budget
    rows = []
    for s in subjects(ctx):
        try:
            rows += ort_rows(s, providers, ctx, deadline)
        except Exception as exc:  # noqa: BLE001
            rows.append([s.name, s.shape, "-", "-", "-", first_line(exc), "-"])
    report.add("Each call feeds host arrays and returns host arrays (the copies are in the "
               "time), as the viewer's ModelSession does; parity: largest relative error "
               "against ORT CPU's fp32 output (contract 1e-4).")
    report.table(["model", "input", "provider", "median", "/ ORT CPU", "parity vs CPU fp32",
                  "session + first run"], rows)


def ort_rows(s: Subject, providers: dict[str, list], ctx: SimpleNamespace,
             trt_deadline: float) -> list[list[Any]]:
    """ORT CPU and each GPU provider on one model: medians of interleaved calls, parity."""
    import functools

    from medviewer.inference.session import ModelSession

    manifest, feed, threads = onnx_manifest(s, ctx.tmp), s.feed, ctx.args.threads
    cpu = ModelSession(manifest, CPU, threads=threads, backend=FP32)
    expected = list(cpu.run(feed).values())
    fns, notes = {"ORT CPU": functools.partial(cpu.run, feed)}, {"ORT CPU": ["-", "-"]}
    for label, chain in providers.items():
        if "TensorRT" in label and time.monotonic() > trt_deadline:
            notes[label] = [f"not built: the {ctx.args.trt_budget:.0f} s TensorRT budget "
                            "is spent", "-"]
            continue
        start = time.perf_counter()
        try:
            session = ModelSession(manifest, chain, threads=threads, backend=FP32)
            actual = list(session.run(feed).values())
        except Exception as exc:  # noqa: BLE001 - ORT raises several unrelated types
            notes[label] = [first_line(exc), "-"]
            continue
        setup = f"{time.perf_counter() - start:.1f} s"
        ran = session.provider
        fell = "" if ran == provider_name(chain[0]) else f" (ran on {ran})"
        notes[label] = [verdict(parity(s.arch, expected, actual)) + fell, setup]
        fns[label] = functools.partial(session.run, feed)
    medians = dict(zip(fns, bench.paired_medians(list(fns.values()), ctx.args.runs),
                       strict=True))
    base = medians["ORT CPU"]
    return [[s.name, s.shape, label,
             bench.ms(medians[label]) if label in medians else "-",
             ratio(medians[label], base) if label in medians else "-", *note]
            for label, note in notes.items()]


# --- 3. torch on CUDA -------------------------------------------------------------------------

@contextlib.contextmanager
def tf32(on: bool):
    import torch

    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def cuda_contenders(s: Subject) -> dict[str, Any]:
    """torch's CUDA paths on device-resident inputs, each call ending in a synchronize."""
    import copy

    import torch

    model = copy.deepcopy(s.model).cuda()
    fns = torch_contenders(model, [t.cuda() for t in s.tensors])
    fastest = fns.get("torch channels_last", fns["torch inference_mode"])

    def with_tf32() -> Any:
        with tf32(True):
            return fastest()

    fns = {k.replace("torch ", "torch CUDA "): v for k, v in fns.items()}
    fns[f"{next(k for k, v in fns.items() if v is fastest)} + TF32"] = with_tf32

    def synced(fn: Any) -> Any:
        def call() -> Any:
            out = fn()
            torch.cuda.synchronize()
            return out
        return call

    return {k: synced(v) for k, v in fns.items()}


def torch_cuda(report: Any, ctx: SimpleNamespace) -> None:
    import torch

    if ctx.gpu_missing:
        report.skipped("torch CUDA rows", ctx.gpu_missing + "; the torch CPU rows follow")
    torch.backends.cudnn.benchmark = True
    rows = []
    for s in subjects(ctx):
        try:
            rows += torch_rows(s, ctx)
        except Exception as exc:  # noqa: BLE001
            rows.append([s.name, s.shape, "-", "-", "-", first_line(exc)])
        if not ctx.gpu_missing:
            torch.cuda.empty_cache()
    report.add("CPU: the fastest of bench_inference's three torch paths. CUDA: inputs on the "
               "device, a synchronize after each call, cuDNN benchmark on, TF32 off unless the "
               "row says TF32; parity: largest relative error against torch CPU eager "
               "(contract 1e-4).")
    report.table(["model", "input", "path", "median", "/ torch CPU fastest",
                  "parity vs torch CPU"], rows)


def torch_rows(s: Subject, ctx: SimpleNamespace) -> list[list[Any]]:
    from medviewer.training.export import torch_outputs

    cpu = torch_contenders(s.model, s.tensors)
    medians = dict(zip(cpu, bench.paired_medians(list(cpu.values()), ctx.args.runs),
                       strict=True))
    fastest = min(medians, key=medians.get)
    base = medians[fastest]
    rows = [[s.name, s.shape, f"{fastest} (CPU fastest)", bench.ms(base), "1.00x", "-"]]
    if ctx.gpu_missing:
        return rows
    expected = torch_outputs(s.model, s.tensors)
    with tf32(False):  # strict fp32 unless a row says TF32
        gpu = cuda_contenders(s)
        times = bench.paired_medians(list(gpu.values()), ctx.args.runs, warmup=3)
        for (label, fn), seconds in zip(gpu.items(), times, strict=True):
            error = parity(s.arch, expected, arrays(fn()))
            rows.append([s.name, s.shape, label, bench.ms(seconds), ratio(seconds, base),
                         verdict(error)])
    return rows


