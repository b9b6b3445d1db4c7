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


def _program(*args: str, hook: str = "") -> subprocess.CompletedProcess:
    """The installed program's path (`medviewer.cli.program`), `hook` run before it."""
    code = (f"import sys; {hook}; sys.argv = ['medviewer', *{list(args)!r}]; "
            "from medviewer.cli import program; program()")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).parents[2], timeout=120)


def test_headless_command_exits_at_once_with_all_its_output(tmp_path):
    # enough files that the JSON overflows a pipe's buffer several times: all of it must
    # still arrive, and a reader that stops early must find the program still writing
    syn.write_series(tmp_path / "a", np.zeros((2000, 2, 2), np.int16), seed=3)
    teardown = "import atexit; atexit.register(lambda: print('TEARDOWN', file=sys.stderr))"
    done = _program("scan", str(tmp_path), "--json", "--files", hook=teardown)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout) > 2 * 65536
    (series,) = json.loads(done.stdout)["patients"][0]["studies"][0]["series"]
    assert len(series["files"]) == 2000
    assert "TEARDOWN" not in done.stderr  # no interpreter teardown after a finished command
    missing = _program("scan", str(tmp_path / "nowhere"), hook=teardown)
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
    assert "TEARDOWN" not in missing.stderr
    # a reader that stops early (`| head`): exit 1, no traceback
    code = (f"import sys; sys.argv = ['medviewer', 'scan', {str(tmp_path)!r}, '--json', "
            "'--files']; from medviewer.cli import program; program()")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=Path(__file__).parents[2], bufsize=0)
    assert child.stdout.read(100).startswith(b"{")  # unbuffered: 100 bytes and no more
    child.stdout.close()
    assert child.wait(timeout=120) == 1
    assert b"Traceback" not in child.stderr.read()
    # argparse's own exits (help, bad options) and the version go the ordinary way
    version = _program("--version", hook=teardown)
    assert version.returncode == 0 and version.stdout.startswith("medviewer ")
    assert "TEARDOWN" in version.stderr
