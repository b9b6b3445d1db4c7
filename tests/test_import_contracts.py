"""The layer and feature rules of DESIGN.md, as import-linter contracts (`.importlinter`).

The first test checks the code as it is; the others plant one wrong import in a copy of the
package and check that the contracts catch it, so a contract that silently checks nothing
(a renamed package, a typo in a module name) fails here too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"


def lint(package_parent: Path) -> subprocess.CompletedProcess:
    """lint-imports with the project's contracts on the `medviewer` found in package_parent."""
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    code = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run([sys.executable, "-c", code, "--config", str(CONFIG), "--no-cache"],
                          cwd=package_parent, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_code_keeps_every_contract():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout and "KEPT" in done.stdout


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory) -> Path:
    parent = tmp_path_factory.mktemp("copy")
    shutil.copytree(ROOT / "medviewer", parent / "medviewer",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return parent


@pytest.mark.parametrize(("module", "bad_import", "broken"), [
    ("ui/ai/menu.py", "from medviewer.ui.annotate import controller", "features"),
    ("ui/annotate/panel.py", "from medviewer.ui.training import menu", "features"),
    ("ui/training/menu.py", "from medviewer.ui.shell import main_window", "features"),
    ("ui/viewing/tags.py", "from medviewer.ui.ai import layers", "features"),
    ("ui/document/study.py", "from medviewer.ui.viewing import slice_view", "features"),
    ("core/geometry.py", "import PySide6.QtCore", "Qt"),
    ("inference/outputs.py", "import torch", "torch"),
    ("training/metrics.py", "import pyqtgraph", "only medviewer.ui"),
    ("pacs/store.py", "import PySide6.QtCore", "medviewer.pacs (PACS networking) sits beside"),
    ("pacs/dimse.py", "from medviewer.inference import outputs", "sits beside core"),
    ("core/geometry.py", "from medviewer.pacs import store", "core and inference import no"),
    ("inference/outputs.py", "from medviewer.pacs import dimse", "core and inference import no"),
    ("training/metrics.py", "from medviewer.pacs import store", "only medviewer.ui (and the CLI)"),
])
def test_a_wrong_import_breaks_a_contract(package_copy, module, bad_import, broken):
    path = package_copy / "medviewer" / module
    original = path.read_text(encoding="utf-8")
    # under TYPE_CHECKING: a back-reference "for the type checker only" counts too
    planted = f"from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    {bad_import}\n"
    path.write_text(planted + original, encoding="utf-8")
    try:
        done = lint(package_copy)
    finally:
        path.write_text(original, encoding="utf-8")
    assert done.returncode != 0, done.stdout
    assert "BROKEN" in done.stdout and broken in done.stdout
