"""The viewer's annotation editing: the Annotate menu and dock, and the logic behind them.

`AnnotateController` is usable from a test or a script without clicking (`set_tool("brush")`,
`undo()`, `fill_between_slices()`, `accept_prediction()`, `save()`): the menu and the dock
only call it. Every edit goes through a `core.annotations` tool inside one History stroke, so
Undo (Ctrl+Z) and Redo (Ctrl+Shift+Z) step back and forth one stroke or one command at a time.
Save (Ctrl+S) writes the label map as DICOM SEG and the boxes as SR in the series' workspace
beside the data, in a worker, recording the annotator (the OS user) and the model the work
started from; opening a series reads them back the same way.
"""

from __future__ import annotations

import contextlib
import copy
import getpass
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDockWidget, QMenu, QScrollArea

from medviewer.core.annotations import (
    AnnotationError,
    BoxEdit,
    BoxSet,
    History,
    LabelMap,
    LabelTable,
    Workspace,
    accept_prediction,
    boxes_from_model,
    discard_autosave,
    fill_between_slices,
    keep_largest,
    model_source,
    remove_islands,
    smooth,
)
from medviewer.ui.annotate_autosave import AnnotationSafety
from medviewer.ui.annotate_boxes import BoxOverlay
from medviewer.ui.annotate_panel import AnnotatePanel
from medviewer.ui.annotate_state import TOOL_NAMES, TOOLS, Annotation
from medviewer.ui.guard import guarded

if TYPE_CHECKING:
    from medviewer.ui.main_window import MainWindow

log = logging.getLogger(__name__)


def annotator_name() -> str:
    """Who is editing: the OS user name (the SR and SEG record it)."""
    try:
        return getpass.getuser() or "unknown"
    except (KeyError, OSError):
        return "unknown"


# ----------------------------------------------------------------- worker tasks (no Qt)
def save_task(_ctx: Any, volume: Any, array: np.ndarray, table: LabelTable, boxes: BoxSet,
              model: str | None, annotator: str) -> list[Path]:
    """Write SEG (when there are labels) and SR (boxes + provenance) in the workspace."""
    workspace = Workspace.for_series(volume)
    saved = []
    if len(table):
        algorithm = (model.split("@")[0].removeprefix("model:"), model.split("@")[1]) \
            if model else ("MedViewer manual", "1")
        saved.append(workspace.save_seg(array, volume, table.seg_names(),
                                        colours=table.seg_colours(), algorithm=algorithm,
                                        series_description=f"Segmentation ({annotator})",
                                        annotator=annotator))
    saved.append(workspace.save_sr(volume, boxes, annotator=annotator, model=model))
    with contextlib.suppress(AnnotationError):  # a real save replaces the autosave
        discard_autosave(workspace.autosave_path)
    return saved


def load_task(_ctx: Any, volume: Any) -> Annotation | None:
    """The series' saved SEG and SR as an Annotation, None when nothing was saved."""
    from medviewer.core.annotations import read_provenance

    workspace = Workspace.for_series(volume)
    seg = workspace.load_seg(volume)
    sr = workspace.load_sr(volume)
    if seg is None and sr is None:
        return None
    labelmap = LabelMap.for_volume(volume)
    if seg is not None:
        array, names = seg
        labelmap.array[...] = np.asarray(array, np.uint8)
        labelmap.table = LabelTable.from_names(names)
    boxes = BoxSet(sr[0], sr[1]) if sr is not None else BoxSet()
    model = None
    if sr is not None and workspace.sr_path.exists():
        model = read_provenance(workspace.sr_path).model
    return Annotation(labelmap, History(labelmap), boxes, model)


