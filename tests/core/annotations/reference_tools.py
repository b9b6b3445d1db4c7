"""dciodvfy (dicom3tools), the reference checker the SR tests run on what they write."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def dciodvfy(path) -> list[str]:
    """dciodvfy's Error and Warning lines on `path`; the test skips where it is missing."""
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy is not on PATH (apt-get install dicom3tools)")
    run = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    return [line.strip() for line in (run.stdout + run.stderr).splitlines()
            if line.startswith(("Error", "Warning"))]
