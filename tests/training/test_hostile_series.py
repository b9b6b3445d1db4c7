"""A job's data.series folder holding a link to / or /proc (issue 12.1): the job fails with a
sentence at once instead of walking the whole filesystem and blocking on /proc/kmsg."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from medviewer.core import synthetic
from medviewer.inference.manifest import load_manifest
from medviewer.inference.registry import shipped_models_dir
from medviewer.training.datasets import build_data
from medviewer.training.errors import TrainingError


@pytest.mark.skipif(os.name != "posix", reason="/proc is POSIX")
def test_series_folder_linking_to_root_fails_fast_with_a_sentence(tmp_path: Path) -> None:
    voxels = np.zeros((3, 16, 16), np.int16)
    synthetic.write_series(tmp_path / "ct", voxels, seed=1)
    (tmp_path / "ct" / "everything").symlink_to("/")
    (tmp_path / "self").symlink_to("/proc/self")
    manifest = load_manifest(shipped_models_dir() / "lab4-chest-unet", verify=False)
    job = SimpleNamespace(model=manifest.id, augment=False, seed=0, path="job.json",
                          data={"series": [str(tmp_path)], "demo": 0, "max_cases": None,
                                "val_fraction": 0.5, "split_seed": 0})
    raised: list[BaseException] = []

    def run() -> None:
        try:
            build_data(job, manifest)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "build_data still walking after 20 s: it hangs"
    assert len(raised) == 1 and isinstance(raised[0], TrainingError)
    assert "No series here has" in raised[0].reason  # the series without annotations
