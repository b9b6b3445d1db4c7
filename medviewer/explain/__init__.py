"""Where a model looked: Grad-CAM, EigenCAM and AblationCAM heatmaps over the torch weights.

    from medviewer.explain import explain, methods_for
    methods_for(manifest)                   # ["EigenCAM", "AblationCAM"] for a detector
    explain(manifest, volume, 0, "EigenCAM", progress=..., cancelled=...) -> Explanation

Importing this package is cheap (no torch): the menu asks `methods_for` without loading a
model; `explain` imports torch and grad-cam on first use. No Qt here: the viewer runs
`explain` in a worker and draws `Explanation.heatmap` (0..1, the slice's pixel grid).
"""

from __future__ import annotations

from typing import Any

from medviewer.inference.errors import ModelError
from medviewer.inference.manifest import Manifest, external_problem
from medviewer.inference.results import Explanation

GRAD_CAM = "Grad-CAM"
EIGEN_CAM = "EigenCAM"
ABLATION_CAM = "AblationCAM"
METHODS = (GRAD_CAM, EIGEN_CAM, ABLATION_CAM)
DETECTOR_METHODS = [EIGEN_CAM, ABLATION_CAM]


def image_input_rank(manifest: Manifest) -> int:
    """Rank of the model's image input, its highest-rank one (manifest.json sorts the inputs
    by name, so "extras" may come first): 4 for (batch, channels, rows, cols)."""
    return max((len(shape) for shape in manifest.onnx_inputs.values()), default=0)


def methods_for(manifest: Manifest) -> list[str]:
    """The explanation methods that apply to this model, the default first; [] for none.

    Detectors: EigenCAM, AblationCAM. Classifiers over a 2D image (batch, channels, rows,
    cols): Grad-CAM. Anything else (lab 1's MLP over 64 numbers, 3D inputs): none.
    """
    if manifest.external:  # imported ONNX / TorchScript: no torch layers to hook
        return []
    if manifest.task == "detection":
        return list(DETECTOR_METHODS)
    if manifest.task in ("classification", "fusion") and image_input_rank(manifest) == 4:
        return [GRAD_CAM]
    return []


def why_not(manifest: Manifest, method: str | None) -> str:
    """The sentence a user reads when `method` does not apply to this model."""
    if manifest.external:
        return external_problem(manifest, "cam")
    if not methods_for(manifest):
        return (f"{manifest.title} does not read a 2D image through convolutions (its inputs "
                f"are {manifest.onnx_inputs}), so no class activation map applies to it.")
    return (f"{method} does not apply to {manifest.title}; use "
            f"{' or '.join(methods_for(manifest))}.")


def explain(manifest: Manifest | str, volume: Any, slice_index: int,
            method: str | None = None, *, target: Any = None, progress: Any = None,
            cancelled: Any = None, **options: Any) -> Explanation:
    """A heatmap of where the model looked on one slice (see medviewer.explain.explainer)."""
    if not isinstance(manifest, Manifest):
        from medviewer.inference.registry import find_model

        manifest = find_model(str(manifest))
    method = method or next(iter(methods_for(manifest)), None)
    if method is None or method not in methods_for(manifest):
        raise ModelError(manifest.folder, why_not(manifest, method))
    from medviewer.explain.explainer import run_explanation

    return run_explanation(manifest, volume, slice_index, method, target=target,
                           progress=progress, cancelled=cancelled, **options)


__all__ = ["ABLATION_CAM", "EIGEN_CAM", "GRAD_CAM", "METHODS", "explain", "methods_for"]
