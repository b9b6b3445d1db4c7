"""Issue 17 item 4: the main window module loads only what the first window needs.

The heavy stacks (pydicom, scipy's ndimage / spatial, highdicom, ONNX Runtime, torch) are
imported on first use, so they never delay the first paint; a module-level import of one
fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import medviewer

HEAVY = ("pydicom", "scipy.ndimage", "scipy.spatial", "highdicom", "onnxruntime", "torch",
         "torchvision", "timm", "openvino")


def _loaded_after(statements: str, data_dir: Path) -> list[str]:
    code = (
        "import json, sys\n"
        f"{statements}\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", MEDVIEWER_DATA_DIR=str(data_dir))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(medviewer.__file__).parents[1], check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_main_window_import_leaves_the_heavy_stacks_unloaded(tmp_path):
    assert _loaded_after("import medviewer.ui.shell.main_window", tmp_path) == []


def test_building_the_first_window_leaves_them_unloaded_too(tmp_path):
    """Up to its first paint: the AI menu lists the models without the demo generator."""
    build = ("from PySide6.QtCore import QSettings\n"
             "from medviewer.ui.shell.app import make_application\n"
             "app = make_application()\n"
             "from medviewer.ui.shell.main_window import MainWindow\n"
             f"settings = QSettings({str(tmp_path / 'settings.ini')!r}, QSettings.IniFormat)\n"
             "window = MainWindow(settings, scan_cache=False)\n"
             "window.show()\n"
             "app.processEvents()\n"
             "assert window.ai is not None")
    assert _loaded_after(build, tmp_path) == []
