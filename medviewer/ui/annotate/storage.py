"""Saving and reading back the reader's annotations: the workspace beside the data.

Save (Ctrl+S) writes the label map as DICOM SEG and the boxes, class labels and the stack
view's measurements (rulers and area ROIs, `annotate.measures`) as SR in the series'
workspace, in a worker, recording the annotator (the OS user) and the model the work started
from; opening a series reads them back the same way, in a worker (the saved measurements
become the series' measurements unless this session already has some: not an edit, the
series stays saved). Recovered work brings its autosaved measurements too.
The two files stand alone: a SEG that cannot be written (a legacy multi-frame source) does not
stop the SR, and one that cannot be read does not hide the SR's boxes, classes and rulers. The
message says what was not saved or read and why; the work stays unsaved (and autosaved) until
all of it is saved.
`AnnotationStorage` is a part of `AnnotateController` (a mixin), so `annotate.save()` stays
the one name for it.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import getpass
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtWidgets import QFileDialog

from medviewer.core.annotations import (
    AnnotationError,
    AreaMeasurement,
    BoxSet,
    DistanceLine,
    History,
    LabelMap,
    LabelTable,
    Workspace,
    accept_prediction,
    discard_autosave,
    read_seg_table,
)
from medviewer.core.annotations.saving import (
    PartlySaved,
    SaveConflict,
    save_annotations,
)
from medviewer.core.annotations.sr import sidecar_path_for
from medviewer.core.annotations.workspace import AUTOSAVE_NAME
from medviewer.ui.annotate.box_controller import set_classes
from medviewer.ui.annotate.measures import Saved, document_measurements, saved_measurements
from medviewer.ui.common.guard import guarded
from medviewer.ui.document.annotate_state import Annotation

if TYPE_CHECKING:
    from medviewer.ui.annotate.box_controller import BoxController
    from medviewer.ui.document.study import StudyDocument


def annotator_name() -> str:
    """Who is editing: the OS user name (the SR and SEG record it)."""
    try:
        return getpass.getuser() or "unknown"
    except (KeyError, OSError):
        return "unknown"


# ----------------------------------------------------------------- worker tasks (no Qt)
def save_task(_ctx: Any, volume: Any, array: np.ndarray, table: LabelTable, boxes: BoxSet,
              model: str | None, annotator: str, lines: tuple[DistanceLine, ...] = (),
              areas: tuple[AreaMeasurement, ...] = (), base: int | None = None) -> list[Path]:
    """SEG + SR of the series as one unit (see core.annotations.saving)."""
    return save_annotations(volume, array, table, boxes, model, annotator, lines, areas, base)


def load_task(_ctx: Any, volume: Any) -> tuple[Annotation | None, list[Saved], list[str]]:
    """The series' saved SEG and SR as an Annotation (None when nothing was saved), the SR's
    rulers and area ROIs, and what could not be read (one file failing does not hide the
    other; AnnotationError when nothing could be read)."""
    from medviewer.core.annotations import read_provenance

    workspace = Workspace.for_series(volume)
    with workspace.reading():  # the whole set of one save, never half of the next
        return _load(workspace, volume, read_provenance)


def _load(workspace: Workspace, volume: Any, read_provenance: Any
          ) -> tuple[Annotation | None, list[Saved], list[str]]:
    seg, seg_problem = _read(lambda: workspace.load_seg_table(volume))  # names, colours, codes
    sr, sr_problem = _read(lambda: workspace.load_sr(volume))
    notes = [f"the {what} could not be read ({problem.reason}); {_set_aside(workspace, kind)}"
             for what, kind, problem in (("segmentation", "seg", seg_problem),
                                         ("boxes, classes and measurements", "sr", sr_problem))
             if problem]
    if seg is None and sr is None:
        if notes:
            raise AnnotationError(None, "; ".join(notes) + ".")
        return None, [], []
    labelmap = LabelMap.for_volume(volume)
    if seg is not None:
        array, labelmap.table = seg
        labelmap.array[...] = np.asarray(array, np.uint8)
    boxes = BoxSet(sr[0], sr[1]) if sr is not None else BoxSet()
    model = None
    if sr is not None and workspace.sr_path.exists():
        model = read_provenance(workspace.sr_path).model
    saved = [*sr.lines, *sr.areas] if sr is not None else []
    return Annotation(labelmap, History(labelmap), boxes, model), saved, notes


def _set_aside(workspace: Workspace, kind: str) -> str:
    """Rename the unreadable file of `kind` (an SR with its sidecar) so that no save replaces
    or removes it; says where it is."""
    path = workspace.newest(kind)
    if path is None:
        return "the file was left as it is"
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    kept = path.with_name(f"{path.stem}.unreadable-{stamp}{path.suffix}")
    try:
        path.rename(kept)
        if kind == "sr" and sidecar_path_for(path).exists():
            sidecar_path_for(path).rename(sidecar_path_for(kept))
    except OSError:  # a read-only folder: no save can replace it there either
        return "the file was left as it is"
    return f"it was kept as {kept.name}, which no save replaces"


def _read(load: Any) -> tuple[Any, AnnotationError | None]:
    """What load() returns, or the AnnotationError it raised."""
    try:
        return load(), None
    except AnnotationError as exc:
        return None, exc


def has_saved_annotations(volume: Any) -> bool:
    try:
        found = Workspace.for_series(volume).list_annotations()
    except (AnnotationError, OSError):  # not loaded from files: nowhere to look
        return False
    return any(f.kind in ("seg", "sr") for f in found)


def import_task(_ctx: Any, volume: Any, path: str) -> tuple[np.ndarray, LabelTable]:
    """A SEG made elsewhere, on the open series' grid, with its labels' colours and codes."""
    return read_seg_table(path, volume)


class AnnotationStorage:
    """Save, save on close, recovery and loading: the AnnotateController's storage part
    (it brings the window, the signals, the safety net and `_sync_actions`)."""

    document: StudyDocument
    boxes: BoxController
    annotator: str

    @guarded
    def save(self) -> bool:
        """Ctrl+S: SEG + SR into the workspace, in a worker; sigSaved when written."""
        doc = self.document
        found = self._to_save()
        if found is None:
            self.host.set_status("Nothing to save: no annotations on this series")
            return False
        annotation, (lines, areas) = found
        labels = annotation.labelmap.table.labels
        table = LabelTable({value: replace(label) for value, label in labels.items()})
        self.host.set_status("Saving annotations\u2026")
        self.host.tasks.start("annotate-save", save_task, doc.volume,
                                annotation.labelmap.array.copy(), table, annotation.boxes,
                                annotation.model, self.annotator, tuple(lines), tuple(areas),
                                self._base_of(doc.volume),
                                on_result=lambda paths, n=annotation.edits:
                                self._on_saved(annotation, paths, n),
                                on_error=self._on_save_error)
        return True

    def save_now(self) -> bool:
        """Save the open series on this thread (closing the window: no worker to wait for)."""
        doc, found = self.document, self._to_save()
        if found is None:
            return False
        annotation, (lines, areas) = found
        try:
            paths = save_task(None, doc.volume, annotation.labelmap.array,
                              annotation.labelmap.table, annotation.boxes, annotation.model,
                              self.annotator, tuple(lines), tuple(areas),
                              self._base_of(doc.volume))
        except (AnnotationError, OSError) as exc:
            self._on_save_error(exc)
            return False
        self._on_saved(annotation, paths)
        return True

    def _to_save(self) -> tuple[Annotation, tuple[list, list]] | None:
        """The series' annotation and its stack-view rulers and ROIs (a ruler alone is worth
        saving), None when there is nothing to save."""
        doc = self.document
        if doc.volume is None:
            return None
        editable = doc.can_annotate() is None  # a 4D or colour series carries none
        measured = saved_measurements(doc.volume, doc.measurements) if editable else ([], [])
        if doc.annotation is None and not (editable and any(measured)):
            return None
        return doc.ensure_annotation(), measured

    def restore_annotation(self, labelmap: LabelMap | None, boxes: BoxSet,
                           model: str | None, saved: Iterable[Saved] = ()) -> Annotation:
        """Put recovered work on the open series: the map as ONE undo step, the boxes and
        class labels as another, so Ctrl+Z goes back to what was there before; the rulers and
        ROIs join the series' measurements (they are not undo steps)."""
        doc = self.document
        annotation = doc.ensure_annotation()
        if labelmap is not None:
            target, history = annotation.labelmap, annotation.history
            with history.stroke("recover unsaved work", keeps_provenance=True):
                history.touch(tuple(slice(0, n) for n in target.shape))
                target.array[...] = labelmap.array
                target.table.labels = copy.deepcopy(labelmap.table.labels)
            first = next(iter(target.table), None)
            doc.active_label = first.value if first is not None else 1
        known = {b.uid for b in annotation.boxes}
        new = [b for b in boxes if b.uid not in known]
        classes = [c for c in boxes.class_labels if c not in annotation.boxes.class_labels]
        if new or classes:
            self.box_edit(lambda current: set_classes(
                current, classes, "recover boxes", current.add(*new).before))
        known = {m.uid for m in doc.measurements}
        recovered = [m for m in document_measurements(doc.volume, saved) if m.uid not in known]
        if recovered:
            doc.set_measurements(doc.measurements + recovered)
        annotation.model = annotation.model or model
        doc.labelmap_changed(None)
        self._sync_actions()
        return annotation

    def _on_saved(self, annotation: Annotation, paths: list[Path],
                  edits: int | None = None) -> None:
        """`edits`: the annotation's edit count when the save began; edits made while the
        worker wrote stay unsaved (and autosaved)."""
        self._set_base(paths)
        if edits is None or annotation.edits == edits:
            annotation.dirty = False
            self.safety.forget(annotation)
            # an autosave running beside the save may have landed after it: drop it too
            with contextlib.suppress(AnnotationError, OSError):
                discard_autosave(paths[-1].parent / AUTOSAVE_NAME)  # the SR's workspace
        notes = "".join(f"; {note}" for note in getattr(paths, "notes", []))
        self.host.set_status(f"Annotations saved to {paths[0].parent}{notes}")
        self.sigSaved.emit(paths)

    def _on_save_error(self, exc: BaseException) -> None:
        if isinstance(exc, PartlySaved):  # the SR is written; the work stays unsaved
            self._set_base(exc.paths)
            self.show_error(f"Annotations partly saved: {exc.reason}")
            return
        if isinstance(exc, SaveConflict):  # save_task put the work in the autosave
            self.show_error(f"Could not save the annotations: {exc.reason} Your edits stay in "
                            "this window and in its autosave.")
            return
        reason = exc.reason if isinstance(exc, AnnotationError) else str(exc)
        self.show_error(f"Could not save the annotations: {reason}")

    # ----------------------------------------------------------------- a SEG from elsewhere
    @guarded
    def import_seg_dialog(self) -> None:
        volume = self.document.volume
        folder = str(Path(volume.sources[0].path).parent) if volume is not None and \
            getattr(volume, "sources", None) else ""
        path, _ = QFileDialog.getOpenFileName(
            self.host.dialog_parent(), "DICOM SEG of this series", folder,
            "DICOM (*.dcm);;All files (*)")
        if path:
            self.import_seg(path)

    @guarded
    def import_seg(self, path: str | Path) -> bool:
        """A DICOM SEG made elsewhere (3D Slicer, OHIF, a PACS) on the open series becomes the
        editable labels as ONE undo step, its labels matched by name and added with their
        colours and codes. The file is only read: Ctrl+S writes the workspace's own SEG."""
        doc = self.document
        if (why := doc.can_annotate()) is not None:
            self.host.set_status(why)
            return False
        volume, path = doc.volume, Path(path)
        self.host.set_status(f"Reading {path.name}\u2026")
        self.host.tasks.start("annotate-import", import_task, volume, str(path),
                                on_result=lambda found: self._imported(volume, path, *found),
                                on_error=self._on_import_error)
        return True

    def _imported(self, volume: Any, path: Path, array: np.ndarray, table: LabelTable) -> None:
        doc = self.document
        if doc.volume is not volume or doc.can_annotate() is not None:
            return  # another series opened meanwhile
        annotation = doc.ensure_annotation()
        labelmap, history = annotation.labelmap, annotation.history
        with history.stroke(f"import {path.name}", keeps_provenance=True):
            for label in table:
                if labelmap.table.by_name(label.name) is None:
                    labelmap.table.add(label.name, label.colour, category=label.category,
                                       type=label.type, algorithm_type=label.algorithm_type,
                                       algorithm=label.algorithm)
            accept_prediction(labelmap, history, array, table.seg_names())
        first = labelmap.table.by_name(next(iter(table)).name) if len(table) else None
        doc.active_label = first.value if first is not None else doc.active_label
        doc.labelmap_changed(None)
        self._sync_actions()
        self.host.set_status(f"Imported {len(table)} segment(s) from {path.name}: edit, "
                               "then save (the file itself is not changed)")
        self.sigImported.emit(path)

    def _on_import_error(self, exc: BaseException) -> None:
        reason = exc.reason if isinstance(exc, AnnotationError) else str(exc)
        self.show_error(f"Could not import the SEG: {reason}")

    # ----------------------------------------------------------------- one writer at a time
    def _base_of(self, volume: Any) -> int | None:
        """The generation of the series' saved set when this window read it (None: unknown)."""
        with contextlib.suppress(AnnotationError, OSError):
            return self.__dict__.get("_save_bases", {}).get(
                str(Workspace.for_series(volume).folder))
        return None

    def _remember_base(self, volume: Any) -> None:
        with contextlib.suppress(AnnotationError, OSError):
            ws = Workspace.for_series(volume)
            self.__dict__.setdefault("_save_bases", {})[str(ws.folder)] = ws.generation()

    def _set_base(self, paths: list[Path]) -> None:
        generation = getattr(paths, "generation", None)
        if paths and generation is not None:
            self.__dict__.setdefault("_save_bases", {})[str(paths[-1].parent)] = generation

    def _on_volume_changed(self) -> None:
        doc = self.document
        if doc.volume is not None and doc.annotation is None:  # read from disk (again) now
            self._remember_base(doc.volume)
        if doc.volume is None or doc.annotation is not None or doc.can_annotate():
            self._sync_actions()
            return
        volume = doc.volume
        if not has_saved_annotations(volume):  # a few stat calls: no worker, no busy bar
            self.sigLoaded.emit(None)
            return
        doc.loading_annotations_of = volume  # edits wait: see AnnotationState
        self._sync_actions()
        self.host.tasks.start("annotate-load", load_task, volume,
                                on_result=lambda a: self._on_loaded(volume, a),
                                on_error=lambda exc: self._on_load_error(exc, volume))

    def _loading_done(self, volume: Any) -> None:
        doc = self.document
        if doc.loading_annotations_of is volume:
            doc.loading_annotations_of = None
            self._sync_actions()

    def _on_loaded(self, volume: Any,
                   loaded: tuple[Annotation | None, list[Saved], list[str]]) -> None:
        doc, (annotation, saved, notes) = self.document, loaded
        self._loading_done(volume)
        if doc.volume is not volume or doc.annotation is not None:
            return  # another series opened (its own load runs), or work was recovered
        if not doc.measurements_known():  # this session has none drawn on it yet
            doc.set_measurements(document_measurements(volume, saved))
        if annotation is not None:
            doc.set_annotation(annotation)
            first = next(iter(annotation.labelmap.table), None)
            doc.active_label = first.value if first is not None else 1
            self.host.set_status("Saved annotations of this series loaded")
        if notes:
            self.show_error("Saved annotations partly loaded: " + "; ".join(notes) + ".")
        self.sigLoaded.emit(annotation)

    def _on_load_error(self, exc: BaseException, volume: Any = None) -> None:
        self._loading_done(volume)
        reason = exc.reason if isinstance(exc, AnnotationError) else str(exc)
        self.show_error(f"Could not read this series' annotations: {reason}")
