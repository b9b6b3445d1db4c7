"""Header scan of a folder, a DICOMDIR or files into patients / studies / series stacks.

    scan(paths, *, progress=None, cancel=None, cache=True, workers=None) -> ScanResult

`paths`: a folder (recursive; hidden entries skipped, symlink loops cut), a DICOMDIR file,
a file, or a list of any of these. Headers only (see headers.py), in worker processes where
that pays (`default_workers`); progress(done, total) after each chunk of files; cancel() ->
True stops between chunks and returns what was found with `cancelled=True`. The index is
cached in SQLite (cache.py) keyed by path, size and mtime; `cache` may be False or a path.

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
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG

import pydicom
from pydicom.uid import UID

from medviewer.core.dicom.cache import IMAGE, PROBLEM, SKIPPED, ScanCache, open_cache
from medviewer.core.dicom.errors import DicomError
from medviewer.core.dicom.headers import HeaderFacts, read_header, read_instance
from medviewer.core.dicom.model import FileProblem, Instance, Patient, ScanResult, Series, Study

__all__ = ["HeaderFacts", "read_header", "read_instance", "scan"]

ProgressCallback = Callable[[int, int], None]
CancelCheck = Callable[[], bool]
Stat = tuple[int, int]  # (size, mtime_ns)
MIN_FILES_FOR_POOL = 2000  # below this, starting worker processes costs more than it saves
_REPEATED_FIELDS = ("sop_class_uid", "orientation", "pixel_spacing", "transfer_syntax_uid",
                    "photometric", "acquisition_time")
ORIENTATION_TOLERANCE = 1e-3  # direction cosines closer than this are one stack
# Instances are rebuilt from their field dict without __init__ while that stays equivalent
_PLAIN_INSTANCE = not hasattr(Instance, "__slots__") and not hasattr(Instance, "__post_init__")


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
        found = _Targets(cancel=cancel)
        for item in [paths] if isinstance(paths, str | Path) else paths:
            found.add(os.path.abspath(item))
        store = open_cache(cache)
        try:
            rows, cancelled = _examine_all(found, store, progress, cancel, workers)
        finally:
            if store is not None:
                store.close()
        result = _result_from_rows(rows, found.problems)
        result.files_seen, result.cancelled = found.count + found.extra_skipped, cancelled
        result.files_skipped += found.extra_skipped
        del rows, found  # before the collector resumes: nothing to file away but the index
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


# --- finding the files ------------------------------------------------------------------------


@dataclass
class _Targets:
    """The files to examine (folder -> name -> stat), which folders were walked whole,
    and the problems met while listing (DICOMDIR trouble, missing files)."""

    folders: dict[str, dict[str, Stat]] = field(default_factory=dict)
    walked: set[str] = field(default_factory=set)
    roots: list[str] = field(default_factory=list)  # folders given to scan, walked whole
    cancel: CancelCheck | None = None  # checked once per folder: a share may hold 100,000s
    cancelled: bool = False
    problems: list[FileProblem] = field(default_factory=list)
    extra_skipped: int = 0  # DICOMDIR index files: their images are indexed, not they

    @property
    def count(self) -> int:
        return sum(len(files) for files in self.folders.values())

    def add(self, path: str) -> None:
        if os.path.isdir(path):
            self.roots.append(path)
            self._walk(path)
        elif os.path.basename(path).upper() == "DICOMDIR":
            self._add_dicomdir(path)
        else:
            self._add_file(path)

    def _walk(self, root: str) -> None:
        """Recursive os.scandir; hidden entries skipped; each real folder visited once."""
        seen: set[tuple[int, int]] = set()
        stack = [root]
        while stack:
            if self.cancel is not None and self.cancel():
                self.cancelled = True
                return
            folder = stack.pop()
            try:
                st = os.stat(folder)
                if (st.st_dev, st.st_ino) in seen or folder in self.walked:
                    continue  # a symlink loop, or a folder given twice
                seen.add((st.st_dev, st.st_ino))
                entries = list(os.scandir(folder))
            except OSError:
                continue
            self.walked.add(folder)
            self._list_folder(entries, self.folders.setdefault(folder, {}), stack)

    def _list_folder(self, entries: list, files: dict[str, Stat], stack: list[str]) -> None:
        for entry in entries:
            name = entry.name
            if name[0] == ".":
                continue
            try:
                if entry.is_dir():
                    stack.append(entry.path)
                    continue
                st = entry.stat()
                if not S_ISREG(st.st_mode):
                    continue  # sockets, fifos, devices
                if name.upper() == "DICOMDIR":
                    self.extra_skipped += 1  # the files it lists are in this walk already
                else:
                    files[name] = (st.st_size, st.st_mtime_ns)
            except OSError:
                pass  # broken link, permission: nothing to index

    def _add_file(self, path: str) -> None:
        try:
            st = os.stat(path)
        except OSError as exc:
            self.problems.append(FileProblem(path, f"cannot open the file: {exc.strerror}"))
            return
        folder, name = os.path.split(path)
        self.folders.setdefault(folder, {})[name] = (st.st_size, st.st_mtime_ns)

    def _add_dicomdir(self, path: str) -> None:
        try:
            references = dicomdir_files(path)
        except DicomError as exc:
            self.problems.append(FileProblem(path, exc.reason))
            return
        self.extra_skipped += 1
        for referenced in references:
            if os.path.isfile(referenced):
                self._add_file(referenced)
            else:
                self.problems.append(FileProblem(referenced, f"listed in {path} but missing"))


def dicomdir_files(path: str | Path) -> list[str]:
    """Absolute paths of the files a DICOMDIR references, relative to its folder."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        ds = pydicom.dcmread(path)
        records = ds.DirectoryRecordSequence
    except Exception as exc:  # any pydicom failure means the same to the user
        raise DicomError(path, f"unreadable DICOMDIR: {exc}") from exc
    files = []
    for record in records:
        parts = record.get("ReferencedFileID")
        if parts:
            parts = [parts] if isinstance(parts, str) else list(parts)
            files.append(os.path.normpath(os.path.join(folder, *parts)))
    return list(dict.fromkeys(files))


