"""Autosave and crash recovery: unsaved edits survive a crash or a power cut (no Qt).

    save_autosave(workspace, labelmap, boxset, model="model:lung-seg@1.2.0", lines=rulers,
                  areas=rois)
    for r in find_recoverable([data_folder]):   # next start: offer these back
        labelmap, boxset = load_autosave(r.path, volume)
        rulers, rois = autosaved_lines(r.path), autosaved_areas(r.path)
    discard_autosave(workspace.autosave_path)   # after a real save, or when declined

An autosave is one `autosave.npz` in the series' workspace folder: the label map (deflated,
mostly zeros so small and quick) and a JSON record (label table, boxes, class labels, distance
lines, area ROIs, series and study UIDs, the time, the model the work started from) stored as
bytes, so loading never unpickles anything. It is written atomically, so a save killed half-way
leaves the previous autosave whole. It is "recoverable" while it is newer than the folder's
last real save (SEG, SR or sidecar). A file that is not a readable autosave of the series
raises AnnotationError and is left as it is: it may be the only copy of someone's work; the
start-up search (`find_recoverable`) sets it aside (`autosave.unreadable-<time>.npz`), so no
later autosave replaces it, and says so. Reading trusts nothing in the file: the members are
read by hand (no pickle, no np.load), each one's declared shape and size checked against what
an autosave of the series can hold before a byte is inflated (a zip bomb is refused), and the
JSON record is capped in size (a deep one is refused, not a RecursionError). Writing takes the
series folder's lock (`commit.py`), so the start-up tidy never removes a live temporary file.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import zipfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medviewer.core.annotations.boxes import (
    AnnotatedBox,
    AreaMeasurement,
    BoxSet,
    ClassLabel,
    DistanceLine,
    area_from_dict,
)
from medviewer.core.annotations.commit import STAGING, folder_lock, tidy
from medviewer.core.annotations.labelmap import Label, LabelMap, LabelTable
from medviewer.core.annotations.seg import AnnotationError
from medviewer.core.annotations.workspace import (
    AUTOSAVE_NAME,
    HIDDEN_FOLDER,
    SEG_NAME,
    SR_NAME,
    Workspace,
)
from medviewer.core.atomic import atomic_file

AUTOSAVE_FORMAT, AUTOSAVE_VERSION = "medviewer-autosave", 1
_REAL_SAVES = (SEG_NAME, SR_NAME, Path(SR_NAME).with_suffix(".json").name)
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile,
                UnicodeDecodeError, json.JSONDecodeError, RecursionError)
_MEMBERS = ("record.npy", "labels.npy")
REFUSED_PREFIX = "autosave.refused-"
RECORD_MAX_BYTES = 32 << 20  # boxes, rulers and labels in JSON: megabytes at the very most
_NPY_HEADER_MAX = 4096


@dataclass(frozen=True)
class Recoverable:
    """An autosave newer than its folder's last real save: work the viewer offers back."""

    path: Path
    modified: float  # the autosave file's time, seconds since the epoch
    last_saved: float | None  # newest real save (SEG / SR / sidecar) in the folder, if any
    series_instance_uid: str = ""
    study_instance_uid: str = ""
    saved_at: float | None = None  # time recorded inside the autosave
    model: str | None = None
    problem: str = ""  # why it cannot be read ('' when it can): shown, never hidden


# --- saving ----------------------------------------------------------------------------------

