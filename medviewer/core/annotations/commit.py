"""One series' annotations saved as one atomic unit, by one writer at a time (no Qt).

The files users and other DICOM tools see keep their names in the series' workspace folder:
`segmentation.dcm` (SEG), `annotations.dcm` (SR) and `annotations.json` (its sidecar). Two
small files beside them make the set one unit:

    commit.json  the generation marker: generation number, when and by whom the set was
                 saved, the files of the set and, while a switch is under way, the renames
                 still to do (a redo journal).
    .lock        held by the one process writing the folder (it appears whole: a hard link
                 of a written file, or O_EXCL): its pid, host and time. A lock whose process
                 is dead on this host (a kill), or one older than STALE_S (10 minutes), is
                 broken; the next writer waits up to WAIT_S for a live one, then is refused
                 with a sentence.

A save (`Commit`, used as `with Commit(folder, base) as commit:`):
  1. takes the lock;
  2. `tidy`: finishes a switch a killed save left half-done, removes staging folders and
     temporary files (`.segmentation.dcm-*.tmp`, `.autosave.npz-*.tmp`, ...) nobody owns;
  3. refuses (SaveConflict) when the generation on disk is not `base`, the one the reader
     opened: another MedViewer window saved meanwhile, and its work must not vanish;
  4. the caller writes every new file into `commit.staged(name)`, a `.staging-*` folder;
  5. COMMIT POINT: commit.json with generation + 1 and the renames to do, written atomically
     (the staged files were fsynced before);
  6. each staged file is renamed over its final name (atomic each, same folder), removed
     files are deleted, commit.json is rewritten without the journal, staging is removed.
A kill before 5 leaves the complete old set (plus litter the next `tidy` removes); a kill
after 5 is rolled forward by the next `tidy`. Readers go through `reading` (the lock, then
`tidy`), so they see the whole old set or the whole new set (POSIX rename semantics). A
read-only folder has no writer and is read as it is. Autosaves take the same lock, so `tidy`
never removes a temporary file that a live process is writing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medviewer.core.annotations.seg import AnnotationError
from medviewer.core.atomic import atomic_file, process_alive

MARKER, LOCK, STAGING = "commit.json", ".lock", ".staging-"
MARKER_FORMAT = "medviewer-annotations-commit"
WAIT_S, STALE_S, UNWRITTEN_S = 10.0, 600.0, 5.0
MARKER_MAX_BYTES = 1 << 20


class SaveConflict(AnnotationError):
    """Another window saved (or is saving) this series' annotations: this save is refused."""


# --- the marker --------------------------------------------------------------------------------

def read_marker(folder: Path) -> dict[str, Any]:
    """commit.json of `folder` ({} when there is none or it is not ours: generation 0)."""
    path = Path(folder) / MARKER
    try:
        if path.stat().st_size > MARKER_MAX_BYTES:  # ours are a few hundred bytes
            return {}
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return {}
    return record if isinstance(record, dict) and record.get("format") == MARKER_FORMAT else {}


def generation(folder: Path, marker: dict[str, Any] | None = None) -> int:
    """The generation of the set in `folder` (0 before the first atomic save); `marker`: its
    commit.json when already read."""
    value = (read_marker(folder) if marker is None else marker).get("generation", 0)
    return value if isinstance(value, int) else 0


def _write_marker(folder: Path, record: dict[str, Any]) -> None:
    with atomic_file(folder / MARKER, "w", encoding="utf-8") as f:
        f.write(json.dumps({"format": MARKER_FORMAT, **record}, indent=1) + "\n")
    _fsync_folder(folder)


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError, AttributeError):  # not on Windows: rename is enough
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- the lock ----------------------------------------------------------------------------------

def _owner() -> str:
    return f"{os.getpid()} {socket.gethostname()} {time.time():.3f}"


def _stale(path: Path) -> bool:
    """Whether the lock at `path` belongs to nobody alive (see the module docstring)."""
    try:
        text, age = path.read_text(encoding="utf-8"), time.time() - path.stat().st_mtime
    except (OSError, UnicodeDecodeError):
        return False  # gone meanwhile: the next attempt takes it
    parts = text.split()
    if len(parts) < 3 or not parts[0].isdigit():
        return age > UNWRITTEN_S  # killed between creating and writing it
    if age > STALE_S:  # no save takes this long; the pid may be reused since a reboot
        return True
    if parts[1] != socket.gethostname() or os.name == "nt":  # Windows: os.kill would kill
        return False
    return not process_alive(int(parts[0]))  # another user's or unknowable: wait for it


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, UnicodeDecodeError, IndexError, ValueError):
        pid, host = path.read_text(encoding="utf-8").split()[:2]
        return f" (process {pid} on {host})"
    return ""


