"""The viewer panel's cine follows the rate a loop was recorded at, and only then."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medviewer.core.dicom.volume import Volume, load_series
from medviewer.ui.viewer import ViewerPanel


def loop(frame_rate: float | None, frames: int = 6) -> Volume:
    voxels = np.arange(frames * 16 * 16, dtype=np.uint8).reshape(frames, 16, 16)
    return Volume(voxels=voxels, affine=np.eye(4), modality="US", frame_rate=frame_rate)


@pytest.fixture
def panel(qtbot) -> ViewerPanel:
    panel = ViewerPanel()
    qtbot.addWidget(panel)
    return panel


@pytest.mark.parametrize("rate, shown", [(30.0, 30), (24.6, 25), (250.0, 60), (0.4, 1)])
def test_fps_follows_the_header_rate_clamped(panel: ViewerPanel, rate: float, shown: int):
    panel.fps_spin.setValue(7)
    panel.document.set_volume(loop(rate))
    assert panel.fps_spin.value() == shown
    panel.set_cine(True)
    assert panel.cine_timer.interval() == round(1000 / shown)
    panel.set_cine(False)


def test_a_volume_without_a_rate_keeps_the_readers_choice(panel: ViewerPanel):
    panel.document.set_volume(loop(30.0))
    panel.fps_spin.setValue(12)  # the reader slows it down
    panel.document.set_volume(loop(None))
    assert panel.fps_spin.value() == 12


def test_bundled_ultrasound_loop_plays_at_its_frame_time(panel: ViewerPanel, qtbot):
    path = Path(pydicom.__file__).parent / "data" / "test_files" / "examples_ybr_color.dcm"
    frame_time = float(pydicom.dcmread(path, stop_before_pixels=True).FrameTime)  # ms
    panel.fps_spin.setValue(5)
    panel.document.set_volume(load_series(path))
    assert panel.fps_spin.value() == round(1000 / frame_time)
    panel.cine_action.setChecked(True)
    qtbot.waitUntil(lambda: panel.document.slice_index != 15, timeout=2000)
    panel.cine_action.setChecked(False)