def save_autosave(workspace: Workspace, labelmap: LabelMap | None, boxset: BoxSet | None, *,
                  model: str | None = None, lines: Iterable[DistanceLine] = (),
                  areas: Iterable[AreaMeasurement] = (), refused: bool = False) -> Path:
    """Write the unsaved state to `workspace.autosave_path` atomically; returns the path.

    Either part may be None (only boxes, or only a mask, were edited). `model` names the model
    version the work started from ('model:<id>@<version>'), kept for the real save later;
    `lines` are the reader's rulers (the SR's distance lines), read back by `autosaved_lines`;
    `areas` the rectangle / ellipse ROIs, read back by `autosaved_areas`. `refused`: the work
    of a save refused because another window saved first goes to its own
    `autosave.refused-<time>.npz`, which no later save of that window deletes and every start
    offers back until it is restored and saved, or discarded.
    """
    path = refused_path(workspace) if refused else workspace.autosave_path
    _check_same_series(workspace, labelmap, path)
    record = _record(workspace, labelmap, boxset, model)
    record["lines"] = [asdict(line) for line in lines]  # tuples become JSON lists
    record["areas"] = [asdict(area) for area in areas]
    arrays: dict[str, np.ndarray] = {"record": np.frombuffer(
        json.dumps(record).encode("utf-8"), np.uint8)}
    if labelmap is not None:
        arrays["labels"] = np.ascontiguousarray(labelmap.array)
    try:
        with folder_lock(path.parent), atomic_file(path) as f:
            np.savez_compressed(f, **arrays)
    except OSError as exc:
        raise AnnotationError(path, f"The autosave could not be written ({exc}); the previous "
                              "autosave, if any, is kept.") from exc
    return path


def refused_path(workspace: Workspace) -> Path:
    """A new name for a refused save's work (see save_autosave)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return workspace.folder / f"{REFUSED_PREFIX}{stamp}.npz"


def _is_refused(path: Path) -> bool:
    return path.name.startswith(REFUSED_PREFIX) and path.suffix == ".npz"


def _check_same_series(workspace: Workspace, labelmap: LabelMap | None, path: Path) -> None:
    drawn_on = labelmap.series_instance_uid if labelmap is not None else ""
    if drawn_on and workspace.series_instance_uid and drawn_on != \
            workspace.series_instance_uid:
        raise AnnotationError(path, "This label map was drawn on another series; it was not "
                              "autosaved into this series' workspace.")


def _record(workspace: Workspace, labelmap: LabelMap | None, boxset: BoxSet | None,
            model: str | None) -> dict[str, Any]:
    boxes = boxset or BoxSet()
    record: dict[str, Any] = {
        "format": AUTOSAVE_FORMAT, "version": AUTOSAVE_VERSION, "saved_at": time.time(),
        "series_instance_uid": workspace.series_instance_uid,
        "study_instance_uid": workspace.study_instance_uid, "model": model,
        "boxes": [asdict(b) for b in boxes.boxes],
        "class_labels": [asdict(c) for c in boxes.class_labels], "labelmap": None}
    if labelmap is not None:
        record["labelmap"] = {
            "shape": list(labelmap.shape), "spacing": list(labelmap.spacing),
            "opacity": labelmap.opacity, "display": labelmap.display,
            "outline_width": labelmap.outline_width,
            "labels": [asdict(label) for label in labelmap.table]}
    return record


# --- loading ---------------------------------------------------------------------------------

def read_autosave_record(path: str | Path) -> dict[str, Any]:
    """The JSON record of an autosave (cheap: the label map is not decompressed)."""
    path = Path(path)
    try:
        data = _member(path, "record.npy", max_items=RECORD_MAX_BYTES)
        record = json.loads(data.tobytes().decode("utf-8"))
    except _READ_ERRORS as exc:
        raise AnnotationError(path, f"This autosave cannot be read ({exc}); it was left "
                              "untouched.") from exc
    if not isinstance(record, dict) or record.get("format") != AUTOSAVE_FORMAT:
        raise AnnotationError(path, "This file is not a MedViewer autosave; it was left "
                              "untouched.")
    if record.get("version") != AUTOSAVE_VERSION:
        raise AnnotationError(path, f"Autosave version {record.get('version')} is not known to "
                              "this MedViewer; update it to recover this work.")
    return record


def load_autosave(path: str | Path, volume: Any) -> tuple[LabelMap | None, BoxSet]:
    """The autosaved (label map, boxes) of `volume`'s series; the map is None if none was saved.

    AnnotationError when the file is damaged or belongs to another series (UID or grid).
    """
    path = Path(path)
    record = read_autosave_record(path)
    try:
        _check_series(record, volume, path)
        boxset = BoxSet([AnnotatedBox(**b) for b in record["boxes"]],
                        [ClassLabel(**c) for c in record["class_labels"]])
        labelmap = _labelmap(path, record, volume)
    except AnnotationError:
        raise
    except (KeyError, TypeError, AttributeError, *_READ_ERRORS) as exc:
        raise AnnotationError(path, f"This autosave is damaged ({exc}); it was left "
                              "untouched.") from exc
    return labelmap, boxset


def autosaved_lines(path: str | Path) -> list[DistanceLine]:
    """The rulers (distance lines) kept in an autosave; [] for one written before rulers
    were autosaved. AnnotationError when the file or a line in it is damaged."""
    path = Path(path)
    record = read_autosave_record(path)
    try:
        return [DistanceLine(**{**item, "start": _point(item["start"]),
                                "end": _point(item["end"])})
                for item in record.get("lines") or []]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise AnnotationError(path, f"This autosave's rulers are damaged ({exc}); it was left "
                              "untouched.") from exc


def autosaved_areas(path: str | Path) -> list[AreaMeasurement]:
    """The area ROIs kept in an autosave; [] for one written before areas were autosaved.
    AnnotationError when the file or an area in it is damaged."""
    path = Path(path)
    record = read_autosave_record(path)
    try:
        return [area_from_dict(item) for item in record.get("areas") or []]
    except (KeyError, TypeError, ValueError, AttributeError, AnnotationError) as exc:
        raise AnnotationError(path, f"This autosave's area ROIs are damaged ({exc}); it was "
                              "left untouched.") from exc


def _point(value: Any) -> tuple[float, float]:
    x, y = value
    return float(x), float(y)


def _check_series(record: dict[str, Any], volume: Any, path: Path) -> None:
    series = getattr(volume, "series", None)
    uid = getattr(series, "series_instance_uid", "") or ""
    if record.get("series_instance_uid") and uid and record["series_instance_uid"] != uid:
        raise AnnotationError(path, "This autosave belongs to another series; open that "
                              "series to recover it.")
    kept = (record.get("labelmap") or {}).get("shape")
    if kept is not None and tuple(kept) != _grid_shape(volume):
        raise AnnotationError(path, f"This autosave was drawn on a {tuple(kept)} grid but the "
                              f"series is {_grid_shape(volume)}; it belongs to another "
                              "version of the series.")


def _member(path: Path, name: str, max_items: int, shape: tuple[int, ...] | None = None
            ) -> np.ndarray:
    """One uint8 array of the autosave's zip, read only after its declared shape (`shape`, or
    at most `max_items` bytes) and its inflated size were checked: nothing is allocated or
    inflated for what an autosave cannot hold."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if not set(names) <= set(_MEMBERS) or len(names) != len(set(names)):
            raise ValueError(f"unexpected members {sorted(set(names) - set(_MEMBERS))}")
        info = archive.getinfo(name)
        with archive.open(info) as f:
            declared, fortran, dtype = _npy_header(f)
            count = int(np.prod(declared)) if declared else 1
            if dtype != np.uint8 or fortran or count > max_items or (
                    shape is not None and declared != shape):
                raise ValueError(f"{name} declares {dtype} {declared}, not what an autosave "
                                 "holds")
            if info.file_size > count + _NPY_HEADER_MAX:
                raise ValueError(f"{name} inflates to {info.file_size} bytes for {count}")
            data = f.read(count)
    if len(data) != count:
        raise ValueError(f"{name} is truncated")
    return np.frombuffer(data, np.uint8).reshape(declared)


