"""A series' annotations saved in one go (no Qt): the worker task behind Ctrl+S.

    paths = save_annotations(volume, array, table, boxes, model="model:m@1", annotator="J",
                             lines=rulers, areas=rois, base=generation_when_opened)

The SEG (when there are labels) and the SR with its sidecar are written as one atomic unit
(`commit.py`). A SEG the source cannot have does not stop the SR (PartlySaved says so; the
painting stays in the autosave). A save refused because another window saved since `base`
(SaveConflict) writes nothing; its work goes to an `autosave.refused-<time>.npz` of its own.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any

import numpy as np

from medviewer.core.annotations.autosave import discard_autosave, save_autosave
from medviewer.core.annotations.boxes import AreaMeasurement, BoxSet, DistanceLine
from medviewer.core.annotations.commit import SaveConflict
from medviewer.core.annotations.labelmap import LabelMap, LabelTable
from medviewer.core.annotations.seg import AnnotationError
from medviewer.core.annotations.workspace import Workspace

__all__ = ["PartlySaved", "SaveConflict", "SavedFiles", "save_annotations"]


def save_annotations(volume: Any, array: np.ndarray, table: LabelTable, boxes: BoxSet,
                     model: str | None, annotator: str, lines: tuple[DistanceLine, ...] = (),
                     areas: tuple[AreaMeasurement, ...] = (), base: int | None = None
                     ) -> SavedFiles:
    """Write SEG (when there are labels) and SR (boxes, class labels, rulers, area ROIs and
    provenance) in the workspace as one unit (all switched in together). PartlySaved when the
    SEG could not be written (the SR is): the autosave then stays. `base`: the generation of
    the saved set when the series was opened; SaveConflict when another window saved since
    (or is saving): nothing is written, and this work goes to an autosave of its own."""
    workspace = Workspace.for_series(volume)
    saved, seg_refused = SavedFiles(), None
    try:
        with workspace.saving(base) as staged:
            if len(table):  # each label says how it was made (drawn, a model's, corrected)
                try:
                    seg, saved.notes = staged.save_labels(array, volume, table,
                                                          annotator=annotator)
                    saved.extend([seg] if seg is not None else [])
                except AnnotationError as exc:  # the boxes and rulers are still worth saving
                    seg_refused = exc
            saved.append(staged.save_sr(volume, boxes, lines, annotator=annotator,
                                        model=model, areas=areas))
    except SaveConflict:
        _keep_in_autosave(workspace, volume, array, table, boxes, model, lines, areas)
        raise
    saved.generation = staged.commit.generation if staged.commit else None
    if seg_refused is not None:
        raise PartlySaved(saved, f"boxes, classes and measurements were saved to "
                          f"{saved[-1].parent}, but the segmentation was NOT saved: "
                          f"{seg_refused.reason} It stays in the autosave.")
    with contextlib.suppress(AnnotationError):  # a real save replaces the autosave
        discard_autosave(workspace.autosave_path)
    return saved


def _keep_in_autosave(workspace: Workspace, volume: Any, array: np.ndarray, table: LabelTable,
                      boxes: BoxSet, model: str | None, lines: tuple, areas: tuple) -> None:
    """A refused save's work, in an autosave of its own that no later save deletes (every
    start offers it back until it is restored and saved, or discarded)."""
    labelmap = LabelMap.for_volume(volume)
    labelmap.array[...], labelmap.table = array, copy.deepcopy(table)
    with contextlib.suppress(AnnotationError):  # the window still holds it; said already
        save_autosave(workspace, labelmap if len(table) else None, boxes, model=model,
                      lines=lines, areas=areas, refused=True)


class SavedFiles(list):
    """The paths a save wrote, `notes`: what it left out and why (said in the status), and
    the `generation` of the set it made (the next save's base)."""

    notes: list[str] = []
    generation: int | None = None


class PartlySaved(AnnotationError):
    """The SR was written, the SEG was not: `paths` were saved, `reason` says why not."""

    def __init__(self, paths: list[Path], reason: str) -> None:
        super().__init__(None, reason)
        self.paths = paths
