"""DESIGN.md's layer rule: core/, inference/ and pacs/ never import Qt, pyqtgraph or torch."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import medviewer

FORBIDDEN = ("PySide6", "pyqtgraph", "torch", "torchvision", "timm", "superqt")


def _modules_under(package: str) -> list[str]:
    root = Path(medviewer.__file__).parent / package
    prefix = f"medviewer.{package}."
    return [prefix[:-1]] + [m.name for m in pkgutil.walk_packages([str(root)], prefix)]


def test_core_and_inference_import_no_gui_or_torch():
    modules = _modules_under("core") + _modules_under("inference") + _modules_under("pacs")
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(json.dumps([f for f in {FORBIDDEN!r} if f in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(medviewer.__file__).parents[1], check=True)
    assert len(modules) > 3
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
