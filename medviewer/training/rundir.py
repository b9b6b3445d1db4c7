"""A run folder is written by one run at a time, and a run cleans what a killed one left.

The run holds an exclusive lock on its events.jsonl (flock, released by the kernel when the
process ends, however it ends) from before its first file until it exits. Holding it proves no
live run writes the folder, so the temporary files of atomic writes (`.job.json-*.tmp`,
`.best.safetensors-<pid>.tmp`, `.manifest.json-*.tmp` in the candidate) are a killed run's and
are removed, with half an event line a kill cut short. Candidate staging folders
(`.candidate-<host>-<pid>-*`) carry their process and are removed by staging.remove_stale
once it is gone. Where no lock can be taken (Windows, some network shares) only the latter.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import IO

from medviewer.inference.staging import remove_stale
from medviewer.training.errors import TrainingError

EVENTS = "events.jsonl"
CANDIDATE = "candidate"
_TEMP = re.compile(r"^\..+\.tmp$")
_TAIL_CHUNK = 65536


def open_events(run_dir: Path) -> IO[str]:
    """events.jsonl of `run_dir` for appending, locked for this run; a TrainingError when
    another live run holds it."""
    events = open(run_dir / EVENTS, "a+", encoding="utf-8")  # noqa: SIM115 - the run's
    try:
        held = _lock(events.fileno())
        if held is False:
            raise TrainingError(run_dir, "Another training run is writing to this folder; "
                                "wait for it to end, or set \"out\" to another folder.")
        if held:
            cut_partial_line(events)
            tidy(run_dir)
        remove_stale(run_dir, CANDIDATE)
    except BaseException:
        events.close()
        raise
    return events


def _lock(fd: int) -> bool | None:
    """True: held; False: another process holds it; None: no lock can be taken here."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def cut_partial_line(events: IO[str]) -> None:
    """Drop the bytes after the last newline: a line a kill cut short would otherwise glue
    itself to this run's first event."""
    path = Path(events.name)
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        keep = end
        while keep > 0:
            start = max(0, keep - _TAIL_CHUNK)
            f.seek(start)
            chunk = f.read(keep - start)
            if keep == end and chunk.endswith(b"\n"):
                return
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            keep = start
    if keep < end:
        events.flush()
        os.ftruncate(events.fileno(), keep)


def tidy(run_dir: Path) -> list[Path]:
    """Remove the temporary files in `run_dir` and its candidate (call it holding the lock)."""
    removed = []
    for folder in (run_dir, run_dir / CANDIDATE):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if _TEMP.match(entry.name) and entry.is_file(follow_symlinks=False):
                Path(entry.path).unlink(missing_ok=True)
                removed.append(Path(entry.path))
    return removed


def tidy_runs(runs_dir: Path) -> None:
    """The leftovers of killed runs in every run folder of `runs_dir` no live run holds (the
    Retrain dialog gives each run a new folder, so none is ever opened again by a run)."""
    try:
        folders = [Path(e.path) for e in os.scandir(runs_dir) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for folder in folders:
        remove_stale(folder, CANDIDATE)
        fd = _open_existing(folder / EVENTS)
        if fd is None:
            continue
        try:
            if _lock(fd):
                tidy(folder)
        finally:
            os.close(fd)  # and the lock with it


def _open_existing(path: Path) -> int | None:
    """A file descriptor of an existing regular file (never a link, pipe or device)."""
    flags = os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd
