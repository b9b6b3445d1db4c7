"""The headless sub-commands, as a user runs them: `medviewer scan` and `medviewer info`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

import medviewer.core.synthetic as syn
from medviewer.cli import main


def _two_series(folder: Path) -> None:
    voxels = np.zeros((3, 32, 32), np.int16)
    syn.write_series(folder / "a", voxels, SeriesDescription="AXIAL 1", seed=1)
    syn.write_series(folder / "b", voxels[:2], SeriesDescription="AXIAL 2", seed=2)
    (folder / "notes.txt").write_text("not an image")


def test_scan_json_lists_series_and_counts(tmp_path, capsys):
    _two_series(tmp_path)
    assert main(["scan", str(tmp_path), "--json", "--files"]) == 0
    out = json.loads(capsys.readouterr().out)
    series = [s for p in out["patients"] for st in p["studies"] for s in st["series"]]
    assert sorted(s["description"] for s in series) == ["AXIAL 1", "AXIAL 2"]
    assert sorted(s["image_count"] for s in series) == [2, 3]
    assert all(len(s["files"]) == s["image_count"] for s in series)
    assert out["files_skipped"] == 1 and out["problems"] == []


def test_scan_text_names_unreadable_files(tmp_path, capsys):
    _two_series(tmp_path)
    broken = syn.write_broken(tmp_path / "broken")
    assert main(["scan", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "AXIAL 1" in out and "AXIAL 2" in out
    assert f"unreadable: {broken['corrupt']}" in out


def test_info_prints_summary_and_elements(pydicom_test_files, capsys):
    assert main(["info", str(pydicom_test_files / "CT_small.dcm")]) == 0
    out = capsys.readouterr().out
    assert "Explicit VR Little Endian" in out and "CompressedSamples^CT1" in out
    assert "(0028,0030) Pixel Spacing" in out


def test_info_on_a_non_dicom_file_fails_with_a_message(tmp_path, capsys):
    text = tmp_path / "readme.txt"
    text.write_text("hello")
    assert main(["info", str(text)]) == 2
    assert "not readable as DICOM" in capsys.readouterr().err


def test_console_entry_point_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "medviewer", "--version"], capture_output=True,
                         text=True, cwd=Path(__file__).parents[2], check=True)
    assert out.stdout.startswith("medviewer ")
