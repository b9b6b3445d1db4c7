"""Where a series' annotations live: a workspace beside the data, never in or over it.

    ws = Workspace.for_series(volume)         # or a scanned Series
    ws.save_sr(volume, box_set, lines, annotator="Jane Doe", model="model:det@1")
    ws.list_annotations()                     # what a reopened study finds

The workspace is `<data folder>/.medviewer/<StudyInstanceUID>/<SeriesInstanceUID>/` (the
scanner skips hidden folders, so these files never show up as series of their own). When the
data folder cannot be written (a CD, a read-only share), it is
`<user data dir>/workspaces/<hash of the data folder>/<study>/<series>/` instead; both places
are searched when a study is reopened. A save never replaces a file it does not recognise as
this series' annotation: a corrupt or foreign file raises AnnotationError and stays as it is.

The SEG, SR and sidecar of a series are one unit (`commit.py`): a save writes them all, then
switches, under the folder's lock, and is refused (SaveConflict) when another window saved
since the reader opened the series:

    base = ws.generation()                    # when the series opens
    with ws.saving(base) as w:                # the lock; refused if the set moved on
        w.save_labels(...); w.save_sr(...)    # staged, switched together at the end
    with ws.reading():                        # the whole old or the whole new set
        ws.load_seg_table(volume), ws.load_sr(volume)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medviewer.core.annotations import commit as atomic_set
from medviewer.core.annotations.boxes import BoxSet, DistanceLine
from medviewer.core.annotations.seg import (
    AnnotationError,
    labels_without_voxels,
    quiet_highdicom,
    write_seg,
)
from medviewer.core.annotations.seg_read import read_seg, read_seg_table

if TYPE_CHECKING:
    from medviewer.core.annotations.labelmap import LabelTable
from medviewer.core.annotations.sr import (
    Annotations,
    read_sidecar,
    read_sr,
    sidecar_path_for,
    write_sr,
)

HIDDEN_FOLDER = ".medviewer"
SEG_NAME, SR_NAME, AUTOSAVE_NAME = "segmentation.dcm", "annotations.dcm", "autosave.npz"


@dataclass(frozen=True)
class FoundAnnotation:
    """An annotation file that exists for a series."""

    kind: str  # 'seg', 'sr', 'sidecar' or 'autosave'
    path: Path
    modified: float  # seconds since the epoch


@dataclass(frozen=True)
class Workspace:
    """The folder of one series' annotations, and the names of the files in it."""

    folder: Path
    data_folder: Path
    study_instance_uid: str
    series_instance_uid: str
    # the save under way (`saving`): files go to its staging folder, switched together
    commit: atomic_set.Commit | None = field(default=None, compare=False, repr=False)

    @classmethod
    def for_series(cls, source: Any) -> Workspace:
        """The workspace of a loaded Volume or a scanned Series (beside its files if allowed)."""
        series, paths = _series_and_paths(source)
        data = _data_folder(paths)
        study = series.study_instance_uid or "unknown-study"
        name = _series_folder_name(series)
        beside = data / HIDDEN_FOLDER / study / name
        if beside.is_dir() or _can_write(data):
            return cls(beside, data, series.study_instance_uid, series.series_instance_uid)
        return cls(_user_folder(data) / study / name, data, series.study_instance_uid,
                   series.series_instance_uid)

    @classmethod
    def for_reading(cls, source: Any) -> Workspace:
        """The workspace of a series for finding what was saved (list_annotations, newest:
        both places are searched) without the write probe of `for_series`, which would
        touch the data folder: for exports and listings that must leave the data as it is."""
        series, paths = _series_and_paths(source)
        data = _data_folder(paths)
        name = _series_folder_name(series)
        beside = data / HIDDEN_FOLDER / (series.study_instance_uid or "unknown-study") / name
        return cls(beside, data, series.study_instance_uid, series.series_instance_uid)

    # --- file names ------------------------------------------------------------------------
    @property
    def seg_path(self) -> Path:
        return self.folder / SEG_NAME

    @property
    def sr_path(self) -> Path:
        return self.folder / SR_NAME

    @property
    def sidecar_path(self) -> Path:
        return sidecar_path_for(self.sr_path)

    @property
    def autosave_path(self) -> Path:
        return self.folder / AUTOSAVE_NAME

    def candidate_folders(self) -> list[Path]:
        """Beside the data and in the user data dir: a study may have been saved in either."""
        tail = self.folder.relative_to(self.folder.parents[1])
        return list(dict.fromkeys([self.data_folder / HIDDEN_FOLDER / tail,
                                   _user_folder(self.data_folder) / tail, self.folder]))

    def list_annotations(self) -> list[FoundAnnotation]:
        """Every annotation file of this series, newest first."""
        found = []
        for folder in self.candidate_folders():
            for kind, name in (("seg", SEG_NAME), ("sr", SR_NAME),
                               ("sidecar", sidecar_path_for(SR_NAME).name),
                               ("autosave", AUTOSAVE_NAME)):
                path = folder / name
                if path.is_file():
                    found.append(FoundAnnotation(kind, path, path.stat().st_mtime))
        return sorted(found, key=lambda f: -f.modified)

    # --- saving and loading ----------------------------------------------------------------
    def generation(self) -> int:
        """The generation of the saved set (0 before the first save): a reader's `base`."""
        return atomic_set.generation(self.folder)

    @contextlib.contextmanager
    def saving(self, base: int | None = None) -> Iterator[Workspace]:
        """One atomic save: yields this workspace writing into the save's staging folder;
        everything written in the block is switched in together at its end. SaveConflict when
        another window holds the lock, or saved since generation `base` was read."""
        with atomic_set.Commit(self.folder, base) as commit:
            yield replace(self, commit=commit)

    def reading(self) -> contextlib.AbstractContextManager[int]:
        """Hold the set still while it is read (yields its generation)."""
        return atomic_set.reading(self.folder)

    def _staged(self, path: Path) -> Path:
        assert self.commit is not None
        return self.commit.staged(path.name)

    def save_seg(self, label_map: Any, volume: Any, labels: Sequence[str], **options: Any
                 ) -> Path:
        if self.commit is None:
            with self.saving() as ws:
                return ws.save_seg(label_map, volume, labels, **options)
        self._check_replaceable_seg(self.seg_path)
        write_seg(label_map, volume, labels, self._staged(self.seg_path), **options)
        return self.seg_path

    def save_labels(self, label_map: Any, volume: Any, table: LabelTable, *,
                    annotator: str | None = None) -> tuple[Path | None, list[str]]:
        """A label map and its table as this series' SEG: each label's name, colour, codes and
        how it was made (MANUAL / AUTOMATIC / SEMIAUTOMATIC by its model). Returns the SEG's
        path (None when no label has voxels: no SEG is written, and an older one of this
        series is removed, so reopening shows what was saved) and sentences for the reader
        about what was left out."""
        if self.commit is None:
            with self.saving() as ws:
                return ws.save_labels(label_map, volume, table, annotator=annotator)
        names = table.seg_names()
        empty = [n for n in labels_without_voxels(label_map, names)
                 if table.by_name(n) is not None]
        if len(empty) == len(table):
            return None, [self._drop_seg(empty)]
        path = self.save_seg(label_map, volume, names, colours=table.seg_colours(),
                             codes=table.seg_codes(), origins=table.seg_origins(),
                             annotator=annotator, series_description=_described(annotator))
        notes = [f"{_listed(empty)} not saved: no voxels"] if empty else []
        return path, notes

    def _drop_seg(self, empty: list[str]) -> str:
        said = f"no SEG written: {_listed(empty)} {'has' if len(empty) == 1 else 'have'} no " \
            "voxels" if empty else "no SEG written: no labels"
        if self.seg_path.exists():
            self._check_replaceable_seg(self.seg_path)
            assert self.commit is not None
            self.commit.remove(self.seg_path.name)
            said += " (the previous segmentation was removed)"
        return said

    def save_sr(self, volume: Any, boxes: BoxSet, measurements: Iterable[DistanceLine] = (),
                **options: Any) -> Path:
        """Boxes, lines and class labels as SR + sidecar (options: annotator, model, ...)."""
        if self.commit is None:
            with self.saving() as ws:
                return ws.save_sr(volume, boxes, measurements, **options)
        self._check_replaceable_sr(self.sr_path)
        self._check_replaceable_sidecar(self.sidecar_path)
        quiet_highdicom()
        write_sr(self._staged(self.sr_path), volume, boxes, measurements, **options)
        return self.sr_path

    def load_seg(self, volume: Any) -> tuple[Any, list[str]] | None:
        path = self.newest("seg")
        return None if path is None else read_seg(path, volume)

    def load_seg_table(self, volume: Any) -> tuple[Any, LabelTable] | None:
        """The newest SEG with its labels' colours and codes (see read_seg_table)."""
        path = self.newest("seg")
        return None if path is None else read_seg_table(path, volume)

    def load_sr(self, volume: Any) -> Annotations | None:
        path = self.newest("sr")
        return None if path is None else read_sr(path, volume)

    def newest(self, kind: str) -> Path | None:
        """The file of `kind` ('seg', 'sr', ...) that load_seg / load_sr read: the newest one
        in either place (beside the data or the user folder)."""
        return next((f.path for f in self.list_annotations() if f.kind == kind), None)

    # --- never replace what is not ours --------------------------------------------------------
    def _check_replaceable_seg(self, path: Path) -> None:
        if path.exists():
            ds = _dicom_header(path)
            if str(ds.get("Modality", "")) != "SEG" or self.series_instance_uid not in \
                    _referenced_series(ds):
                raise AnnotationError(path, "A file that is not this series' segmentation is "
                                      "in the way; move it aside, it was left untouched.")

    def _check_replaceable_sr(self, path: Path) -> None:
        if path.exists():
            ds = _dicom_header(path)
            if str(ds.get("Modality", "")) != "SR" or self.series_instance_uid not in \
                    _referenced_series(ds):
                raise AnnotationError(path, "A file that is not this series' annotation report "
                                      "is in the way; move it aside, it was left untouched.")

    def _check_replaceable_sidecar(self, path: Path) -> None:
        if path.exists():
            record = read_sidecar(path)  # raises for a corrupt or foreign file
            if record.get("series_instance_uid") not in ("", self.series_instance_uid):
                raise AnnotationError(path, "This sidecar belongs to another series; it was "
                                      "left untouched.")


