"""MedViewer's per-user data folder, in a module of its own: the model store and the
autosave look it up at start-up, before anything else of the demo study (and pydicom, which
writing it needs) has to load.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "MEDVIEWER_DATA_DIR"


def data_dir() -> Path:
    """MedViewer's per-user data folder; MEDVIEWER_DATA_DIR overrides it (tests use this)."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override)
    import platformdirs  # imported here: only the first start needs it

    return Path(platformdirs.user_data_dir("MedViewer", appauthor=False))
