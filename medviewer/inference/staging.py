"""Hidden staging folders of exports and publishes, and the cleanup of those a killed
process left behind.

A model folder is written into `.<name>-<pid>-xxxxxxxx` beside its target and renamed into
place when whole (the registry skips dot folders). The process id in the name tells a later
export or publish which leftovers belong to a process that no longer runs: those are removed;
a live process's staging folder is never touched.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

_STAGING = re.compile(r"^\.(?P<name>.+)-(?P<pid>\d+)-[a-z0-9_]{8}$")
_WINDOWS_AGE = 24 * 3600  # Windows has no harmless "is it alive" signal: a day old is dead


def make_staging(parent: Path, name: str) -> Path:
    """A new empty hidden folder in `parent` for `name`, marked with this process's id."""
    return Path(tempfile.mkdtemp(prefix=f".{name}-{os.getpid()}-", dir=parent))


def remove_stale(parent: Path, name: str | None = None) -> list[Path]:
    """Remove staging folders in `parent` (for `name`, or any) whose process is gone."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        match = _STAGING.match(entry.name)
        if match is None or (name is not None and match["name"] != name):
            continue
        if entry.is_dir(follow_symlinks=False) and not _running(int(match["pid"]), entry):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def _running(pid: int, entry: os.DirEntry) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there
        return time.time() - entry.stat(follow_symlinks=False).st_mtime < _WINDOWS_AGE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True