def _described(annotator: str | None) -> str:
    return f"Segmentation ({annotator})" if annotator else "Segmentation"


def _listed(names: list[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def _series_and_paths(source: Any) -> tuple[Any, list[str]]:
    """(Series, file paths) of a Volume (its sources) or a Series (its instances)."""
    if hasattr(source, "instances"):
        return source, [i.path for i in source.instances]
    series = getattr(source, "series", None)
    paths = [s.path for s in getattr(source, "sources", None) or []]
    if series is None or not paths:
        raise AnnotationError(None, "This series was not loaded from files, so it has no "
                              "folder to keep annotations beside.")
    return series, paths


def _data_folder(paths: list[str]) -> Path:
    folders = {str(Path(p).resolve().parent) for p in paths}
    return Path(os.path.commonpath(sorted(folders)))


def _series_folder_name(series: Any) -> str:
    name = series.series_instance_uid or "unknown-series"
    return f"{name}-{series.stack_index}" if getattr(series, "stack_count", 1) > 1 else name


def _can_write(folder: Path) -> bool:
    """Whether a hidden folder can be made in `folder` (root ignores permission bits, and a
    read-only mount only shows itself on the attempt, so try it). The probe is a file of this
    process's own, never the shared hidden folder: removing that folder again raced another
    window's first save making its series folder inside it (FileNotFoundError mid-save)."""
    if not os.access(folder, os.W_OK):
        return False
    target = folder / HIDDEN_FOLDER
    if target.is_dir():
        return os.access(target, os.W_OK)
    import tempfile

    try:
        handle, probe = tempfile.mkstemp(prefix=f"{HIDDEN_FOLDER}-probe-", dir=folder)
    except OSError:
        return False
    os.close(handle)
    with contextlib.suppress(OSError):
        os.unlink(probe)  # opening a study leaves no trace
    return True


def _user_folder(data: Path) -> Path:
    from medviewer.core.userdata import data_dir

    digest = hashlib.sha256(str(data).encode("utf-8")).hexdigest()[:16]
    return data_dir() / "workspaces" / digest


def _dicom_header(path: Path) -> Any:
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for a broken file
        raise AnnotationError(path, f"This file is not readable DICOM ({exc}); it was left "
                              "untouched. Move it aside to save here.") from exc


def _referenced_series(ds: Any) -> set[str]:
    """Series a SEG or SR references (SEG: ReferencedSeries; SR: its evidence)."""
    out = {str(s.SeriesInstanceUID) for s in ds.get("ReferencedSeriesSequence", [])}
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in ds.get(keyword, []):
            out |= {str(s.SeriesInstanceUID) for s in study.get("ReferencedSeriesSequence", [])}
    return out
