"""Hostile paths (issue 12.1, 12.8): symlinks out of the folder, to / and /proc, loops, FIFOs,
DICOMDIR references leaving their folder, unreadable folders, control characters in names.

Each call that used to hang runs in a thread (or a child process) with a time limit, so a
regression fails here instead of hanging the suite.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.fileset import FileSet

from medviewer.cli import main
from medviewer.core import synthetic
from medviewer.core.dicom import DicomError, load_series, scan
from medviewer.core.dicom import index as index_module
from medviewer.core.paths import (
    UnsafePath,
    component_problem,
    escape_problem,
    open_regular,
    require_component,
    require_inside,
)

ROOT = Path(__file__).resolve().parents[2]
POSIX = pytest.mark.skipif(os.name != "posix", reason="FIFOs and /proc are POSIX")


def finishes(seconds: float, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """call(*args, **kwargs) in a daemon thread; fails (instead of hanging) past `seconds`."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call(*args, **kwargs)
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{call.__name__} still running after {seconds} s: it hangs"
    if "error" in box:
        raise box["error"]
    return box["value"]


def _series(folder: Path, seed: int = 0, slices: int = 4) -> list[Path]:
    voxels = np.random.default_rng(seed).integers(-1000, 1000, (slices, 8, 8)).astype(np.int16)
    return synthetic.write_series(folder, voxels, seed=seed, SeriesDescription=f"S{seed}")


def _reasons(result: Any) -> dict[str, str]:
    return {Path(p.path).name: p.reason for p in result.problems}


@pytest.fixture(autouse=True)
def _fresh_memo() -> None:
    index_module.MEMO.clear()


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A named pipe nobody writes to: opening it for reading blocks forever."""
    path = tmp_path / "pipe.dcm"
    os.mkfifo(path)
    yield path
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # frees a reader a regression left blocked
    os.close(fd)


# --- the helper itself ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["..", ".", "../evil", "a/b", "", "x\x00y", ".hidden", "C:x",
                                  "a\nb", " padded", "x" * 256, "..\\up"])
def test_unsafe_names_are_refused_with_a_reason(name: str, tmp_path: Path) -> None:
    assert component_problem(name)
    with pytest.raises(UnsafePath) as caught:
        require_component(name, "version")
    assert "version" in caught.value.reason


@pytest.mark.parametrize("name", ["1.0.0", "lab1-digits-mlp", "v2_2024-01-31", "Brustkrebs é"])
def test_ordinary_names_pass(name: str) -> None:
    assert component_problem(name) is None and require_component(name) == name


def test_inside_root_follows_no_link_out(tmp_path: Path) -> None:
    (tmp_path / "store" / "real").mkdir(parents=True)
    (tmp_path / "store" / "out").symlink_to(tmp_path)
    store = tmp_path / "store"
    assert require_inside(store, "real") == (store / "real").resolve()
    for escape in ("../x", "/etc/passwd", "out/x", "real/../../x"):
        assert escape_problem(store, escape)
        with pytest.raises(UnsafePath):
            require_inside(store, escape)


@POSIX
def test_open_regular_refuses_pipes_devices_and_kernel_files(fifo: Path) -> None:
    for path in (fifo, "/dev/null", "/proc/self/status", "/proc/kmsg"):
        if not os.path.lexists(path):
            continue
        with pytest.raises(UnsafePath) as caught:
            finishes(5, open_regular, path)
        assert caught.value.reason and isinstance(caught.value, OSError)


# --- scan: symlinks ---------------------------------------------------------------------------


@POSIX
def test_folder_with_links_to_root_and_proc_scans_in_under_a_second(tmp_path: Path) -> None:
    _series(tmp_path / "study")
    (tmp_path / "study" / "everything").symlink_to("/")
    (tmp_path / "self").symlink_to("/proc/self")
    start = time.perf_counter()
    result = finishes(20, scan, tmp_path, cache=False, workers=1)
    assert time.perf_counter() - start < 1.0
    assert [s.image_count for s in result.all_series()] == [4]
    reasons = _reasons(result)
    assert set(reasons) == {"everything", "self"}
    assert "outside the folder" in reasons["everything"] and "/" in reasons["everything"]


@POSIX
def test_cli_scan_of_a_folder_linking_to_root_reports_the_link(tmp_path: Path) -> None:
    _series(tmp_path / "study")
    (tmp_path / "root").symlink_to("/")
    out = subprocess.run([sys.executable, "-m", "medviewer", "scan", str(tmp_path), "--no-cache"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"unreadable: {tmp_path / 'root'}: a link to /, outside the folder" in out.stdout


def test_links_inside_the_folder_are_followed_and_loops_reported(tmp_path: Path) -> None:
    _series(tmp_path / ".store" / "ct", seed=1)  # hidden: reachable only through the link
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "ct").symlink_to(tmp_path / ".store" / "ct")
    (tmp_path / "study" / "up").symlink_to(tmp_path)  # back to a folder holding it
    (tmp_path / "study" / "a").symlink_to(tmp_path / "study" / "b")
    (tmp_path / "study" / "b").symlink_to(tmp_path / "study" / "a")
    (tmp_path / "study" / "gone").symlink_to(tmp_path / "nothing-here")
    result = finishes(20, scan, tmp_path, cache=False, workers=1)
    assert [s.description for s in result.all_series()] == ["S1"]
    reasons = _reasons(result)
    assert set(reasons) == {"up", "a", "b", "gone"}
    assert "holds it" in reasons["up"] and "loop" in reasons["a"]
    named = finishes(20, scan, tmp_path / "study" / "a", cache=False, workers=1)
    assert "leads nowhere" in _reasons(named)["a"]


def test_a_link_to_a_file_outside_is_reported_not_read(tmp_path: Path) -> None:
    outside = _series(tmp_path / "elsewhere", seed=2)[0]
    (tmp_path / "chosen").mkdir()
    (tmp_path / "chosen" / "image.dcm").symlink_to(outside)
    result = finishes(20, scan, tmp_path / "chosen", cache=False, workers=1)
    assert result.all_series() == []
    assert "outside the folder" in _reasons(result)["image.dcm"]
    named = finishes(20, scan, tmp_path / "chosen" / "image.dcm", cache=False, workers=1)
    assert [s.image_count for s in named.all_series()] == [1]  # a file the user names is read


# --- FIFOs ------------------------------------------------------------------------------------


@POSIX
def test_fifo_in_a_folder_is_reported_and_never_opened(tmp_path: Path, fifo: Path) -> None:
    _series(tmp_path / "study")
    result = finishes(20, scan, tmp_path, cache=False, workers=1)
    assert [s.image_count for s in result.all_series()] == [4]
    assert "named pipe" in _reasons(result)["pipe.dcm"]


@POSIX
def test_fifo_named_directly_to_scan_info_and_load_series(fifo: Path, capsys) -> None:
    result = finishes(20, scan, fifo, cache=False, workers=1)
    assert "named pipe" in _reasons(result)["pipe.dcm"]
    assert finishes(20, main, ["info", str(fifo)]) != 0
    assert "named pipe" in capsys.readouterr().err
    with pytest.raises(DicomError, match="named pipe"):
        finishes(20, load_series, fifo)
    with pytest.raises(DicomError, match="system file"):
        finishes(20, load_series, "/proc/self/status")


@POSIX
def test_load_series_of_a_folder_with_hostile_members_finishes(tmp_path: Path, fifo: Path) -> None:
    _series(tmp_path / "ct")
    (tmp_path / "ct" / "everything").symlink_to("/")
    (tmp_path / "self").symlink_to("/proc/self")
    (tmp_path / "ct" / "status").symlink_to("/proc/self/status")
    volume = finishes(20, load_series, tmp_path)
    assert volume.voxels.shape == (4, 8, 8)
    # listed as the scan lists a folder: the links out of it are named, never read
    assert any("status skipped" in note and "outside the folder" in note
               for note in volume.warnings)
    assert any("everything skipped" in note for note in volume.warnings)


def test_load_series_of_a_folder_reads_no_file_through_a_link_out_of_it(tmp_path: Path) -> None:
    outside = _series(tmp_path / "elsewhere", seed=2)[0]
    _series(tmp_path / "ct")
    (tmp_path / "ct" / "stranger.dcm").symlink_to(outside)
    volume = finishes(20, load_series, tmp_path / "ct")
    assert str(outside) not in {s.path for s in volume.sources} and volume.voxels.shape[0] == 4
    assert any("stranger.dcm skipped" in note for note in volume.warnings)


# --- cancel -----------------------------------------------------------------------------------


def test_cancel_on_a_slow_share_returns_before_the_chunk_is_done(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A share answering in 50 ms per file: Cancel must not wait for a chunk of 50 files."""
    _series(tmp_path / "study", slices=200)
    real = index_module.read_header

    def slow(path: str) -> Any:
        time.sleep(0.05)
        return real(path)

    monkeypatch.setattr(index_module, "read_header", slow)
    pressed = threading.Event()
    threading.Timer(0.3, pressed.set).start()
    start = time.perf_counter()
    result = finishes(30, scan, tmp_path, cache=False, workers=1, cancel=pressed.is_set)
    assert result.cancelled
    assert time.perf_counter() - start < 0.3 + 0.5
    assert 0 < sum(s.image_count for s in result.all_series()) < 50


