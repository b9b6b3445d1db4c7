"""Issue 17 item 4: the main window module loads only what the first window needs.

The heavy stacks (pydicom, scipy's ndimage / spatial, highdicom, ONNX Runtime, torch) are
imported on first use, so they never delay the first paint; a module-level import of one
fails here. The real start (`app.show_main_window`) paints the window before it imports the
features (AI, Model, Annotate, PACS, Export Dataset) and what they need.
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


# what the features bring: none of it may be loaded when the real start first paints
FEATURES = ("medviewer.ui.ai.controller", "medviewer.ui.annotate.controller",
            "medviewer.ui.pacs.feature", "medviewer.ui.dataset.feature",
            "medviewer.ui.training.menu", "medviewer.inference", "medviewer.core.annotations",
            "jsonschema", "cuda.bindings")

_REAL_START = f"""
import importlib.util, json, sys
from PySide6.QtCore import QEvent, QObject, QTimer
from medviewer.ui.shell.app import make_application, show_main_window
FEATURES = {FEATURES!r}
HEAVY = {HEAVY!r}
def cuda_findable():
    return importlib.util.find_spec("cuda.bindings") is not None
cuda_before = cuda_findable()
app = make_application()
seen = {{}}
def loaded():
    return [m for m in FEATURES if m in sys.modules]
def menus():
    return [a.text() for a in window.menuBar().actions()]
class FirstPaint(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint and "paint" not in seen:
            seen["paint"], seen["menus at paint"] = loaded(), menus()
        return False
spy = FirstPaint()
app.installEventFilter(spy)
window = show_main_window()
seen["before paint"] = loaded()
window.sigFeaturesReady.connect(app.quit)
QTimer.singleShot(60000, app.quit)
app.exec()
seen["ready"], seen["after"], seen["menus"] = window.features_ready, loaded(), menus()
seen["heavy"] = [m for m in HEAVY if m in sys.modules]  # still loaded on first use only
seen["cuda as before"] = cuda_findable() == cuda_before
print(json.dumps(seen))
"""


def test_the_real_start_paints_the_window_before_it_loads_the_features(tmp_path):
    """File, View and Help are painted first; AI, Model and Annotate follow on the next tick,
    with ONNX Runtime's wrappers, the model list (jsonschema) and the annotation writers."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", MEDVIEWER_DATA_DIR=str(tmp_path),
               XDG_CONFIG_HOME=str(tmp_path / "config"))  # never the reader's own settings
    out = subprocess.run([sys.executable, "-c", _REAL_START], capture_output=True, text=True,
                         cwd=Path(medviewer.__file__).parents[1], env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["before paint"] == [] and seen["paint"] == []
    assert seen["menus at paint"] == ["&File", "&View", "&Help"]
    assert seen["ready"]
    assert seen["menus"] == ["&File", "&View", "&AI", "&Model", "A&nnotate", "&Help"]
    assert {"medviewer.ui.ai.controller", "medviewer.inference"} <= set(seen["after"])
    assert seen["heavy"] == []
    assert seen["cuda as before"]  # hidden only while pyqtgraph loaded
