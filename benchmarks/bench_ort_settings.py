"""Does an ONNX Runtime setting close the gap to torch eager on the full architectures?

Exports one registered architecture (random weights) and times, alone and interleaved with
torch eager on the same input: the session as the viewer opens it (spinning off), spinning on,
denormals as zero, and both engines on one thread. Median of N runs after a warm-up.

    python3 benchmarks/bench_ort_settings.py lab2.resnet50_agesex 224
    python3 benchmarks/bench_ort_settings.py lab4.unet 256
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from medviewer.labs.architectures import get
from medviewer.training.export import export_onnx


def median_ms(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def session(path: Path, threads: int, **config: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    for key, value in config.items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("arch")
    p.add_argument("size", type=int)
    p.add_argument("--runs", type=int, default=7)
    ns = p.parse_args()
    torch.set_flush_denormal(True)
    arch = get(ns.arch)
    torch.manual_seed(0)
    model = arch.build().eval()
    example = arch.example_inputs()
    inputs = [torch.rand(1, example[0].shape[1], ns.size, ns.size)]
    inputs += [torch.rand(1, *e.shape[1:]) for e in example[1:]]
    path = Path(tempfile.mkdtemp()) / "model.onnx"
    export_onnx(model, arch, path, inputs)
    feed = {n: t.numpy() for n, t in zip(arch.input_names, inputs, strict=True)}
    spin_off = {"session.intra_op.allow_spinning": "0"}
    variants = {"viewer's session (spinning off)": session(path, 2, **spin_off),
                "spinning on": session(path, 2, **{"session.intra_op.allow_spinning": "1"}),
                "denormals as zero": session(path, 2, **spin_off,
                                             **{"session.set_denormal_as_zero": "1"})}
    print(f"`python3 benchmarks/bench_ort_settings.py {ns.arch} {ns.size}`\n")
    print("| setting | ORT | torch eager | ORT/torch |\n|---|---|---|---|")
    with torch.no_grad():
        torch.set_num_threads(2)
        for name, s in variants.items():
            ort_ms = median_ms(lambda s=s: s.run(None, feed), ns.runs)
            torch_ms = median_ms(lambda: model(*inputs), ns.runs)
            print(f"| {name}, 2 threads | {ort_ms:.1f} ms | {torch_ms:.1f} ms | "
                  f"{ort_ms / torch_ms:.2f}x |")
        torch.set_num_threads(1)
        one = session(path, 1, **spin_off)
        ort_ms = median_ms(lambda: one.run(None, feed), ns.runs)
        torch_ms = median_ms(lambda: model(*inputs), ns.runs)
        print(f"| viewer's session, 1 thread | {ort_ms:.1f} ms | {torch_ms:.1f} ms | "
              f"{ort_ms / torch_ms:.2f}x |")


if __name__ == "__main__":
    main()