# --- examining files: cache first, then headers in parallel -----------------------------------

# (path, kind, payload) as in cache.py; fresh rows also carry (size, mtime_ns) for the cache
Row = tuple[str, int, object]


def _examine_all(
    found: _Targets,
    store: ScanCache | None,
    progress: ProgressCallback | None,
    cancel: CancelCheck | None,
    workers: int | None,
) -> tuple[list[Row], bool]:
    """Rows for every target: cached where size and mtime match, parsed otherwise."""
    cached = store.load(list(found.folders)) if store is not None else {}
    rows, todo, kept = _cache_hits(found, cached)
    total = found.count
    if progress:
        progress(len(rows), total)
    fresh: list[tuple] = []
    cancelled = found.cancelled
    for chunk in _parse([] if cancelled else todo, workers, cancel):
        if chunk is None:
            cancelled = True
            break
        fresh.extend(chunk)
        if progress:
            progress(len(rows) + len(fresh), total)
    if store is not None:
        store.save(_changed_folders(found, cached, kept, fresh))
        for root in found.roots if not cancelled else ():
            store.forget_gone(root, found.walked)
    rows.extend((path, kind, payload) for path, _size, _mtime, kind, payload in fresh)
    return rows, cancelled


def _cache_hits(found: _Targets, cached: dict) -> tuple[list[Row], list[tuple], dict]:
    """(rows of unchanged files, (path, stat) of files to parse, valid entries per folder)."""
    rows: list[Row] = []
    todo: list[tuple[str, Stat]] = []
    kept: dict[str, dict] = {}
    for folder, files in found.folders.items():
        prefix = folder + os.sep
        try:
            valid = _unchanged(cached.get(folder) or {}, files)
        except (TypeError, IndexError, KeyError):
            valid = {}  # a malformed cache row: parse the folder again
        kept[folder] = valid
        for name, stat in files.items():
            hit = valid.get(name)
            if hit is None:
                todo.append((prefix + name, stat))
            else:
                rows.append((prefix + name, hit[2], hit[3]))
    return rows, todo, kept


