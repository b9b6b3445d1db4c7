"""SQLite cache of scanned headers, so a re-scan of an unchanged folder costs a stat per file.

One row per folder: the folder's listing as the scan saw it (file names, and each file's size
and mtime_ns) and, per file, what the scan concluded about it with that size and mtime. A file
is thus keyed by its absolute path (folder + name), size and mtime_ns. One row per folder
rather than per file because a re-scan should cost little more than the stat calls: fetching
and decoding 10,000 rows costs more than walking the folder. The listing is stored as the two
flat values of `FolderListing.key`, so an unchanged folder is recognised by comparing two
values, not hundreds; and the per-file payloads are plain tuples (a tuple loads ~3x faster
than a dict of the same values).

The blob is `marshal` data (tuples, strings, bytes, numbers only; several times faster to load
than JSON), guarded by a CRC32 so a damaged row is dropped instead of decoded. Unlike pickle,
marshal builds only built-in values and runs no code: a forged blob (which needs write
access to the user's own cache folder) can only yield wrong index entries.

The cache is an optimisation only: any trouble with it (corrupt database, locked by another
process, read-only disk, schema from another version) falls back to parsing.
"""

from __future__ import annotations

import marshal
import os
import sqlite3
import threading
import zlib
from array import array
from collections import OrderedDict
from itertools import repeat
from pathlib import Path
from typing import Any

import platformdirs

from medviewer.core.dicom.headers import HeaderFacts
from medviewer.core.dicom.model import Instance

# Rows hold Instance and HeaderFacts fields by position: a change to either dataclass must
# invalidate old rows, hence their field names in the version.
_FIELDS = ",".join([*Instance.__dataclass_fields__, *HeaderFacts.__dataclass_fields__])
SCHEMA_VERSION = 5 + (zlib.crc32(_FIELDS.encode()) & 0xFFFFFF) * 16
# What the scan concluded about one file, its "payload": (Instance values after `path`,
# HeaderFacts values) for an image, the reason (str) for a problem file, None for a file
# skipped (not DICOM, or nothing to display).
#
# A folder row, by columns: (names joined by NUL, sizes and mtimes as int64 bytes, one mark
# per file (IMAGE, SKIPPED, PROBLEM), the problems' reasons, then the images' values by
# column: `constant` holds each column's value where all images agree, `varying` maps the
# other columns' positions to their per-image values. Columns load without a tuple per file
# and feed `map(Instance, ...)` directly; a series repeats most values in every file.
FolderRow = tuple[str, bytes, bytes, tuple, tuple, dict]
RawRow = tuple[int, bytes]  # (crc, blob) as stored, decoded only when used
IMAGE, SKIPPED, PROBLEM = b"ISP"
COLUMNS = len(Instance.__dataclass_fields__)  # the values after `path`, then the facts


def default_location() -> Path:
    """MEDVIEWER_CACHE_DIR if set, else the platform's user cache folder."""
    folder = os.environ.get("MEDVIEWER_CACHE_DIR") or platformdirs.user_cache_dir("MedViewer")
    return Path(folder) / "index.sqlite"


