"""Pretrained backbones load from a local file, for every lab that names one (never the
network): the tensors that fit end up in the network, and a foreign file is refused."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torchvision.models import resnet50, vgg16

from medviewer.inference import ModelError
from medviewer.labs.architectures import get


def _saved(model: torch.nn.Module, path) -> dict[str, torch.Tensor]:
    torch.manual_seed(7)
    for p in model.parameters():
        torch.nn.init.normal_(p)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    return state


@pytest.fixture(scope="module")
def imagenet_resnet50(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet50.safetensors"
    return path, _saved(resnet50(weights=None), path)


CASES = [  # architecture, build options, where its ResNet50 layer3 lives
    ("lab2.resnet50_agesex", {}, lambda m: m.backbone),
    ("lab3.single_slice", {}, lambda m: m),
    ("lab3.late_fusion", {"slices": 2}, lambda m: m.nets[1]),
    ("lab5.fasterrcnn_resnet50_fpn", {}, lambda m: m.detector.backbone.body),
]


@pytest.mark.parametrize("name,options,where", CASES, ids=[c[0] for c in CASES])
def test_resnet50_backbones_take_local_imagenet_weights(imagenet_resnet50, name, options,
                                                         where):
    path, state = imagenet_resnet50
    model = get(name).build(backbone_weights=str(path), **options)
    layer = where(model).state_dict()
    assert torch.equal(layer["layer3.0.conv1.weight"], state["layer3.0.conv1.weight"])


@pytest.mark.parametrize("name,options", [("lab4.fcn8s", {"fc_channels": 64}),
                                          ("lab4.unet_vgg16", {}), ("lab2.vgg16", {})])
def test_vgg16_encoders_take_local_vgg16_weights(tmp_path, name, options):
    path = tmp_path / "vgg16.safetensors"
    state = _saved(vgg16(weights=None), path)
    model = get(name).build(num_classes=3, backbone_weights=str(path), **options)
    assert torch.equal(model.features[28].weight, state["features.28.weight"])


def test_a_file_of_another_network_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"something.else": torch.zeros(3)}, str(path))
    with pytest.raises(ModelError, match="No tensor in this file fits"):
        get("lab3.early_fusion").build(backbone_weights=str(path))