def _unchanged(known: dict, files: dict[str, Stat]) -> dict:
    """The cached entries whose file still has the same size and mtime."""
    valid = {}
    for name, stat in files.items():
        hit = known.get(name)
        if hit is not None and hit[0] == stat[0] and hit[1] == stat[1]:
            valid[name] = hit
    return valid


def _changed_folders(found: _Targets, cached: dict, kept: dict, fresh: list) -> dict:
    """Folder rows to rewrite: those with parsed files, or whose walk found files gone."""
    changed: dict[str, dict] = {}
    shared: dict = {}
    for path, size, mtime, kind, payload in fresh:
        if kind == IMAGE:
            payload = _share_repeats(payload, shared)
        folder, name = os.path.split(path)
        if folder not in changed:
            base = {} if folder in found.walked else dict(cached.get(folder) or {})
            changed[folder] = {**base, **kept[folder]}
        changed[folder][name] = (size, mtime, kind, payload)
    for folder in found.walked - changed.keys():
        if folder in cached and len(kept[folder]) != len(cached[folder]):
            changed[folder] = kept[folder]  # vanished or changed files: drop their entries
    return changed


def _share_repeats(payload: tuple, shared: dict) -> tuple:
    """One object for values a series repeats in every file: marshal then writes them once,
    and a re-scan loads (and later frees) one object instead of thousands."""
    values, facts = payload
    for key in _REPEATED_FIELDS:
        value = values[key]
        values[key] = shared.setdefault(value, value)
    return values, shared.setdefault(facts, facts)


