"""Issue 17 item 4: the main window module loads only what the first window needs.

The heavy stacks (pydicom, scipy's ndimage / spatial, highdicom, ONNX Runtime, torch) are imported on
first use, so they never delay the first paint; a module-level import of one fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import medviewer

HEAVY = ("pydicom", "scipy.ndimage", "scipy.spatial", "highdicom", "onnxruntime", "torch", "torchvision",
         "timm", "openvino")


def test_main_window_import_leaves_the_heavy_stacks_unloaded():
    code = (
        "import json, sys\n"
        "import medviewer.ui.shell.main_window\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(medviewer.__file__).parents[1], check=True,
                         env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
