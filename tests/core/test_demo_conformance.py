"""The demo study's images pass the reference IOD validator (dicom3tools' dciodvfy) clean.

The demo is the first thing a user opens: every kind of image in it (CT, MR, both chest films,
a digit) must give no error and no warning. Skipped where dciodvfy is not installed
(`bash scripts/setup.sh test` installs it on Debian/Ubuntu).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medviewer.core import demo
from medviewer.core.dicom import load_series

DCIODVFY = shutil.which("dciodvfy")


def _first_file(study: Path, kind: str) -> Path:
    truth = json.loads((study / demo.TRUTH_FILE).read_text())
    entry = truth[kind]
    if "file" in entry:
        return study / entry["file"]
    return sorted((study / entry["folder"]).glob("*.dcm"))[0]


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) is not installed")
@pytest.mark.parametrize("kind, iod", [
    ("chest_ct", "CTImage"), ("head_mr", "MRImage"), ("chest_dx", "DXImageForPresentation"),
    ("cardio_dx", "DXImageForPresentation"), ("digits", "SCImage")])
def test_demo_image_validates_clean(demo_study: Path, kind: str, iod: str) -> None:
    path = _first_file(demo_study, kind)
    run = subprocess.run([DCIODVFY, "-new", str(path)], capture_output=True, text=True,
                         timeout=120)
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert lines[:1] == [iod], lines  # validated against the IOD the file claims
    problems = [line for line in lines if line.startswith(("Error", "Warning"))]
    assert not problems, f"{path.relative_to(demo_study)}:\n" + "\n".join(problems)


def test_digits_carry_no_patient_geometry_and_still_load_in_order(demo_study: Path) -> None:
    """Secondary Capture has no Image Plane module: the digits are ordered by InstanceNumber,
    with no orientation letters or patient coordinates to show, and their pixels unchanged."""
    truth = json.loads((demo_study / demo.TRUTH_FILE).read_text())["digits"]
    folder = demo_study / truth["folder"]
    first = pydicom.dcmread(sorted(folder.glob("*.dcm"))[0], stop_before_pixels=True)
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "FrameOfReferenceUID",
                    "SliceLocation", "SliceThickness"):
        assert keyword not in first
    volume = load_series(folder)
    assert not volume.has_geometry and volume.voxels.shape[0] == truth["image_count"]
    # no positions is what Secondary Capture is, not a fault to report in the status bar
    assert not any("slice positions" in w for w in volume.warnings), volume.warnings
    images, labels = demo._demo_digits()
    assert [int(v) for v in labels] == truth["labels"]
    upscaled = np.kron(np.rint(images * demo.DIGITS_GAIN),
                       np.ones((demo.DIGITS_UPSCALE, demo.DIGITS_UPSCALE)))
    np.testing.assert_array_equal(volume.voxels, upscaled)  # slice k is digit k