def _npy_header(f: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    major, _ = np.lib.format.read_magic(f)
    read = {1: np.lib.format.read_array_header_1_0, 2: np.lib.format.read_array_header_2_0}
    if major not in read:
        raise ValueError(f"npy format {major} is not one an autosave is written in")
    return read[major](f, max_header_size=_NPY_HEADER_MAX)


def _grid_shape(volume: Any) -> tuple[int, ...]:
    voxels = volume.voxels
    return (1, *voxels.shape) if voxels.ndim == 2 else tuple(voxels.shape[-3:])


def _labelmap(path: Path, record: dict[str, Any], volume: Any) -> LabelMap | None:
    saved = record["labelmap"]
    if saved is None:
        return None
    shape = tuple(int(n) for n in saved["shape"])  # checked against the volume's grid
    array = _member(path, "labels.npy", max_items=int(np.prod(shape)), shape=shape)
    table = LabelTable()
    for item in saved["labels"]:
        label = Label(**{**item, "category": tuple(item["category"]),
                         "type": tuple(item["type"])})
        table.labels[label.value] = label
    series = getattr(volume, "series", None)
    return LabelMap(array, table, tuple(saved["spacing"]), saved["opacity"], saved["display"],
                    saved["outline_width"],
                    getattr(series, "series_instance_uid", "") or record["series_instance_uid"])


# --- finding and discarding ------------------------------------------------------------------

def autosave_roots(data_folders: Iterable[str | Path] = ()) -> list[Path]:
    """Where workspaces live: each data folder's `.medviewer` and the user data dir's."""
    from medviewer.core.userdata import data_dir

    roots = [Path(folder) / HIDDEN_FOLDER for folder in data_folders]
    return list(dict.fromkeys([*roots, data_dir() / "workspaces"]))


def find_recoverable(data_folders: Iterable[str | Path] = ()) -> list[Recoverable]:
    """Autosaves newer than their folder's last real save, newest first.

    Searched: `<data folder>/.medviewer/<study>/<series>/` for each of `data_folders` (the
    folders the viewer opened recently) and `<user data dir>/workspaces/<hash>/<study>/<series>/`.
    An unreadable autosave is listed too, with its `problem`, so the user hears of it.
    """
    found = []
    for root in autosave_roots(data_folders):
        if root.is_dir():
            _tidy_all(root)
            for path in sorted([*root.glob(f"**/{AUTOSAVE_NAME}"),
                                *root.glob(f"**/{REFUSED_PREFIX}*.npz")]):
                item = _recoverable(path)
                if item is not None:
                    found.append(item)
    return sorted(found, key=lambda r: -r.modified)


def _recoverable(path: Path) -> Recoverable | None:
    try:
        modified = path.stat().st_mtime
    except OSError:
        return None  # discarded meanwhile
    last = _last_real_save(path.parent)
    if last is not None and last >= modified and path.name == AUTOSAVE_NAME:
        return None
    try:
        record = read_autosave_record(path)
    except AnnotationError as exc:
        kept = _set_aside(path)
        where = f"it was kept as {kept.name}, which no autosave replaces" if kept else \
            "it was left as it is"
        return Recoverable(kept or path, modified, last,
                           problem=exc.reason.replace("it was left untouched", where))
    saved_at, model = record.get("saved_at"), record.get("model")
    return Recoverable(path, modified, last, str(record.get("series_instance_uid") or ""),
                       str(record.get("study_instance_uid") or ""),
                       float(saved_at) if isinstance(saved_at, (int, float)) else None,
                       str(model) if isinstance(model, str) else None)


def _set_aside(path: Path) -> Path | None:
    """Rename an unreadable autosave out of the way of the next autosave (None: could not)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    kept = path.with_name(f"{path.stem}.unreadable-{stamp}{path.suffix}")
    try:
        path.rename(kept)
    except OSError:  # a read-only folder: no autosave replaces it there either
        return None
    return kept


def _tidy_all(root: Path) -> None:
    """At start-up: finish saves and remove temporary files a kill left in the workspaces
    under `root` (a folder another window is writing right now is left to that window)."""
    folders = {p.parent for pattern in ("**/commit.json", "**/.*.tmp", "**/.staging-*",
                                        "**/.lock") for p in root.glob(pattern)}
    for folder in sorted(folders):
        if folder.name.startswith(STAGING) or not folder.is_dir():
            continue  # a killed save's staging: its workspace's tidy removes it
        try:
            with folder_lock(folder, wait_s=0):
                tidy(folder)
        except (AnnotationError, OSError):
            continue  # busy (a live save) or read-only: nothing of ours to finish there


def _last_real_save(folder: Path) -> float | None:
    times = [(folder / name).stat().st_mtime for name in _REAL_SAVES
             if (folder / name).is_file()]
    return max(times, default=None)


def discard_autosave(path: str | Path) -> None:
    """Delete an autosave (after a real save, or when the user declines to recover it)."""
    path = Path(path)
    if path.name != AUTOSAVE_NAME and not _is_refused(path):
        raise AnnotationError(path, f"Only a MedViewer autosave ({AUTOSAVE_NAME}) is deleted "
                              "here; this file was left untouched.")
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise AnnotationError(path, f"The autosave could not be deleted ({exc}).") from exc
