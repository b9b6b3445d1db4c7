"""Atomic saves: a temporary file in the same folder, fsync, rename (DESIGN.md).

A reader (or the next start after a crash) sees the old file or the new one, never half of
one. The file gets the mode open() would give it (mkstemp's 0600 would hide results and
models from the other users of a shared workstation).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def shareable_mode(base: int = 0o666) -> int:
    """`base` less the process umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return base & ~mask


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb", *, private: bool = False,
                **open_kw) -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing; on success fsync and rename it.
    `private`: the file stays readable by its owner only (0600: e.g. the PACS server list)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        if not private:
            os.chmod(tmp, shareable_mode())
        with os.fdopen(fd, mode, **open_kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_file(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return Path(path)


def process_alive(pid: int) -> bool:
    """Whether process `pid` of this machine may still be running (POSIX only: on Windows
    os.kill would end it). Another user's process, or a pid number out of range, counts as
    alive: what a writer left is only tidied when its process is surely gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True
    return True

