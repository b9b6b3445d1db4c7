"""bench_inference's contenders: torch's three CPU paths, the int8 copy of a model, and the
parity or accuracy text of each row."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def torch_contenders(model: Any, tensors: list[Any]) -> dict[str, Callable[[], Any]]:
    """The old eager baseline and torch's two fast CPU paths (inference_mode, channels_last)."""
    import copy

    import torch

    try:
        last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    except RuntimeError:  # 3D convolutions: channels_last is for 4D weights only
        last = None
    last_inputs = [t.to(memory_format=torch.channels_last) if t.ndim == 4 else t
                   for t in tensors]

    def eager() -> Any:
        with torch.no_grad():
            return model(*tensors)

    def inference_mode() -> Any:
        with torch.inference_mode():
            return model(*tensors)

    def channels_last() -> Any:
        with torch.inference_mode():
            return last(*last_inputs)

    fns = {"torch eager": eager, "torch inference_mode": inference_mode,
           "torch channels_last": channels_last}
    return fns if last is not None else {k: v for k, v in fns.items() if v is not channels_last}


def quantized(loaded: Any, tmp: Path) -> Any:
    """The model's manifest in a copy of its folder with its int8 file (None: not quantized)."""
    import shutil

    from medviewer.inference.manifest import load_manifest
    from medviewer.inference.quantize import (
        TASKS,
        demo_feeds,
        demo_volume,
        quantize_model,
    )

    m = loaded.manifest
    if m.task not in TASKS:
        return None
    folder = Path(shutil.copytree(m.folder, tmp / "int8"))
    calibration = demo_feeds(loaded.pipeline, demo_volume(m, 16, seed=0))
    held_out = demo_feeds(loaded.pipeline, demo_volume(m, 16, seed=1))
    return quantize_model(load_manifest(folder), calibration, held_out, note="bench")


def parity(arch: Any, expected: list[np.ndarray], actual: list[np.ndarray]) -> float:
    from medviewer.training.export import relative_error, same_order

    if arch.task == "detection" and len(actual) == 3:
        actual = same_order(expected, actual)
    return max(relative_error(e, a) for e, a in zip(expected, actual, strict=True))


def check_text(arch: Any, expected: list[np.ndarray], session: Any, feed: dict,
               manifest: Any) -> str:
    """fp32: largest relative error against torch; int8: its recorded accuracy vs fp32."""
    if session.backend_label.endswith("fp32"):
        actual = list(session.run(feed).values())
        return f"{parity(arch, expected, actual):.1e} rel. vs torch"
    acc = manifest.options["runtime"]["int8"]["accuracy"]
    what = "Dice" if arch.task == "segmentation" else "top-1 agree"
    return (f"{what} {acc['agreement']:.4f}, max rel. diff {acc['max_relative_diff']:.3f} "
            "vs fp32 (held out)")
