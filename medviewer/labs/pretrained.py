"""Pretrained weights from a local file (ImageNet / COCO backbones the user already has).

Nothing is ever downloaded: the builders take `backbone_weights=PATH`, and the demo models
start from scratch and say so in their manifests.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from medviewer.inference.errors import ModelError


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> nn.Module:
    """Local pretrained weights (safetensors, or a plain torch state dict) into `backbone`.

    Keys the backbone lacks (an ImageNet classifier head, say) are skipped; a file sharing no
    tensor with the backbone is an error, not a silent random start.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:  # weights_only: tensors, never arbitrary pickled code
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelError(path, f"The pretrained weights cannot be read ({exc}).") from exc
    own = backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ModelError(path, "No tensor in this file fits the backbone; pick weights of the "
                         "same architecture (e.g. torchvision's ResNet50 for lab2.resnet50).")
    backbone.load_state_dict(usable, strict=False)
    return backbone
