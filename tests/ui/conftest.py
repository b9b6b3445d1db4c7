"""Fixtures for the GUI tests: small generated DICOM folders and `make_*` widget factories.

Every widget is registered with `qtbot.add_widget` so pytest-qt closes it; the main window gets
a temporary QSettings file and scan cache, so tests never touch the user's settings or cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

CT_SIZE = 32


def _image(patient: tuple[str, str], study_uid: str, series_uid: str, modality: str,
           number: int, description: str, k: int, pixels: np.ndarray) -> Dataset:
    """One slice with the geometry and identity a viewer needs."""
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID = patient
    ds.PatientSex, ds.PatientBirthDate = "F", "19700101"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.StudyDate = ds.SeriesDate = "20240102"
    ds.StudyDescription, ds.AccessionNumber = "CHEST", "ACC1"
    ds.Modality, ds.SeriesNumber, ds.SeriesDescription = modality, number, description
    ds.InstanceNumber = k + 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0.0, 0.0, 2.5 * k]
    ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 2.5
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "RPID16", "RADLEX", "CT CHEST"
    ds.ProcedureCodeSequence = [code]
    ds.PixelData = pixels.astype(np.int16).tobytes()
    return ds


def write_series(folder: Path, patient: tuple[str, str], modality: str, number: int,
                 description: str, slices: int, study_uid: str | None = None) -> Path:
    """A stack of `slices` images (shuffled names so order must come from positions)."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    rng = np.random.default_rng(number)
    for k in range(slices):
        pixels = rng.integers(0, 2000, (CT_SIZE, CT_SIZE)) + 40 * k
        ds = _image(patient, study_uid, series_uid, modality, number, description, k, pixels)
        ds.save_as(folder / f"img_{(7 * k) % slices:03d}_{number}.dcm", enforce_file_format=True)
    return folder


@pytest.fixture
def dicom_folder(tmp_path: Path) -> Path:
    """Two patients, three series (CT 6 + MR 4 for one, CT 3 for the other), one corrupt file
    and one text file that must be skipped quietly."""
    root = tmp_path / "dicom"
    study = generate_uid()
    write_series(root / "a", ("DOE^JANE", "P001"), "CT", 2, "Thorax 2.5mm", 6, study)
    write_series(root / "a", ("DOE^JANE", "P001"), "MR", 5, "T1 axial", 4, study)
    write_series(root / "b", ("ROE^RICHARD", "P002"), "CT", 3, "Abdomen", 3)
    (root / "notes.txt").write_text("not an image")
    (root / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f")
    return root


@pytest.fixture
def ct_file() -> Path:
    """A real scanner CT from pydicom's bundled files (private tags, many elements)."""
    return Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"


@pytest.fixture
def temp_settings(tmp_path: Path) -> Iterator[Callable[[], object]]:
    """A QSettings factory writing to a temporary INI file, never to the user's settings."""
    from PySide6.QtCore import QSettings

    path = str(tmp_path / "settings" / "medviewer.ini")
    yield lambda: QSettings(path, QSettings.Format.IniFormat)


@pytest.fixture
def make_main_window(qtbot, tmp_path: Path, temp_settings) -> Iterator[Callable[..., object]]:
    from medviewer.ui.shell.main_window import MainWindow

    windows: list[MainWindow] = []

    def factory(**kwargs: object) -> MainWindow:
        kwargs.setdefault("settings", temp_settings())
        kwargs.setdefault("scan_cache", tmp_path / "index.sqlite")
        window = MainWindow(**kwargs)
        qtbot.add_widget(window)
        windows.append(window)
        return window

    yield factory
    for window in windows:
        window.close()  # cancels and waits for its workers


@pytest.fixture
def make_browser(qtbot) -> Callable[..., object]:
    from medviewer.ui.viewing.browser import StudyBrowser

    def factory(**kwargs: object) -> StudyBrowser:
        browser = StudyBrowser(**kwargs)
        qtbot.add_widget(browser)
        return browser

    return factory


@pytest.fixture
def make_tag_panel(qtbot) -> Callable[..., object]:
    from medviewer.ui.viewing.tags import TagPanel

    def factory(**kwargs: object) -> TagPanel:
        panel = TagPanel(**kwargs)
        qtbot.add_widget(panel)
        return panel

    return factory


@pytest.fixture(autouse=True, scope="session")
def _row_major_images() -> None:
    """As at start-up: pyqtgraph reads numpy images as (row, column)."""
    from medviewer.ui.shell.app import configure_pyqtgraph

    configure_pyqtgraph()


class PartialsContext:
    """Stands in for a worker's TaskContext: keeps the partial results, never cancels."""

    def __init__(self) -> None:
        self.partials: list = []

    def partial(self, value) -> None:
        self.partials.append(value)

    def progress(self, done: int, total: int) -> None:
        pass

    def is_cancelled(self) -> bool:
        return False


@pytest.fixture
def task_context() -> PartialsContext:
    return PartialsContext()


@pytest.fixture
def fast_autosave(monkeypatch: pytest.MonkeyPatch) -> None:
    """Autosave every 100 ms instead of every 30 s."""
    from medviewer.ui.annotate.autosave import AnnotationSafety

    monkeypatch.setattr(AnnotationSafety, "AUTOSAVE_MS", 100)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """The tiny test models (tests/ui/ai_models.py) in a folder of their own, their plugin
    registered; point MEDVIEWER_MODELS_DIR at it."""
    from tests.ui.ai_models import write_test_models

    return write_test_models(tmp_path_factory.mktemp("ai-models"))