class AnnotateController(QObject):
    """Menu, dock and commands of the reader's annotations in one main window."""

    sigSaved = Signal(object)  # list of saved paths
    sigLoaded = Signal(object)  # the Annotation read back, or None
    sigFailed = Signal(str)

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window, self.document = window, window.document
        self.annotator = annotator_name()
        self.panel = AnnotatePanel(self)
        self.dock = QDockWidget("Annotate", window)
        self.dock.setObjectName("annotateDock")
        scroll = QScrollArea()  # a small window still fits: the dock scrolls
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.panel)
        self.dock.setWidget(scroll)
        window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.dock)
        window.tabifyDockWidget(window.browser_dock, self.dock)  # a tab beside the studies
        window.browser_dock.raise_()
        self._build_menu()
        self.safety = AnnotationSafety(self)  # autosave, recovery, the question on close
        self.box_overlay = BoxOverlay(window.viewer.single_view)
        self.document.sigVolumeChanged.connect(self._on_volume_changed)
        self.document.sigLabelMapChanged.connect(lambda *_: self._sync_actions())
        self.document.sigAnnotateToolChanged.connect(self._sync_actions)
        self.document.sigAiResultChanged.connect(self._sync_actions)  # Accept AI Prediction
        self._sync_actions()

    # ----------------------------------------------------------------- construction
    def _build_menu(self) -> None:
        bar = self.window.menuBar()
        self.menu = QMenu("A&nnotate", self.window)
        help_menu = next((a for a in bar.actions() if a.text() == "&Help"), None)
        if help_menu is not None:
            bar.insertMenu(help_menu, self.menu)
        else:
            bar.addMenu(self.menu)
        m = self.menu
        self.undo_action = self._action(m, "&Undo", self.undo, "Ctrl+Z")
        self.redo_action = self._action(m, "&Redo", self.redo, "Ctrl+Shift+Z")
        m.addSeparator()
        self.tool_actions: dict[str, QAction] = {}
        for tool in TOOLS:
            action = self._action(m, TOOL_NAMES[tool], lambda t=tool: self.set_tool(t))
            action.setCheckable(True)
            self.tool_actions[tool] = action
        self._action(m, "Stop Annotating (mouse navigates)", lambda: self.set_tool(None))
        m.addSeparator()
        self.fill_between_action = self._action(m, "Fill Between Slices",
                                                self.fill_between_slices)
        self._action(m, "Remove Islands", lambda: self.remove_islands())
        self._action(m, "Keep Largest", self.keep_largest)
        self._action(m, "Smooth", lambda: self.smooth())
        m.addSeparator()
        self.accept_action = self._action(m, "Accept AI Prediction", self.accept_prediction)
        self.save_action = self._action(m, "&Save Annotations", self.save, "Ctrl+S")
        self.recover_action = self._action(m, "Recover Unsaved Annotations\u2026",
                                           lambda: self.safety.recover_from_menu())
        self.recover_action.setEnabled(False)
        view = next((a.menu() for a in bar.actions() if a.text() == "&View"), None)
        if view is not None:
            view.addAction(self.dock.toggleViewAction())

    def _action(self, menu: QMenu, text: str, slot: Any, key: str = "") -> QAction:
        action = menu.addAction(text)
        if key:
            action.setShortcut(key)
            action.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
        action.triggered.connect(lambda _checked=False: slot())
        return action

    def _sync_actions(self) -> None:
        doc = self.document
        undo, redo = self._next_step("undo"), self._next_step("redo")
        self.undo_action.setEnabled(undo is not None)
        self.redo_action.setEnabled(redo is not None)
        self.undo_action.setText(f"&Undo {undo or ''}".strip())
        self.redo_action.setText(f"&Redo {redo or ''}".strip())
        for tool, action in self.tool_actions.items():
            action.setChecked(doc.annotate_tool == tool)
        result = doc.ai_result
        self.accept_action.setEnabled(result is not None and (
            result.label_map is not None or bool(result.boxes)))
        self.panel.sync()

    def show_error(self, text: str) -> None:
        self.window.show_error(text)
        self.sigFailed.emit(text)

    # ----------------------------------------------------------------- tools
    @guarded
    def set_tool(self, tool: str | None) -> bool:
        """Pick the mouse's annotate tool (None: back to navigating)."""
        if tool is not None and (why := self.document.can_annotate()):
            self.window.set_status(why)
            self._sync_actions()
            return False
        self.document.set_tool_settings(tool=tool)
        self.window.set_status(f"Annotate: {TOOL_NAMES[tool]}" if tool else "Annotate: off")
        self._sync_actions()
        return True

    def set_brush(self, **changes: Any) -> None:
        """radius_mm, sphere, value_range (None: any value), overwrite."""
        self.document.set_tool_settings(**changes)

    # ----------------------------------------------------------------- commands
    def _edit(self, name: str, tool: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one core tool on the map as one undo item and redraw what it changed."""
        doc = self.document
        if (why := doc.can_annotate()) is not None:
            self.window.set_status(why)
            return None
        annotation = doc.ensure_annotation()
        try:
            box = tool(annotation.labelmap, annotation.history, *args, **kwargs)
        except AnnotationError as exc:
            self.show_error(exc.reason)
            return None
        if box is not None:
            doc.labelmap_changed(box)
        self.window.set_status(f"{name}: {'done' if box is not None else 'nothing changed'}")
        self._sync_actions()
        return box

    @guarded
    def undo(self) -> Any:
        return self._replay("undo")

    @guarded
    def redo(self) -> Any:
        return self._replay("redo")

    def _box_turn(self, which: str) -> bool:
        """Whether the next undo / redo is a box edit: map strokes and box edits share one
        order, kept by noting how many map items existed when each box edit was made."""
        annotation = self.document.annotation
        if annotation is None:
            return False
        stack = annotation.box_undo if which == "undo" else annotation.box_redo
        if not stack:
            return False
        made_at, maps = stack[-1][1], len(annotation.history)
        return made_at >= maps if which == "undo" else made_at <= maps

    def _next_step(self, which: str) -> str | None:
        annotation = self.document.annotation
        if annotation is None:
            return None
        if self._box_turn(which):
            stack = annotation.box_undo if which == "undo" else annotation.box_redo
            return stack[-1][0].description
        history = annotation.history
        return history.undo_name() if which == "undo" else history.redo_name()

    def _replay(self, which: str) -> Any:
        annotation = self.document.annotation
        if annotation is None:
            return None
        if self._box_turn(which):
            source = annotation.box_undo if which == "undo" else annotation.box_redo
            target = annotation.box_redo if which == "undo" else annotation.box_undo
            edit, made_at = source.pop()
            edit.undo(annotation.boxes) if which == "undo" else edit.redo(annotation.boxes)
            target.append((edit, made_at))
            self.document.labelmap_changed(None)
            self._sync_actions()
            return None
        history = annotation.history
        box = history.undo() if which == "undo" else history.redo()
        self.document.labelmap_changed(box)  # None (a table-only item): redraw all
        return box

    # ----------------------------------------------------------------- box review
    def box_edit(self, change: Any) -> BoxEdit | None:
        """Run `change(boxset) -> BoxEdit` on the series' boxes as one undo step."""
        annotation = self.document.annotation
        if annotation is None:
            return None
        try:
            edit = change(annotation.boxes)
        except (AnnotationError, KeyError) as exc:
            self.window.set_status(getattr(exc, "reason", None) or f"No such box: {exc}")
            return None
        if not edit.changed:
            return None
        annotation.box_undo.append((edit, len(annotation.history)))
        annotation.box_redo.clear()
        self.document.labelmap_changed(None)
        self.window.set_status(edit.description.capitalize())
        self._sync_actions()
        return edit

    @guarded
    def accept_box(self, uid: str) -> BoxEdit | None:
        return self.box_edit(lambda boxes: boxes.accept(uid))

    @guarded
    def reject_box(self, uid: str) -> BoxEdit | None:
        return self.box_edit(lambda boxes: boxes.reject(uid))

    @guarded
    def accept_boxes_above(self, score: float) -> BoxEdit | None:
        return self.box_edit(lambda boxes: boxes.accept_above(score))

    @guarded
    def fill_between_slices(self, value: int | None = None) -> Any:
        return self._edit("Fill between slices", fill_between_slices,
                          value or self.document.active_label)

    @guarded
    def remove_islands(self, min_mm3: float = 10.0, value: int | None = None) -> Any:
        return self._edit("Remove islands", remove_islands, value or self.document.active_label,
                          min_mm3=min_mm3)

    @guarded
    def keep_largest(self, value: int | None = None) -> Any:
        return self._edit("Keep largest", keep_largest, value or self.document.active_label)

    @guarded
    def smooth(self, radius_mm: float = 1.0, operation: str = "closing",
               value: int | None = None) -> Any:
        return self._edit("Smooth", smooth, value or self.document.active_label,
                          radius_mm=radius_mm, operation=operation)

    @guarded
    def accept_prediction(self) -> bool:
        """The AI result on screen becomes the editable map (ONE undo step) and its boxes a
        set of proposed boxes."""
        doc, result = self.document, self.document.ai_result
        if result is None or (result.label_map is None and not result.boxes):
            self.window.set_status("No AI segmentation or boxes to accept: run a model first")
            return False
        if (why := doc.can_annotate()) is not None:
            self.window.set_status(why)
            return False
        annotation = doc.ensure_annotation()
        source = model_source(result.model_id, result.model_version)
        if result.label_map is not None:
            self._accept_labels(annotation, result)
        if result.boxes:  # proposed boxes join the set as one undo step
            proposed = boxes_from_model(result.boxes, doc.volume, source=source)
            self.box_edit(lambda boxes: boxes.add(*proposed.boxes,
                                                  description="accept AI boxes"))
        annotation.model = source
        doc.labelmap_changed(None)
        self.window.set_status(f"Accepted {result.title or result.model_id}: edit it, then save")
        return True

    def _accept_labels(self, annotation: Annotation, result: Any) -> None:
        labelmap, history = annotation.labelmap, annotation.history
        with history.stroke("accept prediction"):  # the new labels join the same undo item
            for name, colour in zip(result.labels[1:], result.colours[1:], strict=False):
                if labelmap.table.by_name(name) is None:
                    labelmap.table.add(name, colour if _is_colour(colour) else None)
            accept_prediction(labelmap, history, result.label_map, result.labels)
        first = next(iter(labelmap.table), None)
        if first is not None and self.document.active_label not in labelmap.table:
            self.document.active_label = first.value

    # ----------------------------------------------------------------- saving and loading
    @guarded
    def save(self) -> bool:
        """Ctrl+S: SEG + SR into the workspace, in a worker; sigSaved when written."""
        doc = self.document
        annotation = doc.annotation
        if doc.volume is None or annotation is None:
            self.window.set_status("Nothing to save: no annotations on this series")
            return False
        table = LabelTable({v: _copy(lab) for v, lab in annotation.labelmap.table.labels.items()})
        self.window.set_status("Saving annotations\u2026")
        self.window.tasks.start("annotate-save", save_task, doc.volume,
                                annotation.labelmap.array.copy(), table, annotation.boxes,
                                annotation.model, self.annotator,
                                on_result=lambda paths: self._on_saved(annotation, paths),
                                on_error=self._on_save_error)
        return True

    def save_now(self) -> bool:
        """Save the open series on this thread (closing the window: no worker to wait for)."""
        doc, annotation = self.document, self.document.annotation
        if doc.volume is None or annotation is None:
            return False
        try:
            paths = save_task(None, doc.volume, annotation.labelmap.array,
                              annotation.labelmap.table, annotation.boxes, annotation.model,
                              self.annotator)
        except (AnnotationError, OSError) as exc:
            self._on_save_error(exc)
            return False
        self._on_saved(annotation, paths)
        return True

    def restore_annotation(self, labelmap: LabelMap | None, boxes: BoxSet,
                           model: str | None) -> Annotation:
        """Put recovered work on the open series: the map as ONE undo step, the boxes as
        another, so Ctrl+Z goes back to what was there before."""
        doc = self.document
        annotation = doc.ensure_annotation()
        if labelmap is not None:
            target, history = annotation.labelmap, annotation.history
            with history.stroke("recover unsaved work"):
                history.touch(tuple(slice(0, n) for n in target.shape))
                target.array[...] = labelmap.array
                target.table.labels = copy.deepcopy(labelmap.table.labels)
            first = next(iter(target.table), None)
            doc.active_label = first.value if first is not None else 1
        known = {b.uid for b in annotation.boxes}
        new = [b for b in boxes if b.uid not in known]
        if new:
            self.box_edit(lambda current: current.add(*new, description="recover boxes"))
        annotation.model = annotation.model or model
        doc.labelmap_changed(None)
        self._sync_actions()
        return annotation

    def _on_saved(self, annotation: Annotation, paths: list[Path]) -> None:
        annotation.dirty = False
        self.safety.forget(annotation)
        self.window.set_status(f"Annotations saved to {paths[0].parent}")
        self.sigSaved.emit(paths)

    def _on_save_error(self, exc: BaseException) -> None:
        reason = exc.reason if isinstance(exc, AnnotationError) else str(exc)
        self.show_error(f"Could not save the annotations: {reason}")

    def _on_volume_changed(self) -> None:
        doc = self.document
        if doc.volume is not None and doc.annotate_tool is not None and doc.can_annotate():
            doc.set_tool_settings(tool=None)  # a 4D or colour series: the mouse navigates
        if doc.volume is None or doc.annotation is not None or doc.can_annotate():
            self._sync_actions()
            return
        volume = doc.volume
        if not _has_saved_annotations(volume):  # a few stat calls: no worker, no busy bar
            self.sigLoaded.emit(None)
            return
        self.window.tasks.start("annotate-load", load_task, volume,
                                on_result=lambda a: self._on_loaded(volume, a),
                                on_error=self._on_load_error)

    def _on_loaded(self, volume: Any, annotation: Annotation | None) -> None:
        doc = self.document
        if doc.volume is not volume or doc.annotation is not None:
            return  # another series opened, or the reader started painting meanwhile
        if annotation is not None:
            doc.set_annotation(annotation)
            first = next(iter(annotation.labelmap.table), None)
            doc.active_label = first.value if first is not None else 1
            self.window.set_status("Saved annotations of this series loaded")
        self.sigLoaded.emit(annotation)

    def _on_load_error(self, exc: BaseException) -> None:
        reason = exc.reason if isinstance(exc, AnnotationError) else str(exc)
        self.show_error(f"Could not read this series' annotations: {reason}")


def _has_saved_annotations(volume: Any) -> bool:
    try:
        found = Workspace.for_series(volume).list_annotations()
    except (AnnotationError, OSError):  # not loaded from files: nowhere to look
        return False
    return any(f.kind in ("seg", "sr") for f in found)


def _is_colour(text: str) -> bool:
    t = str(text).strip()
    return len(t) == 7 and t.startswith("#")


def _copy(label: Any) -> Any:
    from dataclasses import replace

    return replace(label)