class ScanCache:
    """Folder rows of one database file; every method degrades to 'no cache' on errors."""

    def __init__(self, location: str | Path) -> None:
        self.location = Path(location)
        self.db: sqlite3.Connection | None = None
        try:
            self.db = self._open()
        except sqlite3.OperationalError:  # busy or locked by another scan opening it too:
            self.db = None  # no cache this time; never delete files others have mapped
        except sqlite3.DatabaseError:  # corrupt or not a database: start again
            self._delete_files()
            try:
                self.db = self._open()
            except (sqlite3.Error, OSError):
                self.db = None
        except OSError:
            self.db = None

    def _open(self) -> sqlite3.Connection:
        self.location.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.location, timeout=10, isolation_level=None)
        try:
            # 64 KB pages: a folder's row (~15 KB per 100 files) then spans one page instead of
            # an overflow chain of 4 KB ones; measured 4x faster to fetch. Takes effect only
            # in a new database (before WAL mode is set), a no-op afterwards.
            db.execute("PRAGMA page_size=65536")
            db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            db.execute("PRAGMA synchronous=NORMAL")
            if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                db.execute("DROP TABLE IF EXISTS folders")  # written only then: a re-scan
                db.execute("CREATE TABLE folders (folder TEXT PRIMARY KEY, crc INTEGER, "
                           "entries BLOB) WITHOUT ROWID")  # should not write at all
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("SELECT folder FROM folders LIMIT 1").fetchone()  # a damaged file?
        except BaseException:
            db.close()
            raise
        return db

    def _delete_files(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.remove(f"{self.location}{suffix}")
            except FileNotFoundError:
                pass
            except OSError:
                return

    def load(self, folders: list[str]) -> dict[str, RawRow]:
        """Stored rows of these folders, undecoded (see `decode_row`): a folder whose listing
        the memo recognises is then never decoded."""
        found: dict[str, RawRow] = {}
        for k in range(0, len(folders), 500):
            chunk = folders[k : k + 500]
            sql = f"SELECT * FROM folders WHERE folder IN ({','.join('?' * len(chunk))})"
            found.update((f, (crc, blob)) for f, crc, blob in self._query(sql, chunk))
        return found

    def folders_below(self, root: str) -> list[str]:
        """Names of the stored folders at or below `root` (no blob is read)."""
        start, stop = _below(root)
        sql = "SELECT folder FROM folders WHERE folder = ? OR (folder >= ? AND folder < ?)"
        return [f for (f,) in self._query(sql, [root, start, stop])]

    def _query(self, sql: str, args: list) -> list[tuple]:
        if self.db is None:
            return []
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.OperationalError:  # busy or locked by another scan: not corruption
            return []
        except sqlite3.DatabaseError:
            self._recover()
            return []

    def save(self, folders: dict[str, FolderRow | None]) -> None:
        """Replace these folders' rows in one transaction (None or no files: delete it)."""
        if self.db is None or not folders:
            return
        rows, empty = [], []
        for folder, row in folders.items():
            if row is None or not row[2]:  # no files
                empty.append((folder,))
            else:
                blob = marshal.dumps(row)
                rows.append((folder, zlib.crc32(blob), blob))
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR REPLACE INTO folders VALUES (?, ?, ?)", rows)
            self.db.executemany("DELETE FROM folders WHERE folder = ?", empty)
            self.db.execute("COMMIT")
        except sqlite3.OperationalError:
            self._rollback()  # locked by another scan for > timeout: the next scan writes these
        except sqlite3.DatabaseError:
            self._recover()

    def _rollback(self) -> None:
        try:
            if self.db is not None and self.db.in_transaction:
                self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _recover(self) -> None:
        """The database went bad under us: drop it so the next scan rebuilds it."""
        self.close()
        self._delete_files()

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


def _below(root: str) -> tuple[str, str]:
    """[start, stop) of the folder names strictly below `root`, for a range query."""
    start = root.rstrip(os.sep) + os.sep
    return start, start[:-1] + chr(ord(os.sep) + 1)


def decode_row(raw: RawRow | None) -> FolderRow | None:
    """A stored row, or None when absent or damaged (then its files are parsed again)."""
    if raw is None:
        return None
    crc, blob = raw
    if not isinstance(blob, bytes) or zlib.crc32(blob) != crc:
        return None
    try:
        row = marshal.loads(blob)
    except (ValueError, EOFError, TypeError):
        return None
    return row if _well_formed(row) else None


def _well_formed(row: Any) -> bool:
    """The shape `encode_row` writes, so that a damaged or foreign row cannot misalign files
    and values."""
    if not (isinstance(row, tuple) and len(row) == 6
            and all(isinstance(v, t) for v, t in zip(row, FolderRow.__args__, strict=True))):
        return False
    names, stamps, marks, problems, constant, varying = row
    images = marks.count(IMAGE)
    return (len(stamps) == 16 * len(marks) and names.count("\0") == len(marks) - 1
            and marks.count(PROBLEM) == len(problems)
            and images + len(problems) + marks.count(SKIPPED) == len(marks)
            and len(constant) == (COLUMNS if images else 0)
            and all(isinstance(c, tuple) and len(c) == images for c in varying.values())
            and all(isinstance(k, int) and 0 <= k < COLUMNS for k in varying))


def encode_row(names: list[str], stamps: list[int], payloads: list) -> FolderRow:
    """One folder's files (names sorted, stamps and payloads in the same order) as a row."""
    marks, problems, images = bytearray(), [], []
    for payload in payloads:
        if payload.__class__ is tuple:
            marks.append(IMAGE)
            images.append((*payload[0], payload[1]))
        elif payload is None:
            marks.append(SKIPPED)
        else:
            marks.append(PROBLEM)
            problems.append(str(payload))
    constant, varying = [], {}
    for k, column in enumerate(zip(*images, strict=True)):
        first = column[0]
        same = all(v == first and v.__class__ is first.__class__ for v in column)
        constant.append(first if same else None)
        if not same:
            varying[k] = column
    return ("\0".join(names), array("q", stamps).tobytes(), bytes(marks), tuple(problems),
            tuple(constant), varying)


def row_columns(row: FolderRow) -> list[Any]:
    """The images' columns: per-image tuples, or `repeat` of the shared value."""
    images = row[2].count(IMAGE)
    varying = row[5]
    return [varying[k] if k in varying else repeat(v, images) for k, v in enumerate(row[4])]


def row_files(row: FolderRow) -> dict[str, tuple[tuple[int, int], object]]:
    """name -> ((size, mtime_ns), payload): a row file by file, for folders that changed."""
    stamps = array("q")
    stamps.frombytes(row[1])
    values = zip(*row_columns(row), strict=False)  # shared columns repeat without end
    reasons = iter(row[3])
    payloads = []
    for mark in row[2]:
        if mark == IMAGE:
            v = next(values)
            payloads.append((v[:-1], v[-1]))
        else:
            payloads.append(None if mark == SKIPPED else next(reasons))
    stats = zip(stamps[::2], stamps[1::2], strict=True)
    return dict(zip(row[0].split("\0"), zip(stats, payloads, strict=True), strict=True))


def open_cache(cache: bool | str | Path) -> ScanCache | None:
    """`cache` as `scan` takes it: True (default place), False (none) or a database path."""
    if cache is False:
        return None
    location = default_location() if cache is True else Path(cache)
    store = ScanCache(location)
    return store if store.db is not None else None


class FolderMemo:
    """This process's memo of built folders: (database, folder) -> (listing key, what was
    built from it). A GUI re-opening a folder then skips the database and the building of
    thousands of objects; any change in the listing misses. Bounded: the least recently used
    folders are dropped beyond `max_files` files."""

    def __init__(self, max_files: int = 200_000) -> None:
        self.max_files = max_files
        self._items: OrderedDict[tuple[str, str], tuple[Any, Any, int]] = OrderedDict()
        self._files = 0
        self._lock = threading.Lock()  # scans may run in several threads at once

    def get(self, database: str, folder: str, key: Any) -> Any:
        with self._lock:
            item = self._items.get((database, folder))
            if item is None or item[0] != key:
                return None
            self._items.move_to_end((database, folder))
            return item[1]

    def put(self, database: str, folder: str, key: Any, built: Any, files: int) -> None:
        with self._lock:
            old = self._items.pop((database, folder), None)
            self._files += files - (old[2] if old else 0)
            self._items[(database, folder)] = (key, built, files)
            while self._files > self.max_files and self._items:
                self._files -= self._items.popitem(last=False)[1][2]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._files = 0
