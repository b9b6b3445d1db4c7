"""The viewer's annotation editing: the Annotate menu and dock, and the logic behind them.

`AnnotateController` is usable from a test or a script without clicking (`set_tool("brush")`,
`undo()`, `fill_between_slices()`, `accept_prediction()`, `save()`): the menu and the dock
only call it. Every edit goes through a `core.annotations` tool inside one History stroke, so
Undo (Ctrl+Z) and Redo (Ctrl+Shift+Z) step back and forth one stroke or one command at a time.
Saving and loading (SEG + SR in the series' workspace) are `annotate_storage`'s part of it.
Boxes, class labels and the Box tool are `annotate_box_controller.BoxController`'s
(`self.boxes`); the box commands here hand over to it, so callers keep one name for each.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDockWidget, QMenu, QScrollArea

from medviewer.core.annotations import (
    AnnotationError,
    BoxEdit,
    accept_prediction,
    boxes_from_model,
    fill_between_slices,
    keep_largest,
    model_source,
    remove_islands,
    smooth,
)
from medviewer.ui.annotate.autosave import AnnotationSafety
from medviewer.ui.annotate.box_controller import BoxController
from medviewer.ui.annotate.boxes import BoxOverlay
from medviewer.ui.annotate.layers import AnnotationLayer
from medviewer.ui.annotate.paint_tools import PAINT_TOOLS, AnnotateMouse, PaintTool
from medviewer.ui.annotate.panel import AnnotatePanel
from medviewer.ui.annotate.storage import AnnotationStorage, annotator_name
from medviewer.ui.common.guard import guarded
from medviewer.ui.common.host import Host
from medviewer.ui.document.annotate_state import TOOL_NAMES, TOOLS, Annotation
from medviewer.ui.document.study import StudyDocument
from medviewer.ui.viewing.viewer import ViewerPanel

log = logging.getLogger(__name__)
BOX_KEY = "B"


class AnnotateController(AnnotationStorage, QObject):
    """Menu, dock and commands of the reader's annotations, on the stack view of `viewer`,
    in the window `host`."""

    sigSaved = Signal(object)  # list of saved paths
    sigLoaded = Signal(object)  # the Annotation read back, or None
    sigImported = Signal(object)  # the path of a SEG made elsewhere, now editable labels
    sigFailed = Signal(str)

    def __init__(self, host: Host, document: StudyDocument, viewer: ViewerPanel) -> None:
        super().__init__(document)
        self.host, self.document, self.viewer = host, document, viewer
        self.annotator = annotator_name()
        viewer.add_layer("annotation", AnnotationLayer)  # the reader's editable label map
        viewer.add_layer("boxes", BoxOverlay)  # the reader's boxes (a cut line across slices)
        self.mouse = AnnotateMouse(viewer.single_view)  # painting: the stack view only
        for tool in PAINT_TOOLS:
            viewer.tools.register(PaintTool(tool, self.mouse))
        self.boxes = BoxController(self)  # boxes, class labels, the Box tool, rulers in SR
        self.panel = AnnotatePanel(self)
        self.dock = QDockWidget("Annotate", host.dialog_parent())
        self.dock.setObjectName("annotateDock")
        scroll = QScrollArea()  # a small window still fits: the dock scrolls
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.panel)
        self.dock.setWidget(scroll)
        host.add_dock(self.dock, "left")  # a tab beside the studies
        self._build_menu()
        self.safety = AnnotationSafety(self)  # autosave, recovery, the question on close
        self.box_overlay = viewer.single_view.layers["boxes"]
        self.document.sigVolumeChanged.connect(self._on_volume_changed)
        self.document.sigLabelMapChanged.connect(lambda *_: self._sync_actions())
        self.document.sigAnnotateToolChanged.connect(self._sync_actions)
        self.document.sigAiResultChanged.connect(self._sync_actions)  # Accept AI Prediction
        if document.volume is not None:  # built after a series opened: its saved annotations
            self._on_volume_changed()
        self._sync_actions()

    # ----------------------------------------------------------------- construction
    def _build_menu(self) -> None:
        self.menu = QMenu("A&nnotate", self.host.dialog_parent())
        self.host.add_menu(self.menu)
        m = self.menu
        self.undo_action = self._action(m, "&Undo", self.undo, "Ctrl+Z")
        self.redo_action = self._action(m, "&Redo", self.redo, "Ctrl+Shift+Z")
        m.addSeparator()
        self.tool_actions: dict[str, QAction] = {}
        for tool in TOOLS:
            action = self._action(m, TOOL_NAMES[tool], lambda t=tool: self.toggle_tool(t))
            action.setCheckable(True)
            self.tool_actions[tool] = action
        box = self.tool_actions["box"]  # B works in the image panel, not while typing a label
        box.setShortcut(BOX_KEY)
        box.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.viewer.addAction(box)
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
        self._action(m, "Import DICOM SEG\u2026", self.import_seg_dialog)
        self.recover_action = self._action(m, "Recover Unsaved Annotations\u2026",
                                           lambda: self.safety.recover_from_menu())
        self.recover_action.setEnabled(False)

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
        self.accept_action.setEnabled(_acceptable(result))
        self.panel.sync()

    def show_error(self, text: str) -> None:
        self.host.show_error(text)
        self.sigFailed.emit(text)

    # ----------------------------------------------------------------- tools
    @guarded
    def set_tool(self, tool: str | None) -> bool:
        """Make an annotate tool the mouse tool of every view (None: back to navigating);
        False, with the reason in the status bar, when the series cannot be edited."""
        if not self.viewer.tools.choose(tool):
            self._sync_actions()  # the menu's check mark goes back
            return False
        self.host.set_status(f"Annotate: {TOOL_NAMES[tool]}" if tool else "Annotate: off")
        return True

    def toggle_tool(self, tool: str) -> bool:
        """A tool's menu item or key (B: Box): pick it, or back to navigating if it is on."""
        return self.set_tool(None if self.document.annotate_tool == tool else tool)

    def set_brush(self, **changes: Any) -> None:
        """radius_mm, sphere, value_range (None: any value), overwrite."""
        self.document.set_tool_settings(**changes)

    # ----------------------------------------------------------------- commands
    def _edit(self, name: str, tool: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one core tool on the map as one undo item and redraw what it changed."""
        doc = self.document
        if (why := doc.can_annotate()) is not None:
            self.host.set_status(why)
            return None
        annotation = doc.ensure_annotation()
        try:
            box = tool(annotation.labelmap, annotation.history, *args, **kwargs)
        except AnnotationError as exc:
            self.show_error(exc.reason)
            return None
        if box is not None:
            doc.labelmap_changed(box)
        self.host.set_status(f"{name}: {'done' if box is not None else 'nothing changed'}")
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
        made_at, maps = stack[-1][1], annotation.history.position
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

    # ----------------------------------------------------------------- boxes (BoxController)
    def box_edit(self, change: Any) -> BoxEdit | None:
        """Run `change(boxset) -> BoxEdit` on the series' boxes as one undo step."""
        return self.boxes.box_edit(change)

    def accept_box(self, uid: str) -> BoxEdit | None:
        return self.boxes.accept_box(uid)

    def reject_box(self, uid: str) -> BoxEdit | None:
        return self.boxes.reject_box(uid)

    def accept_boxes_above(self, score: float) -> BoxEdit | None:
        return self.boxes.accept_boxes_above(score)

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
        """The AI result on screen becomes the editable map (ONE undo step), its boxes a set
        of proposed boxes (another) and a classifier's verdicts the classes (another)."""
        doc, result = self.document, self.document.ai_result
        if not _acceptable(result):
            self.host.set_status("No AI segmentation, boxes or classes to accept: run a "
                                   "model first")
            return False
        if (why := doc.can_annotate()) is not None:
            self.host.set_status(why)
            return False
        annotation = doc.ensure_annotation()
        source = model_source(result.model_id, result.model_version)
        if result.label_map is not None:
            self._accept_labels(annotation, result)
        if result.boxes:  # proposed boxes join the set as one undo step
            proposed = boxes_from_model(result.boxes, doc.volume, source=source)
            self.box_edit(lambda boxes: boxes.add(*proposed.boxes,
                                                  description="accept AI boxes"))
        if result.scores is not None:
            self.boxes.accept_classes(result)
        annotation.model = source
        doc.labelmap_changed(None)
        self.host.set_status(f"Accepted {result.title or result.model_id}: edit it, then save")
        return True

    def _accept_labels(self, annotation: Annotation, result: Any) -> None:
        labelmap, history = annotation.labelmap, annotation.history
        # the new labels join the same undo item; they are the model's (AUTOMATIC) until a
        # person edits their voxels (then SEMIAUTOMATIC, see History)
        with history.stroke("accept prediction", keeps_provenance=True):
            for name, colour in zip(result.labels[1:], result.colours[1:], strict=False):
                if labelmap.table.by_name(name) is None:
                    labelmap.table.add(name, colour if _is_colour(colour) else None)
            accept_prediction(labelmap, history, result.label_map, result.labels,
                              algorithm=(result.model_id, result.model_version))
        first = next(iter(labelmap.table), None)
        if first is not None and self.document.active_label not in labelmap.table:
            self.document.active_label = first.value

def _acceptable(result: Any) -> bool:
    """Whether an AI result holds something Accept AI Prediction can turn into edits."""
    return result is not None and (result.label_map is not None or bool(result.boxes)
                                   or result.scores is not None)


def _is_colour(text: str) -> bool:
    t = str(text).strip()
    return len(t) == 7 and t.startswith("#")
