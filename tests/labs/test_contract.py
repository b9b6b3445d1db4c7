"""Contract tests over every registered architecture (timm's shape).

Each architecture in `medviewer.labs.architectures` is built with seeded random weights (and
random batch-norm statistics, so eval-mode normalisation is not an identity the export could
get wrong unseen), exported by the project's own `export_model` at its tiny example input,
and then checked: ONNX Runtime reproduces torch, the graph's signature is the manifest's,
a dynamic batch axis really takes one more sample, dynamic image axes take a larger image,
and the safetensors weights rebuild the model.

One export per architecture: the module-scoped, parametrised `exported` fixture makes pytest
run all the checks of one architecture before building the next.
"""

from __future__ import annotations

import importlib
import shutil
import time
from dataclasses import dataclass

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medviewer.inference import load_manifest  # noqa: E402
from medviewer.inference.manifest import WEIGHTS_FILE, Manifest  # noqa: E402
from medviewer.inference.session import ORT_DTYPES, ModelSession  # noqa: E402
from medviewer.labs import architectures  # noqa: E402
from medviewer.labs.architectures import Architecture  # noqa: E402
from medviewer.training.export import (  # noqa: E402
    PARITY_RTOL,
    export_model,
    load_weights,
    relative_error,
    torch_outputs,
)

CPU = ["CPUExecutionProvider"]
# the TorchScript exporter's deprecation and tracer warnings say nothing about the contract
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore::torch.jit.TracerWarning",
                                        "ignore::UserWarning", "ignore::FutureWarning")


def _import_labs() -> dict[str, str]:
    """Import every lab's models module; a broken one is reported, the others still tested."""
    errors = {}
    for module in architectures.LAB_MODULES:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any failure is a contract failure below
            errors[module] = f"{type(exc).__name__}: {exc}"
    return errors


IMPORT_ERRORS = _import_labs()
NAMES = architectures.names() if not IMPORT_ERRORS else sorted(architectures.ARCHITECTURES)


def test_every_lab_registers_its_architectures() -> None:
    assert not IMPORT_ERRORS, f"lab model modules that do not import: {IMPORT_ERRORS}"
    empty = [lab for lab in range(1, 6) if not architectures.names(lab)]
    assert not empty, f"labs that register no architecture: {empty}"


def test_both_digit_networks_of_lab1_are_under_contract() -> None:
    """The fully connected SimpleNN and the overview's MedicalCNN (28x28 and light 8x8)."""
    assert {"lab1.simplenn", "lab1.medical_cnn", "lab1.medical_cnn_light"} <= set(NAMES)


def test_names_are_unique_and_labelled() -> None:
    for name in NAMES:
        arch = architectures.get(name)
        assert arch.name == name and name.startswith(f"lab{arch.lab}.")
        assert arch.task in ("classification", "fusion", "segmentation", "detection")
        assert len(set(arch.input_names)) == len(arch.input_names) >= 1
        assert len(set(arch.output_names)) == len(arch.output_names) >= 1
        unknown = set(arch.dynamic_axes) - set(arch.input_names) - set(arch.output_names)
        assert not unknown, f"{name}: dynamic axes for unknown tensors {unknown}"


@dataclass
class Exported:
    arch: Architecture
    model: torch.nn.Module
    inputs: tuple
    manifest: Manifest
    export_seconds: float
    session: ModelSession  # opened once: the full VGG16 encoders take seconds to load
    expected: list[np.ndarray]  # torch's outputs at the example inputs


