"""SQLite cache of scanned headers, so a re-scan of an unchanged folder costs a stat per file.

One row per folder holding, for each file in it, (size, mtime_ns, kind, payload): what the
scan concluded about the file when it had that size and mtime. A file is thus keyed by its
absolute path (folder + name), size and mtime_ns. One row per folder rather than per file
because a re-scan should cost little more than the stat calls: fetching and decoding 10,000
rows (measured 40-50 ms as columns or JSON) costs more than walking the folder (~30 ms).

The blob is `marshal` data (dicts, tuples, strings, numbers only; about 4x faster to load
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
import zlib
from pathlib import Path

import platformdirs

from medviewer.core.dicom.headers import HeaderFacts
from medviewer.core.dicom.model import Instance

# Rows hold Instance fields by name and HeaderFacts by position: a change to either
# dataclass must invalidate old rows, hence their field names in the version.
_FIELDS = ",".join([*Instance.__dataclass_fields__, *HeaderFacts.__dataclass_fields__])
SCHEMA_VERSION = 3 + (zlib.crc32(_FIELDS.encode()) & 0xFFFFFF) * 16
IMAGE, SKIPPED, PROBLEM = 0, 1, 2  # what the scan concluded about a file
# name -> (size, mtime_ns, kind, payload); payload: (instance values, facts values) for IMAGE,
# the reason for PROBLEM, None for SKIPPED
FolderEntries = dict[str, tuple]


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
            db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            db.execute("PRAGMA synchronous=NORMAL")
            if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                db.execute("DROP TABLE IF EXISTS folders")
            db.execute("CREATE TABLE IF NOT EXISTS folders "
                       "(folder TEXT PRIMARY KEY, crc INTEGER, entries BLOB) WITHOUT ROWID")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("SELECT count(*) FROM folders").fetchone()  # detects a damaged file
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

    def load(self, folders: list[str]) -> dict[str, FolderEntries]:
        """Cached entries of these folders, in as few queries as SQLite allows."""
        found: dict[str, FolderEntries] = {}
        for k in range(0, len(folders), 500):
            chunk = folders[k : k + 500]
            sql = f"SELECT * FROM folders WHERE folder IN ({','.join('?' * len(chunk))})"
            for folder, crc, blob in self._query(sql, chunk):
                entries = _decode(crc, blob)
                if entries is not None:
                    found[folder] = entries
        return found

    def _query(self, sql: str, args: list) -> list[tuple]:
        if self.db is None:
            return []
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError:
            self._recover()
            return []

    def save(self, folders: dict[str, FolderEntries]) -> None:
        """Replace these folders' rows in one transaction (empty folders are deleted)."""
        if self.db is None or not folders:
            return
        rows, empty = [], []
        for folder, entries in folders.items():
            blob = marshal.dumps(entries)
            if entries:
                rows.append((folder, zlib.crc32(blob), blob))
            else:
                empty.append((folder,))
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR REPLACE INTO folders VALUES (?, ?, ?)", rows)
            self.db.executemany("DELETE FROM folders WHERE folder = ?", empty)
            self.db.execute("COMMIT")
        except sqlite3.OperationalError:
            self._rollback()  # locked by another scan for > timeout: the next scan writes these
        except sqlite3.DatabaseError:
            self._recover()

    def forget_gone(self, root: str, walked: set[str]) -> None:
        """Delete the rows of folders below `root` that a complete walk no longer found."""
        start = root.rstrip(os.sep) + os.sep
        stop = start[:-1] + chr(ord(os.sep) + 1)
        rows = self._query("SELECT folder FROM folders WHERE folder >= ? AND folder < ?",
                           [start, stop])
        self.save({folder: {} for (folder,) in rows if folder not in walked})

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


def _decode(crc: int, blob: bytes) -> FolderEntries | None:
    if not isinstance(blob, bytes) or zlib.crc32(blob) != crc:
        return None
    try:
        entries = marshal.loads(blob)
    except (ValueError, EOFError, TypeError):
        return None
    return entries if isinstance(entries, dict) else None


def open_cache(cache: bool | str | Path) -> ScanCache | None:
    """`cache` as `scan` takes it: True (default place), False (none) or a database path."""
    if cache is False:
        return None
    location = default_location() if cache is True else Path(cache)
    store = ScanCache(location)
    return store if store.db is not None else None