@contextlib.contextmanager
def folder_lock(folder: Path, wait_s: float = WAIT_S) -> Iterator[None]:
    """Hold `folder`'s lock; AnnotationError (a SaveConflict) after `wait_s` for a live one."""
    folder.mkdir(parents=True, exist_ok=True)
    path, deadline = folder / LOCK, time.monotonic() + wait_s
    while not _take(path):
        if _stale(path):
            path.unlink(missing_ok=True)
        elif time.monotonic() > deadline:
            raise SaveConflict(folder, "Another MedViewer window" + _holder(path) +
                               " is saving these annotations right now; try again in a "
                               "moment.")
        else:
            time.sleep(0.05)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _take(path: Path) -> bool:
    """Create the lock with its owner in it, or False when it exists. A hard link of a
    written temporary file makes it appear whole (a kill never leaves an empty lock);
    where links are not supported, O_EXCL and a write."""
    tmp = path.with_name(f"{LOCK}-{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(_owner(), encoding="utf-8")
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # no hard links on this file system
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(_owner())
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        raise AnnotationError(path.parent, f"The annotation folder cannot be locked for "
                              f"saving ({exc}).") from exc
    finally:
        tmp.unlink(missing_ok=True)


# --- tidying after a kill ------------------------------------------------------------------------

def tidy(folder: Path) -> None:
    """Finish a half-done switch and remove litter; call with the lock held."""
    marker = read_marker(folder)
    pending = marker.get("pending") if isinstance(marker.get("pending"), dict) else None
    staging = Path(str(pending.get("staging", ""))).name if pending else ""
    if pending and staging.startswith(STAGING):  # never a folder outside this one
        _apply(folder, folder / staging, pending)
        _write_marker(folder, {**marker, "pending": None})
    for item in folder.iterdir() if folder.is_dir() else ():
        if item.name.startswith(STAGING) and item.is_dir():
            shutil.rmtree(item, ignore_errors=True)
        elif item.name.startswith(".") and item.name.endswith(".tmp") and item.is_file():
            item.unlink(missing_ok=True)  # an atomic write killed before its rename


def _apply(folder: Path, staging: Path, pending: dict[str, Any]) -> None:
    for name in pending.get("moves") or []:
        source = staging / Path(str(name)).name
        if source.is_file():  # absent: already moved before the kill
            os.replace(source, folder / source.name)
    for name in pending.get("removes") or []:
        (folder / Path(str(name)).name).unlink(missing_ok=True)
    _fsync_folder(folder)


@contextlib.contextmanager
def reading(folder: Path) -> Iterator[int]:
    """Read `folder`'s set whole: yields its generation. A folder that does not exist or
    cannot be written (a CD: nobody saves there) is read as it is."""
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        yield generation(folder)
        return
    with folder_lock(folder):
        tidy(folder)
        yield generation(folder)


# --- a save -------------------------------------------------------------------------------------

class Commit:
    """One atomic save of a folder's annotation set (see the module docstring).

    `base`: the generation the reader opened (None: do not check, e.g. a headless save).
    After the `with` block, `generation` is the new set's."""

    def __init__(self, folder: Path, base: int | None = None, saved_by: str = "") -> None:
        self.folder, self.base, self.saved_by = Path(folder), base, saved_by
        self.staging = self.folder / f"{STAGING}{secrets.token_hex(4)}"
        self.removes: list[str] = []
        self.generation = 0
        self._lock: Any = None

    def __enter__(self) -> Commit:
        self._lock = folder_lock(self.folder)
        self._lock.__enter__()
        try:
            tidy(self.folder)
            self._check_base()
            self.staging.mkdir()
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def _check_base(self) -> None:
        marker = read_marker(self.folder)
        self.generation = generation(self.folder, marker)
        if self.base is None or self.base == self.generation:
            return
        try:
            at = dt.datetime.fromtimestamp(marker["saved_at"]).strftime("%H:%M")
        except (KeyError, TypeError, ValueError, OverflowError, OSError):
            at = "a later time"
        raise SaveConflict(self.folder, f"Another MedViewer window saved these annotations at "
                           f"{at}; reopen the series to see them. This save was refused, so "
                           "nothing of theirs was overwritten.")

    def staged(self, name: str) -> Path:
        """Where to write the new `name` (its final place is folder / name)."""
        return self.staging / name

    def remove(self, name: str) -> None:
        """Delete folder / name when the set switches (a SEG whose labels were all erased)."""
        self.removes.append(name)

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        try:
            if kind is None:
                self._switch()
            else:
                shutil.rmtree(self.staging, ignore_errors=True)
        finally:
            self._lock.__exit__(None, None, None)

    def _switch(self) -> None:
        moves = sorted(p.name for p in self.staging.iterdir() if p.is_file()
                       and not p.name.startswith("."))
        if not moves and not self.removes:
            shutil.rmtree(self.staging, ignore_errors=True)
            return
        _fsync_folder(self.staging)
        listed = read_marker(self.folder).get("files")
        old = {n for n in listed if isinstance(n, str)} if isinstance(listed, list) else set()
        files = sorted((old | set(moves)) - set(self.removes))
        record = {"generation": self.generation + 1, "saved_at": time.time(),
                  "saved_by": self.saved_by or _owner().rsplit(" ", 1)[0], "files": files}
        pending = {"staging": self.staging.name, "moves": moves, "removes": self.removes}
        _write_marker(self.folder, {**record, "pending": pending})  # the commit point
        _apply(self.folder, self.staging, pending)
        _write_marker(self.folder, {**record, "pending": None})
        shutil.rmtree(self.staging, ignore_errors=True)
        self.generation += 1