def test_cancel_while_listing_a_huge_folder_on_a_slow_share(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """2,000 files answering a stat in 1 ms: Cancel must not wait for the whole folder."""
    for k in range(2000):
        (tmp_path / f"{k:05d}.dcm").touch()
    real = os.lstat

    def slow(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        time.sleep(0.001)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", slow)
    pressed = threading.Event()
    threading.Timer(0.2, pressed.set).start()
    start = time.perf_counter()
    result = finishes(30, scan, tmp_path, cache=False, workers=1, cancel=pressed.is_set)
    assert result.cancelled and time.perf_counter() - start < 0.2 + 0.5


# --- DICOMDIR ---------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS", "ignore:The value length")
def test_dicomdir_references_leaving_its_folder_are_not_followed(tmp_path: Path) -> None:
    files = _series(tmp_path / "src", seed=3)
    fs = FileSet()
    for path in files:
        fs.add(pydicom.dcmread(path))
    media = tmp_path / "media"
    fs.write(media)
    _series(tmp_path / "secret", seed=4)
    secret = sorted((tmp_path / "secret").iterdir())
    (media / "LINK").symlink_to(tmp_path / "secret")
    dicomdir = pydicom.dcmread(media / "DICOMDIR")
    images = [r for r in dicomdir.DirectoryRecordSequence if "ReferencedFileID" in r]
    images[0].ReferencedFileID = ["..", "SECRET", secret[0].name]
    images[1].ReferencedFileID = [str(secret[1])]  # absolute
    images[2].ReferencedFileID = ["LINK", secret[2].name]
    dicomdir.save_as(media / "DICOMDIR")
    result = finishes(20, scan, media / "DICOMDIR", cache=False, workers=1)
    assert [s.image_count for s in result.all_series()] == [1]  # the one honest reference
    assert all(str(media) in i.path for s in result.all_series() for i in s.instances)
    outside = [p for p in result.problems if "outside its folder" in p.reason]
    assert len(outside) == 3


# --- CLI: exit codes and what is printed ------------------------------------------------------


def test_scan_of_a_missing_path_fails_with_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["scan", str(tmp_path / "nonexistent")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


@POSIX
def test_scan_prints_control_characters_escaped(tmp_path: Path, capsys) -> None:
    broken = synthetic.write_broken(tmp_path)["corrupt"]
    hostile = broken.with_name("evil\x1b[2J\x07.dcm")
    broken.rename(hostile)
    assert main(["scan", str(tmp_path), "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "evil\\x1b[2J\\x07.dcm" in out


def _without_root_powers() -> None:
    """In the child before exec: root loses the right to read every folder (its bounding set
    loses CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH), so permissions apply to it as to a user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # PR_CAPBSET_DROP = 24
        if libc.prctl(24, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux")
def test_unreadable_subfolder_is_reported(tmp_path: Path) -> None:
    _series(tmp_path / "open")
    _series(tmp_path / "closed" / "inside", seed=5)
    os.chmod(tmp_path / "closed", 0o000)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "medviewer", "scan", str(tmp_path), "--no-cache"],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
            preexec_fn=_without_root_powers if os.geteuid() == 0 else None)
    finally:
        os.chmod(tmp_path / "closed", 0o700)
    assert out.returncode == 0, out.stderr
    closed = tmp_path / "closed"
    assert f"unreadable: {closed}: cannot open the folder: Permission denied" in out.stdout
    assert "1 series, 1 unreadable" in out.stdout


@POSIX
def test_a_file_swapped_for_a_pipe_after_the_scan_is_not_opened(tmp_path: Path) -> None:
    """The index is older than the folder: a slice's file is now a named pipe. The load reads
    the others and says which one it could not, instead of blocking on the pipe."""
    paths = _series(tmp_path / "ct")
    series = scan(tmp_path / "ct", cache=False, workers=1).all_series()[0]
    swapped = sorted(paths)[1]
    swapped.unlink()
    os.mkfifo(swapped)
    try:
        volume = finishes(20, load_series, series)
    finally:
        fd = os.open(swapped, os.O_RDWR | os.O_NONBLOCK)  # frees a reader a regression left
        os.close(fd)
    assert volume.voxels.shape[0] == 4
    assert any(swapped.name in w for w in volume.warnings), volume.warnings