def randomise_normalisation(model: torch.nn.Module, seed: int = 0) -> None:
    """Batch-norm running statistics and affine terms away from their identity defaults."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            mean, var = getattr(module, "running_mean", None), getattr(module, "running_var", None)
            if not isinstance(mean, torch.Tensor) or not isinstance(var, torch.Tensor):
                continue
            mean.copy_(torch.randn(mean.shape, generator=g) * 0.1)
            var.copy_(torch.rand(var.shape, generator=g) * 0.5 + 0.75)
            for name in ("weight", "bias"):
                t = getattr(module, name, None)
                if isinstance(t, torch.Tensor):
                    base = 1.0 if name == "weight" else 0.0
                    t.copy_(base + torch.randn(t.shape, generator=g) * 0.1)


def build(arch: Architecture, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = arch.build(**arch.default_options)
    randomise_normalisation(model, seed)
    return model.eval()


def manifest_fields(arch: Architecture, inputs: tuple) -> dict:
    """What export_model cannot know, filled with neutral values for a contract test."""
    image = inputs[0]
    if image.ndim >= 4:
        size, channels = [int(image.shape[-2]), int(image.shape[-1])], int(image.shape[1])
    else:
        size, channels = [1, int(image.shape[-1])], 1
    return {"id": f"contract-{arch.name}", "title": arch.name, "plugin": f"lab{arch.lab}",
            "version": "0.0.0", "labels": [{"name": "a"}, {"name": "b"}],
            "input": {"size": size, "channels": channels},
            "provenance": {"command": "pytest tests/labs/test_contract.py", "seed": 0,
                           "pretrained": "none: random weights"},
            "description": "contract test export"}


@pytest.fixture(scope="module", params=NAMES)
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    arch = architectures.get(request.param)
    model = build(arch)
    inputs = tuple(arch.example_inputs())
    folder = tmp_path_factory.mktemp("contract") / arch.name
    start = time.perf_counter()
    manifest = export_model(model, arch, folder, manifest_fields(arch, inputs), inputs)
    seconds = time.perf_counter() - start
    session = ModelSession(manifest, CPU, threads=2)  # also checks the graph vs the manifest
    yield Exported(arch, model, inputs, manifest, seconds, session, torch_outputs(model, inputs))
    shutil.rmtree(folder, ignore_errors=True)  # full VGG16 is half a gigabyte


def ort_run(e: Exported, inputs: tuple) -> dict[str, np.ndarray]:
    feed = {n: t.detach().numpy() for n, t in zip(e.arch.input_names, inputs, strict=True)}
    return e.session.run(feed)


def assert_parity(expected: list[np.ndarray], actual: dict[str, np.ndarray],
                  names: tuple[str, ...]) -> None:
    assert len(expected) == len(names), f"torch gives {len(expected)} outputs, names {names}"
    for name, e in zip(names, expected, strict=True):
        a = actual[name]
        assert a.shape == e.shape, f"{name}: ONNX Runtime {a.shape}, torch {e.shape}"
        assert a.dtype == e.dtype, f"{name}: ONNX Runtime {a.dtype}, torch {e.dtype}"
        error = relative_error(e, a)
        assert error <= PARITY_RTOL, f"{name}: relative error {error:.2e} > {PARITY_RTOL:.0e}"


def test_parity_torch_vs_onnx_runtime(exported: Exported) -> None:
    assert_parity(exported.expected, ort_run(exported, exported.inputs),
                  exported.arch.output_names)
    assert exported.manifest.provenance["parity_max_relative_error"] <= PARITY_RTOL


def test_manifest_matches_the_graph(exported: Exported) -> None:
    arch, m = exported.arch, exported.manifest
    again = load_manifest(m.folder)  # checksums of both files
    assert (again.arch, again.lab, again.task) == (arch.name, arch.lab, arch.task)
    assert set(m.onnx_inputs) == set(arch.input_names)  # manifest.json sorts its keys
    assert m.onnx_outputs == arch.output_names
    graph = exported.session._session
    for meta, t in zip(graph.get_inputs(), exported.inputs, strict=True):
        declared = arch.dynamic_axes.get(meta.name, {})
        assert m.onnx_inputs[meta.name] == [declared.get(i, int(s)) for i, s in
                                            enumerate(t.shape)]
        for i, dim in enumerate(meta.shape):
            assert isinstance(dim, str) == (i in declared), f"{meta.name} axis {i}: {dim}"
        assert ORT_DTYPES.get(meta.type) == t.detach().numpy().dtype, meta.type
    for meta, e in zip(graph.get_outputs(), exported.expected, strict=True):
        assert ORT_DTYPES.get(meta.type) == e.dtype, f"{meta.name}: {meta.type} vs {e.dtype}"
        assert len(meta.shape) == e.ndim, f"{meta.name}: {meta.shape} vs {e.shape}"
        for i in arch.dynamic_axes.get(meta.name, {}):
            assert not isinstance(meta.shape[i], int), f"{meta.name} axis {i} is fixed"


def one_more_sample(e: Exported) -> tuple:
    """The example batch plus one different sample on every dynamic batch axis.

    The export traced the example batch (usually 1), so this batch size (usually 2) is one
    the graph has never seen: a batch size frozen into a Reshape shows up here.
    """
    g = torch.Generator().manual_seed(1)
    out = []
    for name, t in zip(e.arch.input_names, e.inputs, strict=True):
        if 0 not in e.arch.dynamic_axes.get(name, {}):
            out.append(t)
            continue
        first = t[:1]
        if t.is_floating_point():
            other = first + 0.25 * t.std().clamp(min=1e-3) * torch.randn(first.shape, generator=g)
        else:
            other = first.flip(-1)
        out.append(torch.cat([t, other.to(t.dtype)]))
    return tuple(out)


def test_dynamic_batch(exported: Exported) -> None:
    arch = exported.arch
    batch_axis = {arch.dynamic_axes.get(n, {}).get(0) for n in arch.input_names} - {None}
    if not batch_axis:
        pytest.skip(f"{arch.name} declares no dynamic batch axis")
    inputs = one_more_sample(exported)
    expected = torch_outputs(exported.model, inputs)
    actual = ort_run(exported, inputs)
    assert_parity(expected, actual, arch.output_names)
    batch = int(exported.inputs[0].shape[0]) + 1
    for name, e in zip(arch.output_names, expected, strict=True):
        if arch.dynamic_axes.get(name, {}).get(0) in batch_axis:
            assert e.shape[0] == batch, f"{name} should follow the batch ({batch}): {e.shape}"


def larger_images(e: Exported, grow: int = 32) -> tuple:
    """Every input whose last two axes are declared dynamic, `grow` pixels larger each way.

    32 keeps sizes divisible by the deepest stride of the U-Net and FCN-8s encoders.
    """
    g = torch.Generator().manual_seed(2)
    out = []
    for name, t in zip(e.arch.input_names, e.inputs, strict=True):
        axes = e.arch.dynamic_axes.get(name, {})
        if t.ndim < 3 or not {t.ndim - 2, t.ndim - 1} <= set(axes):
            out.append(t)
            continue
        shape = (*t.shape[:-2], t.shape[-2] + grow, t.shape[-1] + grow)
        out.append(torch.rand(shape, generator=g).to(t.dtype) * (t.max() - t.min()) + t.min())
    return tuple(out)


def test_dynamic_image_size(exported: Exported) -> None:
    inputs = larger_images(exported)
    if all(a is b for a, b in zip(inputs, exported.inputs, strict=True)):
        pytest.skip(f"{exported.arch.name} declares no dynamic image size")
    expected = torch_outputs(exported.model, inputs)
    assert_parity(expected, ort_run(exported, inputs), exported.arch.output_names)


def test_weights_rebuild_the_model(exported: Exported) -> None:
    fresh = build(exported.arch, seed=1)
    load_weights(fresh, exported.manifest.path(WEIGHTS_FILE))
    fresh.eval()
    for e, a in zip(exported.expected, torch_outputs(fresh, exported.inputs), strict=True):
        assert a.shape == e.shape and relative_error(e, a) <= 1e-6


def test_cam_layers_belong_to_the_model(exported: Exported) -> None:
    arch = exported.arch
    if arch.cam_layers is None:
        pytest.skip(f"{arch.name} names no CAM layers")
    layers = arch.cam_layers(exported.model)
    assert layers, f"{arch.name}: cam_layers returned nothing"
    modules = [id(m) for m in exported.model.modules()]
    assert all(id(layer) in modules for layer in layers)


def test_export_time_is_reasonable(exported: Exported) -> None:
    """Tiny example inputs keep the suite fast; a slow export hints at a huge example input."""
    assert exported.export_seconds < 120, f"{exported.arch.name}: {exported.export_seconds:.0f}s"


if not NAMES:  # pragma: no cover - before any lab registers: say so instead of "0 tests"
    def test_some_architecture_is_registered() -> None:
        pytest.fail(f"no architecture registered (import errors: {IMPORT_ERRORS})")

