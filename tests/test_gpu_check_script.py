"""benchmarks/gpu_check.py, the prepared GPU check (issue 17 item 6), on whatever machine the
tests run: --quick says which GPU parts it skipped and why and still gives the CPU rows; the
GPU providers' row machinery and the torch session a pipeline runs on CUDA work on the CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def rows_of(text: str, first_cell: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith(f"| {first_cell} |")]


def test_quick_run_names_what_it_skipped_and_keeps_the_cpu_rows(tmp_path: Path) -> None:
    import torch

    out = tmp_path / "gpu.md"
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--quick", "--runs", "2",
                           "--threads", "1", "--out", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text(encoding="utf-8")
    assert text.splitlines()[0] in done.stdout and "## 6." in done.stdout
    for n in range(1, 7):
        assert f"## {n}. " in text
    assert "failed:" not in text and "not measured" not in text, text
    if not torch.cuda.is_available():
        for part in ("torch CUDA rows: skipped: ", "CAM on CUDA: skipped: ", "no GPU: the NCCL"):
            assert part in text
        assert "sees no CUDA device" in text or "without CUDA" in text
    # ONNX Runtime's GPU providers: rows where they run, else one line each saying why not
    for label in ("ORT CUDA", "ORT TensorRT fp32"):
        assert f"- {label}: skipped: " in text or f"| {label} |" in text
    # the CPU rows: torch's fastest CPU path per quick model, CAM on the CPU, the series
    torch_rows = [r for r in rows_of(text, "lab2-nodule-slice") + rows_of(text, "lab4-chest-unet")
                  if r[2].endswith("(CPU fastest)")]
    assert len(torch_rows) == 2 and all(r[3].endswith(" ms") for r in torch_rows)
    assert rows_of(text, "lab2-nodule-slice")[-1][1:3] == ["Grad-CAM", "cpu"]
    (series,) = rows_of(text, "ORT CPU")
    assert float(series[3]) > 0 and series[-1] == "100.000 %"


@pytest.fixture()
def unet() -> SimpleNamespace:
    import torch

    from medviewer.inference.registry import find_model
    from medviewer.labs import architectures

    manifest = find_model("lab4-chest-unet")
    arch = architectures.get(manifest.arch)
    torch.manual_seed(0)
    model = arch.build(**arch.default_options).eval()
    return SimpleNamespace(manifest=manifest, arch=arch, model=model)


def test_provider_rows_on_a_stand_in_provider_export_and_cap_tensorrt(
        tmp_path: Path, unet: SimpleNamespace) -> None:
    """The CPU provider stands in for CUDA: same model, same input, so parity is exact; the
    TensorRT row is refused once its budget is spent; the full-size model is exported first."""
    import gpu_check_models as g
    import torch

    image = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    subject = g.Subject("unet 64", unet.arch, unet.model, [image], size=(64, 64))
    ctx = SimpleNamespace(args=SimpleNamespace(runs=1, threads=1, trt_budget=0.0),
                          tmp=tmp_path)
    chains = {"stand-in": ["CPUExecutionProvider"],
              "ORT TensorRT fp32": ["CPUExecutionProvider"]}
    rows = {r[2]: r for r in g.ort_rows(subject, chains, ctx, trt_deadline=0.0)}
    assert (tmp_path / unet.arch.name / "model.onnx").is_file()
    assert set(rows) == {"ORT CPU", "stand-in", "ORT TensorRT fp32"}
    assert rows["stand-in"][5] == f"{0.0:.1e} (ok)" and rows["stand-in"][3].endswith(" ms")
    assert rows["ORT TensorRT fp32"][3] == "-" and "budget is spent" in rows["ORT TensorRT fp32"][5]


def test_torch_session_runs_the_pipeline_like_onnx_runtime(unet: SimpleNamespace) -> None:
    """The session section 5 hands the pipeline for torch on CUDA, here on the CPU with the
    shipped weights: the same label map as ONNX Runtime."""
    import bench_inference as bench
    from gpu_check import TorchSession

    from medviewer.core import synthetic
    from medviewer.inference import open_model

    loaded = open_model(unet.manifest, providers=["CPUExecutionProvider"], threads=1,
                        backend="onnxruntime,fp32")
    voxels, _ = synthetic.ct_chest_phantom((4, 256, 256), (1.0, 1.4, 1.4))
    volume = bench.fake_volume(voxels, "CT", {})
    expected = loaded.run(volume).label_map
    loaded.pipeline.session = TorchSession(bench.torch_model_for(unet.manifest), unet.arch,
                                           unet.manifest, "cpu")
    result = loaded.run(volume)
    assert result.provider == "torch cpu"
    assert len(np.unique(expected)) > 2
    assert np.mean(result.label_map == expected) > 0.999
