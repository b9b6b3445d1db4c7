"""A model folder + a slice -> an Explanation: the torch side of `medviewer.explain.explain`.

The torch model is rebuilt from the manifest's architecture and weights.safetensors; its
input is made by the plugin's own pipeline `preprocess`, so the heatmap explains exactly
what the ONNX model saw. The heatmap comes back resized to the slice's pixel grid.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from medviewer.explain import ABLATION_CAM, EIGEN_CAM, GRAD_CAM, cams
from medviewer.inference import preprocess as pp
from medviewer.inference.errors import ModelError
from medviewer.inference.manifest import WEIGHTS_FILE, Manifest, verify_files
from medviewer.inference.pipeline import InferenceCancelled
from medviewer.inference.registry import load_plugin
from medviewer.inference.results import Box, Explanation

_CACHE: dict[tuple, tuple[Any, nn.Module]] = {}  # the last model explained, kept warm
# One explanation at a time per process: AblationCAM swaps a layer of the cached model while
# it runs, so a second worker must not use that model meanwhile (a cancelled run lets go
# within one batch).
_LOCK = threading.Lock()


class Steps:
    """Progress (done, total) and cancel checks between the stages of one explanation."""

    def __init__(self, progress: Callable | None, cancelled: Callable | None, total: int):
        self.progress, self.cancelled, self.total, self.done = progress, cancelled, total, 0

    def check(self) -> None:
        if self.cancelled is not None and self.cancelled():
            raise InferenceCancelled()

    def step(self, count: int = 1) -> None:
        """`count` more steps done (a stage that had inner steps counts them too)."""
        self.done += count
        self.total = max(self.total, self.done + 1)
        if self.progress is not None:
            self.progress(self.done, self.total)
        self.check()

    def inner(self, done: int, total: int) -> None:
        """Progress of a stage with its own steps (AblationCAM's batches)."""
        if self.progress is not None:
            self.progress(self.done + done, self.total + total)


def pick_device(name: str | None = None) -> torch.device:
    """CUDA when torch sees a GPU (AblationCAM is ~hundreds of forward passes), else CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _architecture(name: str) -> Any:
    from medviewer.labs import architectures

    if name not in architectures.ARCHITECTURES:
        try:
            architectures.get(name)
        except (KeyError, ImportError) as exc:
            raise ModelError(None, f"This MedViewer has no architecture {name!r} to rebuild "
                             "the model for its explanation; update MedViewer.") from exc
    return architectures.ARCHITECTURES[name]


def load_model(manifest: Manifest, device: torch.device) -> tuple[Any, nn.Module]:
    """(architecture, torch model in eval mode on `device`) from weights.safetensors."""
    from medviewer.inference.manifest import external_problem
    from medviewer.training.export import load_weights

    problem = external_problem(manifest, "cam")  # imported from ONNX: no torch layers
    if problem is not None:
        raise ModelError(manifest.folder, problem)
    verify_files(manifest, (WEIGHTS_FILE,))
    key = (str(manifest.folder), manifest.files.get(WEIGHTS_FILE), str(device))
    if key in _CACHE:
        return _CACHE[key]
    arch = _architecture(manifest.arch)
    if arch.cam_layers is None:
        raise ModelError(manifest.folder, f"{manifest.title} has no layer a class activation "
                         "map can read (it is not a convolutional image model).")
    options = {**arch.default_options, **manifest.options.get("build", {})}
    model = load_weights(arch.build(num_classes=len(manifest.labels), **options),
                         manifest.path(WEIGHTS_FILE))
    _CACHE.clear()
    _CACHE[key] = arch, model.eval().to(device)
    return _CACHE[key]


def model_inputs(manifest: Manifest, volume: Any, slice_index: int, arch: Any,
                 device: torch.device) -> tuple[list[torch.Tensor], np.ndarray, bool]:
    """The model's input tensors for one slice, made by the plugin's own preprocess.

    Also the slice's grey voxels and whether the input is the whole series (series_level).
    """
    pipeline = load_plugin(manifest.plugin).pipeline_for(manifest, None)
    voxels = pipeline.grey_voxels(volume)
    if not 0 <= slice_index < voxels.shape[0]:
        raise ModelError(None, f"Slice {slice_index} is outside this series "
                         f"(0..{voxels.shape[0] - 1}).")
    arrays = pipeline.preprocess(voxels, pipeline.indices(voxels, [slice_index]), volume)
    tensors = [torch.from_numpy(np.ascontiguousarray(arrays[name])).to(device)
               for name in arch.input_names]
    return tensors, voxels, pipeline.series_level


def to_slice_grid(heat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A model-grid heatmap resized (bilinear) onto the slice's pixels, float32 0..1."""
    out = pp.resize(np.asarray(heat, np.float32), tuple(shape), order=1)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def run_explanation(manifest: Manifest, volume: Any, slice_index: int, method: str, *,
                    target: Any = None, progress: Callable | None = None,
                    cancelled: Callable | None = None, **options: Any) -> Explanation:
    """Load, preprocess, explain, resize: four steps (AblationCAM adds one per batch)."""
    start = time.perf_counter()
    steps = Steps(progress, cancelled, 4)
    steps.check()
    device = pick_device(options.pop("device", None))
    with _LOCK:
        arch, model = load_model(manifest, device)
        steps.step()
        inputs, voxels, whole_series = model_inputs(manifest, volume, slice_index, arch, device)
        steps.step()
        if method == GRAD_CAM:
            position = (slice_index + 0.5) / voxels.shape[0] if whole_series else 0.5
            heat, label, notes = _classifier_cam(manifest, arch, model, inputs, target,
                                                 position)
        else:
            heat, label, notes = _detector_cam(manifest, arch, model, inputs[0], method,
                                               target, steps, voxels.shape[1:3], **options)
    steps.step()
    heatmap = to_slice_grid(heat, voxels.shape[1:3])
    if progress is not None:
        progress(steps.total, steps.total)
    return Explanation(method=method, model_id=manifest.id, slice_index=slice_index,
                       heatmap=heatmap, target=label, notes=f"{notes} on {device.type}",
                       seconds=time.perf_counter() - start)


def _category(manifest: Manifest, target: Any) -> int | None:
    if target is None or isinstance(target, (int, np.integer)):
        return None if target is None else int(target)
    if target in manifest.label_names:
        return manifest.label_names.index(target)
    raise ModelError(manifest.folder, f"{manifest.title} has no class {target!r}; its classes "
                     f"are {', '.join(manifest.label_names)}.")


def _classifier_cam(manifest: Manifest, arch: Any, model: nn.Module,
                    inputs: list[torch.Tensor], target: Any, position: float
                    ) -> tuple[np.ndarray, str, str]:
    image = inputs[0]
    if image.ndim != 4:
        raise ModelError(manifest.folder, f"Grad-CAM here reads 2D images; {manifest.title} "
                         f"takes a {image.ndim}D input.")
    net = cams.FixedExtras(model, inputs[1:]) if len(inputs) > 1 else model
    heat, category = cams.grad_cam(net, image, arch.cam_layers(model),
                                   _category(manifest, target), position)
    name = manifest.label_names[category] if category < len(manifest.labels) else str(category)
    return heat, name, f"Grad-CAM for class {name!r}"


def _detector_cam(manifest: Manifest, arch: Any, model: nn.Module, image: torch.Tensor,
                  method: str, target: Any, steps: Steps, slice_shape: tuple[int, int],
                  **options: Any) -> tuple[np.ndarray, str, str]:
    detector = getattr(model, "detector", model)
    layers = arch.cam_layers(model)
    box, label = _target_box(manifest, detections_of(detector, image), target, slice_shape)
    name = _label_name(manifest, label)
    goal = cams.box_target(box, [label])
    if method == EIGEN_CAM:
        return cams.eigen_cam(detector, image, layers, goal), name, "EigenCAM of the FPN"
    if method != ABLATION_CAM:
        raise ModelError(manifest.folder, f"{method} does not apply to a detector.")
    ratio = float(options.get("ratio", 0.05))
    batch = int(options.get("batch_size", 32 if image.is_cuda else 8))
    try:
        heat, ablated, total = cams.ablation_cam(
            detector, image, layers, goal, ratio=ratio, batch_size=batch,
            progress=steps.inner, cancelled=steps.cancelled)
    except ValueError as exc:
        raise ModelError(manifest.folder, f"AblationCAM cannot explain this box ({exc}).") from exc
    batches = -(-ablated // batch)
    steps.done += batches
    steps.total += batches
    return heat, name, (f"AblationCAM on {ablated} of {total} FPN channels (ratio {ratio}), "
                        f"batches of {batch}")


def detections_of(detector: nn.Module, image: torch.Tensor) -> dict[str, np.ndarray]:
    found = cams.detections(detector, image)
    return {k: v.detach().cpu().numpy() for k, v in found.items()}


def _label_name(manifest: Manifest, label: int) -> str:
    names = manifest.label_names
    return names[label - 1] if 1 <= label <= len(names) else f"label {label}"


def _target_box(manifest: Manifest, found: dict[str, np.ndarray], target: Any,
                slice_shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """(box in the model grid, 1-based label): a Box from the viewer, an index, or the best."""
    if isinstance(target, Box):
        model_size = manifest.input.size
        box = pp.scale_boxes([target.x0, target.y0, target.x1, target.y1], slice_shape,
                             model_size)[0]
        names = manifest.label_names
        return box, names.index(target.label) + 1 if target.label in names else 1
    if not len(found["boxes"]):
        raise ModelError(manifest.folder, "The detector found nothing on this slice above its "
                         "score threshold, so there is no box to explain.")
    order = np.argsort(-found["scores"], kind="stable")
    if target is not None and not 0 <= int(target) < len(order):
        raise ModelError(manifest.folder, f"There is no box {target} to explain; the detector "
                         f"found {len(order)} on this slice.")
    k = order[0 if target is None else int(target)]
    return found["boxes"][k], int(found["labels"][k])
