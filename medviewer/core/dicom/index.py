"""Header scan of a folder, a DICOMDIR or files into patients / studies / series stacks.

    scan(paths, *, progress=None, cancel=None, cache=True, workers=None) -> ScanResult

`paths`: a folder (recursive; hidden entries skipped; symlinks followed only while they stay
inside it, core/paths.py), a DICOMDIR file, a file, or a list of any of these. Headers only
(see headers.py), in worker processes where that pays (`default_workers`); progress(done,
total) after each chunk of files; cancel() -> True stops before the next file and returns what
was found with `cancelled=True`. Links out of the folder, FIFOs, devices, unreadable folders
become a `FileProblem`. The index is cached in SQLite (cache.py) keyed by path, size and
mtime; `cache` may be False or a path. Within one process, folders whose listing has not
changed since the last scan with the same database are taken from a memo (`MEMO`) without
touching the database.

What becomes what: images are grouped Patient (ID + name) -> Study (StudyInstanceUID) ->
Series (SeriesInstanceUID), a series split into stacks where orientation or image size
differ. Non-DICOM files, and DICOM objects that hold no image (SR, KO, PR, RT plans, the
DICOMDIR itself), count in `files_skipped`: the browser lists what can be viewed, and a
series with nothing to load would only be a dead end. Corrupt DICOM, and image objects
without pixel data, become a `FileProblem` with the reason.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path

from pydicom.uid import UID

from medviewer.core.dicom.cache import (
    FolderMemo,
    FolderRow,
    ScanCache,
    decode_row,
    encode_row,
    open_cache,
    row_files,
)
from medviewer.core.dicom.errors import DicomError
from medviewer.core.dicom.grouping import FolderIndex, build_result, index_row
from medviewer.core.dicom.headers import HeaderFacts, read_header, read_instance
from medviewer.core.dicom.listing import FolderListing, Targets, dicomdir_files
from medviewer.core.dicom.model import Instance, ScanResult

__all__ = ["MEMO", "HeaderFacts", "dicomdir_files", "read_header", "read_instance", "scan"]

ProgressCallback = Callable[[int, int], None]
CancelCheck = Callable[[], bool]
Stat = tuple[int, int]  # (size, mtime_ns)
MIN_FILES_FOR_POOL = 2000  # below this, starting worker processes costs more than it saves
VALUE_FIELDS = tuple(Instance.__dataclass_fields__)[1:]  # a payload's values: all but path
_MISSING = object()  # a file still to be parsed
MEMO = FolderMemo()


def scan(
    paths: str | Path | Sequence[str | Path],
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    cache: bool | str | Path = True,
    workers: int | None = None,
) -> ScanResult:
    """Index headers into patients -> studies -> series stacks; see the module docstring.

    workers: header-reading processes; None picks `default_workers()`, 1 reads in this process.
    """
    with _gc_paused():
        found = Targets(cancel=cancel)
        for item in [paths] if isinstance(paths, str | Path) else paths:
            found.add(os.path.abspath(item))
        found.finish()
        store = open_cache(cache)
        try:
            folders, cancelled = _index_folders(found, store, progress, cancel, workers)
        finally:
            if store is not None:
                store.close()
        result = build_result(folders, found.problems)
        result.files_seen, result.cancelled = found.count + found.extra_skipped, cancelled
        result.files_skipped += found.extra_skipped
        del folders, found  # before the collector resumes: nothing to file away but the index
    return result


@contextmanager
def _gc_paused() -> Iterator[None]:
    """A scan allocates ~10 objects per file and makes no reference cycles. Left running, the
    cyclic collector visits the growing index again and again (measured: more than decoding
    the cache); resumed, it would still visit every new object once. The new objects are the
    index, long-lived by nature, so freeze/unfreeze files them straight into the oldest
    generation (a list splice) and the collector resumes as it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if enabled:
            gc.enable()


# --- each folder from the memo, the cache, or its files ---------------------------------------


