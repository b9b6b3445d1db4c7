"""Hidden staging folders of exports and publishes, and the cleanup of those a killed
process left behind.

A model folder is written into `.<name>-<host>-<pid>-xxxxxxxx` beside its target and renamed
into place when whole (the registry skips dot folders); <host> is a short hash of the machine's
name. A later export or publish removes the leftovers of a process of this machine that no
longer runs; a live process's folder is never touched, and one of another machine (a model
store in a network home folder) only when it is a day old.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import tempfile
import time
import zlib
from pathlib import Path

from medviewer.core.atomic import process_alive

_STAGING = re.compile(r"^\.(?P<name>.+)-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[a-z0-9_]{8}$")
_UNKNOWABLE_AGE = 24 * 3600  # another machine's process, or Windows (no harmless probe)


def host_tag() -> str:
    return f"{zlib.crc32(socket.gethostname().encode('utf-8', 'replace')):08x}"


def make_staging(parent: Path, name: str) -> Path:
    """A new empty hidden folder in `parent` for `name`, marked with this process."""
    return Path(tempfile.mkdtemp(prefix=f".{name}-{host_tag()}-{os.getpid()}-", dir=parent))


def aside_name(parent: Path, name: str) -> Path:
    """A fresh name of the staging form, not made: where an old folder is moved before it is
    deleted, so a kill meanwhile leaves it hidden and remove_stale takes it away later."""
    return parent / f".{name}-{host_tag()}-{os.getpid()}-{secrets.token_hex(4)}"


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
        if entry.is_dir(follow_symlinks=False) and not _running(match, entry):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def _running(match: re.Match, entry: os.DirEntry) -> bool:
    pid = int(match["pid"])
    if match["host"] != host_tag() or os.name == "nt":  # os.kill(pid, 0) kills on Windows
        return time.time() - entry.stat(follow_symlinks=False).st_mtime < _UNKNOWABLE_AGE
    return process_alive(pid)
