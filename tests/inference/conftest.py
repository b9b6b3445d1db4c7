"""Fixtures of the inference tests (the tiny models themselves are in tiny.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from medviewer.inference import manifest as mf

from .tiny import classifier_onnx, write_model_folder


@pytest.fixture
def make_model(tmp_path: Path) -> Callable[..., mf.Manifest]:
    """make_model(name="m", onnx_bytes=None, **manifest overrides) -> loaded Manifest."""

    def make(name: str = "m", onnx_bytes: bytes | None = None, **overrides: Any) -> mf.Manifest:
        if onnx_bytes is None:
            onnx_bytes = classifier_onnx()[0]
        return write_model_folder(tmp_path / name, onnx_bytes, **overrides)

    return make