class _Pending:
    """A folder some of whose files must be parsed: its payloads so far (_MISSING holes) and
    its stored row (whose other files a partial listing must keep)."""

    def __init__(self, listing: FolderListing, row: FolderRow | None, walked: bool) -> None:
        self.listing, self.row, self.walked = listing, row, walked
        known = row_files(row) if row is not None else {}
        self.payloads = []
        for k, name in enumerate(listing.names):
            hit = known.get(name)
            self.payloads.append(hit[1] if hit is not None and hit[0] == listing.stat(k)
                                 else _MISSING)

    def missing(self) -> Iterator[int]:
        return (k for k, p in enumerate(self.payloads) if p is _MISSING)


def _index_folders(
    found: Targets,
    store: ScanCache | None,
    progress: ProgressCallback | None,
    cancel: CancelCheck | None,
    workers: int | None,
) -> tuple[list[FolderIndex], bool]:
    """A FolderIndex per folder: memo, then cached row where the whole listing matches, then
    per file (cached where size and mtime match, parsed otherwise)."""
    database = str(store.location) if store is not None else None
    built, pending = _reuse(found, store, database)
    todo = [(os.path.join(folder, p.listing.names[k]), p.listing.stat(k))
            for folder, p in pending.items() for k in p.missing()]
    total = found.count
    if progress:
        progress(total - len(todo), total)
    fresh, cancelled = _parse_all(todo, workers, cancel, progress, total,
                                  cancelled=found.cancelled)
    rows: dict[str, FolderRow | None] = {}
    for folder, p in pending.items():
        built[folder] = _complete(folder, p, fresh, rows)
        if database is not None and folder in found.walked and _MISSING not in p.payloads:
            MEMO.put(database, folder, p.listing.key(), built[folder], len(p.payloads))
    if store is not None:
        if not cancelled:
            rows.update(_gone(found, store))
        store.save(rows)
    return [built[folder] for folder in found.folders], cancelled


def _reuse(found: Targets, store: ScanCache | None, database: str | None
           ) -> tuple[dict[str, FolderIndex], dict[str, _Pending]]:
    """Folders built without parsing (memo, or a stored row of the same listing), and the
    folders left with files to parse."""
    built: dict[str, FolderIndex] = {}
    keys = {folder: found.folders[folder].key() for folder in found.walked}
    for folder, key in keys.items():
        hit = MEMO.get(database, folder, key) if database is not None else None
        if hit is not None:
            built[folder] = hit
    rest = [folder for folder in found.folders if folder not in built]
    raw = store.load(rest) if store is not None and rest else {}
    pending: dict[str, _Pending] = {}
    for folder in rest:
        listing, row, key = found.folders[folder], decode_row(raw.get(folder)), keys.get(folder)
        if key is not None and (row[:2] == key if row is not None else not listing.names):
            built[folder] = index_row(folder, listing.names, row) if row else FolderIndex()
            if database is not None:
                MEMO.put(database, folder, key, built[folder], len(listing.names))
        else:
            pending[folder] = _Pending(listing, row, folder in found.walked)
    return built, pending


def _complete(folder: str, p: _Pending, fresh: dict[str, object],
              rows: dict[str, FolderRow | None]) -> FolderIndex:
    """Fill a pending folder's holes from `fresh` (some still missing if cancelled), queue its
    new row, and build its index from the files listed now."""
    names, stamps, payloads, parsed = [], [], [], False
    for k, name in enumerate(p.listing.names):
        payload = p.payloads[k]
        if payload is _MISSING:
            payload = p.payloads[k] = fresh.get(os.path.join(folder, name), _MISSING)
            if payload is _MISSING:
                continue  # cancelled before this file was read
            parsed = True
        names.append(name)
        stamps += p.listing.stat(k)
        payloads.append(payload)
    row = encode_row(names, stamps, payloads)
    if p.walked:
        rows[folder] = row  # its listing changed: the stored row is out of date
    elif parsed:
        rows[folder] = _merged_row(names, stamps, payloads, p.row)
    return index_row(folder, names, row)


def _merged_row(names: list[str], stamps: list[int], payloads: list,
                stored: FolderRow | None) -> FolderRow:
    """A folder listed only in part (files given one by one, a DICOMDIR) keeps the other
    files of its stored row."""
    entries = row_files(stored) if stored is not None else {}
    entries.update((name, (tuple(stamps[2 * k : 2 * k + 2]), payloads[k]))
                   for k, name in enumerate(names))
    order = sorted(entries)
    return encode_row(order, [v for name in order for v in entries[name][0]],
                      [entries[name][1] for name in order])


