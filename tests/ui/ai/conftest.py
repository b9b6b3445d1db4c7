"""The built-in demo study in a real window, for the AI tests that run the shipped models."""

from __future__ import annotations

import json

import pytest

from medviewer.core.dicom import scan


@pytest.fixture(scope="module")
def truth(demo_study):
    return json.loads((demo_study / "ground_truth.json").read_text(encoding="utf-8"))


@pytest.fixture
def demo_window(make_main_window, demo_study, qtbot):
    window = make_main_window()
    window.resize(1300, 850)
    series = {(s.patient_key, s.modality): s for s in scan(demo_study).all_series()}

    def open_series(patient_id: str, modality: str):
        chosen = next(s for (p, m), s in series.items() if patient_id in p and m == modality)
        with qtbot.waitSignal(window.volume_loaded, timeout=60_000):
            window.open_series(chosen)
        return window.document

    window.open_demo_series = open_series
    return window