def _parse(todo: list[tuple], workers: int | None, cancel: CancelCheck | None) -> Iterator:
    """Yield lists of rows chunk by chunk; yield None once when cancelled."""
    workers = default_workers() if workers is None else max(1, workers)
    size = max(16, min(256, len(todo) // (workers * 4) or 1))
    chunks = [todo[k : k + size] for k in range(0, len(todo), size)]
    if workers > 1 and len(todo) >= MIN_FILES_FOR_POOL:
        chunks = yield from _parse_in_pool(chunks, workers, cancel)
    for chunk in chunks:
        if cancel and cancel():
            yield None
            return
        yield examine_files(chunk)


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


def examine_files(chunk: list[tuple[str, Stat]]) -> list[tuple]:
    """Worker side: (path, size, mtime_ns, kind, payload) per file (runs in a child process)."""
    return [(path, stat[0], stat[1], *_examine(path)) for path, stat in chunk]


def _examine(path: str) -> tuple[int, object]:
    try:
        header = read_header(path)
    except DicomError as exc:
        return PROBLEM, exc.reason
    except Exception as exc:  # a scan must survive any file; report it instead
        return PROBLEM, f"unexpected error reading the header: {exc!r}"
    if header is None:
        return SKIPPED, None
    instance, facts = header
    if not facts.has_pixels:
        if "Image" in UID(instance.sop_class_uid).name:
            return PROBLEM, "image object without pixel data"
        return SKIPPED, None  # SR, KO, PR, RT...: nothing to display
    values = vars(instance).copy()
    del values["path"]  # the cache keys files by folder and name
    return IMAGE, (values, tuple(vars(facts).values()))


# --- the tree ---------------------------------------------------------------------------------


def _result_from_rows(rows: list[Row], problems: list[FileProblem]) -> ScanResult:
    result = ScanResult(problems=list(problems))
    series: dict[str, tuple[tuple, list[Instance]]] = {}
    new = object.__new__
    for path, kind, payload in rows:
        if kind == IMAGE:
            values, facts = payload
            values["path"] = path
            if _PLAIN_INSTANCE:
                instance = new(Instance)  # no __init__: ~3x faster, and this runs per file
                instance.__dict__ = values
            else:
                instance = Instance(**values)
            key = facts[9] or f"no-uid:{os.path.dirname(path)}"  # series_instance_uid
            members = series.get(key)
            if members is None:
                members = series[key] = (facts, [])
            members[1].append(instance)
        elif kind == PROBLEM:
            result.problems.append(FileProblem(path, str(payload)))
        else:
            result.files_skipped += 1
    result.patients = _patients({k: (HeaderFacts(*f), i) for k, (f, i) in series.items()})
    result.problems.sort(key=lambda p: p.path)
    return result


def _patients(series: dict[str, tuple[HeaderFacts, list[Instance]]]) -> list[Patient]:
    """Group series into studies and patients, sorted as a radiologist reads a worklist."""
    patients: dict[tuple[str, str], Patient] = {}
    studies: dict[tuple, Study] = {}
    for uid, (facts, instances) in series.items():
        pkey = (facts.patient_id, facts.patient_name)
        patient = patients.get(pkey)
        if patient is None:
            patient = patients[pkey] = Patient(facts.patient_id, facts.patient_name,
                                               facts.birth_date, facts.sex)
        skey = (pkey, facts.study_instance_uid)
        study = studies.get(skey)
        if study is None:
            study = studies[skey] = Study(facts.study_instance_uid, facts.study_date,
                                          facts.study_time, facts.study_description,
                                          facts.accession_number)
            patient.studies.append(study)
        study.series.extend(_stacks(uid, facts, instances))
    for study in studies.values():
        study.series.sort(key=lambda s: (s.series_number is None, s.series_number or 0,
                                         s.description, s.series_instance_uid, s.stack_index))
    for patient in patients.values():
        patient.studies.sort(key=lambda s: (s.date, s.time, s.study_instance_uid))
    return sorted(patients.values(), key=lambda p: (p.name.upper(), p.patient_id))


def _stacks(uid: str, facts: HeaderFacts, instances: list[Instance]) -> list[Series]:
    """One Series per geometrically consistent stack (orientation and image size)."""
    exact: dict[tuple, list[Instance]] = {}
    for instance in instances:  # exact geometry first: one dict lookup per image
        exact.setdefault((instance.rows, instance.columns, instance.orientation), []).append(
            instance)
    groups: list[list[Instance]] = []
    for geometry, members in exact.items():  # then merge geometries within tolerance
        twin = next((g for g in groups if _same_geometry(g[0], geometry)), None)
        if twin is None:
            groups.append(members)
        else:
            twin.extend(members)
    groups.sort(key=lambda g: (min(i.instance_number or 0 for i in g), -len(g)))
    return [
        Series(uid, facts.study_instance_uid, f"{facts.patient_id}|{facts.patient_name}",
               facts.modality, facts.series_number, facts.series_description,
               facts.series_date or facts.study_date, facts.series_time or facts.study_time,
               facts.body_part, k, len(groups), _sorted_in_stack(group))
        for k, group in enumerate(groups)
    ]


def _same_geometry(a: Instance, geometry: tuple) -> bool:
    """Same rows and columns, and direction cosines within ORIENTATION_TOLERANCE."""
    rows, columns, orientation = geometry
    if a.rows != rows or a.columns != columns:
        return False
    if a.orientation is None or orientation is None:
        return a.orientation is orientation
    return all(abs(x - y) < ORIENTATION_TOLERANCE
               for x, y in zip(a.orientation, orientation, strict=True))


def _sorted_in_stack(instances: list[Instance]) -> list[Instance]:
    """By position along the slice normal (ties, as in 4D, by InstanceNumber); by
    InstanceNumber alone when orientation or positions are missing."""
    o = instances[0].orientation
    if o is None or any(i.position is None for i in instances):
        return sorted(instances, key=_by_number)
    nx, ny, nz = o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]
    along = [p[0] * nx + p[1] * ny + p[2] * nz for p in (i.position for i in instances)]
    if len(set(along)) < len(along):  # repeated positions: phases in InstanceNumber order
        return [i for _, i in sorted(zip(along, instances, strict=True),
                                     key=lambda pair: (pair[0], *_by_number(pair[1])))]
    return [instances[k] for k in sorted(range(len(along)), key=along.__getitem__)]


def _by_number(instance: Instance) -> tuple:
    return instance.instance_number is None, instance.instance_number or 0, instance.path