def _gone(found: Targets, store: ScanCache) -> dict[str, None]:
    """Stored folders below the walked roots that the walk no longer found."""
    return {folder: None for root in found.roots for folder in store.folders_below(root)
            if folder not in found.walked}


# --- parsing headers, in worker processes where that pays -------------------------------------


def _parse_all(todo: list[tuple[str, Stat]], workers: int | None, cancel: CancelCheck | None,
               progress: ProgressCallback | None, total: int, cancelled: bool
               ) -> tuple[dict[str, object], bool]:
    """path -> payload of each file parsed, and whether the scan was cancelled."""
    fresh: dict[str, object] = {}
    for chunk in _parse([] if cancelled else todo, workers, cancel):
        if chunk is None:
            return fresh, True
        fresh.update(chunk)
        if progress:
            progress(total - len(todo) + len(fresh), total)
    return fresh, cancelled


def _parse(todo: list[tuple], workers: int | None, cancel: CancelCheck | None) -> Iterator:
    """Yield lists of (path, payload) chunk by chunk; yield None once when cancelled."""
    workers = default_workers() if workers is None else max(1, workers)
    size = max(16, min(256, len(todo) // (workers * 4) or 1))
    chunks = [todo[k : k + size] for k in range(0, len(todo), size)]
    if workers > 1 and len(todo) >= MIN_FILES_FOR_POOL:
        chunks = yield from _parse_in_pool(chunks, workers, cancel)
    for chunk in chunks:
        rows = examine_files(chunk, cancel)
        if rows:
            yield rows
        if len(rows) < len(chunk) or (cancel and cancel()):
            yield None
            return


def default_workers() -> int:
    """Worker processes for a scan. Measured on 2 cores: one process parsing ~100 us per file
    beat two (whose start-up and result shipping ate the gain), so pools start at 4 cores."""
    cores = os.cpu_count() or 1
    return min(cores, 8) if cores >= 4 else 1


def _parse_in_pool(chunks: list, workers: int, cancel: CancelCheck | None) -> Iterator:
    """Processes, not threads: the header walk is pure Python and holds the GIL. forkserver
    (spawn where missing) because the GUI calls scan from a thread, where fork is unsafe.
    Returns the chunks left to parse in this process if the pool breaks."""
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(["medviewer.core.dicom.headers"])
    pool = ProcessPoolExecutor(workers, mp_context=context)
    remaining = {pool.submit(examine_files, c): c for c in chunks}
    try:
        while remaining:
            done, _ = wait(remaining, timeout=0.1, return_when=FIRST_COMPLETED)
            for future in done:
                rows = future.result()
                del remaining[future]
                yield rows
            if cancel and cancel():
                yield None
                return []
    except (BrokenProcessPool, OSError, RuntimeError):
        return list(remaining.values())  # the pool broke: finish in this process
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return []


def examine_files(chunk: list[tuple[str, Stat]], cancel: CancelCheck | None = None
                  ) -> list[tuple[str, object]]:
    """(path, payload) per file, payload as in cache.py; in a worker process, or here with
    `cancel` checked before each file (a slow share may take a second per file)."""
    rows = []
    for path, _stat in chunk:
        if cancel is not None and cancel():
            break
        rows.append((path, _examine(path)))
    return rows


def _examine(path: str) -> object:
    try:
        header = read_header(path)
    except DicomError as exc:
        return exc.reason
    except Exception as exc:  # a scan must survive any file; report it instead
        return f"unexpected error reading the header: {exc!r}"
    if header is None:
        return None
    instance, facts = header
    if not facts.has_pixels:
        if "Image" in UID(instance.sop_class_uid).name:
            return "image object without pixel data"
        return None  # SR, KO, PR, RT...: nothing to display
    values = tuple(getattr(instance, name) for name in VALUE_FIELDS)
    return values, tuple(getattr(facts, name) for name in HeaderFacts.__dataclass_fields__)
