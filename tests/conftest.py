"""Test configuration shared by every test folder.

Qt runs headless here (the user never has to set this), and the repository root is importable
even before `pip install -e .`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# --- synthetic DICOM (medviewer.core.synthetic) ------------------------------------------------

CT_SERIES_SHAPE = (20, 64, 64)
CT_SERIES_SPACING = (5.0, 5.5, 5.5)


@pytest.fixture(scope="session", autouse=True)
def _user_data_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory):
    """No test (nor an app it starts) writes into the real user data or cache folders."""
    names = ("MEDVIEWER_DATA_DIR", "MEDVIEWER_CACHE_DIR")
    previous = {name: os.environ.get(name) for name in names}
    for name in names:
        os.environ[name] = str(tmp_path_factory.mktemp(name.lower()))
    yield
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def ct_series(tmp_path_factory: pytest.TempPathFactory):
    """A small chest CT written slice by slice with shuffled file names, and what it holds.

    Attributes: folder, paths (slice order), voxels (HU, int16), spacing, truth (nodules).
    Session-scoped: treat it as read-only.
    """
    from types import SimpleNamespace

    from medviewer.core import synthetic

    folder = tmp_path_factory.mktemp("ct-series")
    voxels, truth = synthetic.ct_chest_phantom(CT_SERIES_SHAPE, CT_SERIES_SPACING)
    paths = synthetic.write_series(folder, voxels, spacing=CT_SERIES_SPACING,
                                   shuffle_names=True)
    return SimpleNamespace(folder=folder, paths=paths, voxels=voxels,
                           spacing=CT_SERIES_SPACING, truth=truth)


@pytest.fixture
def ct_series_dir(tmp_path: Path) -> Path:
    """A fresh copy of the small chest CT folder (20 x 64 x 64, shuffled names) per test."""
    from medviewer.core import synthetic

    voxels, _ = synthetic.ct_chest_phantom(CT_SERIES_SHAPE, CT_SERIES_SPACING)
    folder = tmp_path / "ct"
    synthetic.write_series(folder, voxels, spacing=CT_SERIES_SPACING, shuffle_names=True)
    return folder


@pytest.fixture(scope="session")
def demo_study(_user_data_in_a_temporary_folder: None) -> Path:
    """The built-in demo study, generated once per session under MEDVIEWER_DATA_DIR (tmp)."""
    from medviewer.core.demo import ensure_demo_study

    return ensure_demo_study()


@pytest.fixture(scope="session")
def pydicom_test_files() -> Path:
    """pydicom's bundled test files (never get_testdata_files: it hangs trying to download)."""
    import pydicom

    return Path(pydicom.__file__).parent / "data" / "test_files"
