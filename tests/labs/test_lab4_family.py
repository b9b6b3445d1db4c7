"""Lab 4's U-Net family (ResUNet, UNet++, ResUNet++): build options, deep supervision, and
the shipped demo models on the demo CT. Export and ONNX parity of every architecture are
the contract tests' (tests/labs/test_contract.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medviewer.labs import architectures  # noqa: E402
from medviewer.labs.lab4.family import ASPP, Attention, SqueezeExcite  # noqa: E402
from medviewer.training.recipes import Objective, batch_loss  # noqa: E402

FAMILY = ("lab4.resunet", "lab4.unetplusplus", "lab4.resunetplusplus")
SHIPPED = ("lab4-chest-resunet", "lab4-chest-unetpp", "lab4-chest-resunetpp")


def _image(size: int = 32, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(0))


def test_every_network_and_its_light_variant_is_registered():
    names = architectures.names(4)
    for name in FAMILY:
        assert {name, f"{name}_small"} <= set(names)
        assert architectures.get(name).full and not architectures.get(f"{name}_small").full
        light = architectures.get(f"{name}_small").build(num_classes=2)  # no options: width 8
        assert next(light.parameters()).shape[0] == 8


@pytest.mark.parametrize("name", [f"{n}_small" for n in FAMILY])
@pytest.mark.parametrize("binary", [False, True])
def test_weights_alone_rebuild_the_network(name, binary):
    """options_from_weights reads labels, channels, width (and UNet++'s heads) back."""
    arch = architectures.get(name)
    num_classes = 2 if binary else 5
    model = arch.build(num_classes=num_classes, binary=binary, in_channels=3, base=4)
    state = model.state_dict()
    options = arch.options_from_weights(state)
    assert options["num_classes"] == num_classes and options.get("binary", False) == binary
    assert options["in_channels"] == 3 and options["base"] == 4
    again = arch.build(**options)
    again.load_state_dict(state)  # strict: every key and shape
    image = torch.randn(1, 3, 48, 48)
    out = again.eval()(image)
    assert out.shape == (1, 1 if binary else 5, 48, 48)
    assert torch.equal(out, model.eval()(image))


def test_unetplusplus_without_deep_supervision_has_one_head():
    arch = architectures.get("lab4.unetplusplus_small")
    model = arch.build(num_classes=3, deep_supervision=False)
    assert len(model.heads) == 1
    assert arch.options_from_weights(model.state_dict())["deep_supervision"] is False
    assert isinstance(model.train()(_image()), torch.Tensor)


def _heads_seen(model: torch.nn.Module) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    for head in model.heads:
        head.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    return seen


def test_unetplusplus_deep_supervision_trains_every_head_and_exports_their_mean():
    arch = architectures.get("lab4.unetplusplus_small")
    torch.manual_seed(0)
    model = arch.build(num_classes=3)
    assert len(model.heads) == 4
    seen = _heads_seen(model)
    out = model.eval()(_image())
    assert len(seen) == 4 and torch.allclose(out, torch.stack(seen).mean(0), atol=1e-6)
    image = _image()
    target = torch.randint(0, 3, (2, 32, 32), generator=torch.Generator().manual_seed(1))
    heads = model.train()(image)
    assert isinstance(heads, tuple) and len(heads) == 4
    expected = sum(batch_loss("segmentation", h, target) for h in heads) / 4
    loss = Objective(model, arch, "segmentation")({"image": image, "target": target})
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()  # every head learns
    assert all(h.weight.grad is not None and h.weight.grad.abs().sum() > 0
               for h in model.heads)


def test_resunetplusplus_has_the_papers_blocks():
    model = architectures.get("lab4.resunetplusplus").build(num_classes=2)
    kinds = [type(m) for m in model.modules()]
    assert kinds.count(SqueezeExcite) == 4  # after the stem and each encoder unit
    assert kinds.count(ASPP) == 2  # the bridge and before the head
    assert kinds.count(Attention) == 3  # one per decoder level
    rates = [m.dilation[0] for m in model.bridge.modules() if isinstance(m, torch.nn.Conv2d)
             and m.kernel_size == (3, 3)]
    assert sorted(rates) == [1, 6, 12, 18]


def test_squeeze_excite_scales_each_channel_by_its_gate():
    block = SqueezeExcite(16, ratio=4).eval()
    x = torch.rand(2, 16, 8, 8)
    gate = block.fc(x.mean(dim=(2, 3)))
    ratio = block(x) / x
    assert torch.allclose(ratio, gate[:, :, None, None].expand_as(x), atol=1e-5)
    assert bool(((gate > 0) & (gate < 1)).all())


def test_sizes_must_follow_the_downsampling():
    """A 40 x 40 slice works for ResUNet (3 halvings), 48 x 48 for UNet++ (4)."""
    for name, size in (("lab4.resunet_small", 40), ("lab4.unetplusplus_small", 48),
                       ("lab4.resunetplusplus_small", 40)):
        model = architectures.get(name).build(num_classes=2).eval()
        assert model(torch.randn(1, 1, size, size)).shape == (1, 2, size, size)


# --- the shipped demo models ------------------------------------------------------------------

@pytest.fixture(scope="module")
def listed():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "medviewer", "models", "--json"],
                         capture_output=True, text=True, check=True).stdout
    return {m["id"]: m for m in json.loads(out)["models"]}


@pytest.mark.parametrize("model_id", SHIPPED)
def test_shipped_model_is_listed_with_held_out_metrics(listed, model_id):
    from medviewer.inference import find_model

    assert listed[model_id]["task"] == "segmentation"
    m = find_model(model_id)
    assert m.arch.endswith("_small") and m.lab == 4
    for where in (m.metrics, m.metrics["demo_ct"]):
        assert set(where["per_label"]) == {"body", "lung", "nodule", "spine"}
        assert all(0.0 <= s["iou"] <= s["dice"] <= 1.0 for s in where["per_label"].values())
    assert "disjoint" in m.metrics["split"] and m.metrics["dice_lung"] > 0.9
    size = sum(f.stat().st_size for f in m.folder.iterdir())
    assert size < 12e6, f"{model_id}: {size / 1e6:.1f} MB"


@pytest.mark.parametrize("model_id", SHIPPED)
def test_infer_segments_the_demo_nodule(model_id, demo_study, tmp_path):
    """`medviewer infer` on slices around the 20 mm nodule writes a SEG whose nodule label
    covers the ground truth's centre."""
    from medviewer.cli import main
    from medviewer.core.annotations import read_seg
    from medviewer.core.dicom import load_series

    series = demo_study / "DEMO-0001" / "CT_CHEST"
    truth = json.loads((demo_study / "ground_truth.json").read_text())["chest_ct"]
    nodule = next(n for n in truth["nodules"] if n["diameter_mm"] == 20.0)
    k, r, c = (int(round(v)) for v in nodule["center_voxel"])
    assert main(["infer", "--model", model_id, str(series), "--out", str(tmp_path),
                 "--slices", f"{k - 2}:{k + 3}", "--threads", "2"]) == 0
    seg = next(tmp_path.rglob("*.seg.dcm"))
    mask, labels = read_seg(seg, load_series(series))
    nodule_value = [n.lower() for n in labels].index("nodule")
    assert mask[k, r, c] == nodule_value
    lung = np.isin(mask[k], [labels.index(n) for n in labels if n.lower() == "lung"])
    assert lung.sum() > 0.1 * lung.size
