"""Never losing an edit: autosave, crash recovery at start-up, and the question on close.

`AnnotationSafety` belongs to the AnnotateController. Every `AUTOSAVE_MS` (30 s) and when
another series opens, a series whose annotation changed since its last autosave is written to
its workspace's `autosave.npz` in a worker (the core writes it atomically), rulers (the SR's
distance lines) included. A real save deletes it. After the window first shows, a worker looks
for autosaves newer than their last real save in the recent data folders and the user folder;
if any, the status bar says so, Annotate -> Recover Unsaved Annotations... is enabled and
`prompt_recovery` (a non-modal message box; tests replace it) offers Restore / Discard.
Restoring opens the series, puts the autosaved map back as ONE undo step, so Ctrl+Z returns to
what was there before, and draws its rulers again. Closing the window with unsaved edits calls
`ask_unsaved` (Save / Discard / Cancel; tests replace it): with no screen to ask on (the
offscreen platform) the edits are autosaved, so the next start offers them back.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMessageBox

from medviewer.core.annotations import (
    AnnotationError,
    AreaMeasurement,
    BoxSet,
    DistanceLine,
    Recoverable,
    Workspace,
    autosaved_areas,
    autosaved_lines,
    discard_autosave,
    find_recoverable,
    load_autosave,
    save_autosave,
)
from medviewer.core.annotations.workspace import AUTOSAVE_NAME, HIDDEN_FOLDER
from medviewer.ui.annotate.measures import saved_measurements

if TYPE_CHECKING:
    from medviewer.ui.annotate.controller import AnnotateController
    from medviewer.ui.document.annotate_state import Annotation

log = logging.getLogger(__name__)
SAVE, DISCARD, CANCEL, KEEP = "save", "discard", "cancel", "keep"


# ----------------------------------------------------------------- worker tasks (no Qt)
def autosave_task(_ctx: Any, volume: Any, labelmap: Any, boxes: BoxSet,
                  model: str | None, lines: tuple[DistanceLine, ...] = (),
                  areas: tuple[AreaMeasurement, ...] = ()) -> Path:
    return save_autosave(Workspace.for_series(volume), labelmap, boxes, model=model,
                         lines=lines, areas=areas)


def find_task(_ctx: Any, folders: list[str]) -> list[Recoverable]:
    return find_recoverable(folders)


def data_folders(recent: list[str]) -> list[str]:
    """The folders of the recently opened items (an item is a path, or paths one a line)."""
    out = []
    for item in recent:
        for line in str(item).splitlines():
            path = Path(line)
            out.append(str(path if path.is_dir() else path.parent))
    return list(dict.fromkeys(out))


def data_folder_of(item: Recoverable, folders: list[str]) -> Path | None:
    """The data folder an autosave belongs to: `<data>/.medviewer/<study>/<series>/`, or the
    recent folder whose user-folder hash matches `<user>/workspaces/<hash>/...`."""
    parents = item.path.parents
    if len(parents) > 3 and parents[2].name == HIDDEN_FOLDER:
        return parents[3]
    digest = parents[2].name if len(parents) > 2 else ""
    for folder in folders:
        resolved = str(Path(folder).resolve())
        if hashlib.sha256(resolved.encode("utf-8")).hexdigest()[:16] == digest:
            return Path(resolved)
    return None


def _snapshot(annotation: Annotation, volume: Any, measures: list) -> tuple:
    """A copy the worker may read while the reader keeps painting: (label map, boxes,
    rulers, area ROIs of the series' stack view)."""
    labelmap = copy.copy(annotation.labelmap)
    labelmap.array = annotation.labelmap.array.copy()
    labelmap.table = copy.deepcopy(annotation.labelmap.table)
    boxes = BoxSet(annotation.boxes.boxes, annotation.boxes.class_labels)
    lines, areas = saved_measurements(volume, measures)
    return labelmap, boxes, tuple(lines), tuple(areas)


class AnnotationSafety(QObject):
    """Autosave timer, recovery offer and close question of one window's annotations."""

    AUTOSAVE_MS = 30_000
    sigAutosaved = Signal(object)  # the autosave's path
    sigRecoverable = Signal(object)  # list[Recoverable] found at start-up (maybe empty)
    sigRecovered = Signal(object)  # the Annotation the autosave went back into

    def __init__(self, controller: AnnotateController) -> None:
        super().__init__(controller)
        self.controller, self.host = controller, controller.host
        self.document = controller.document
        self.recoverable: list[Recoverable] = []
        self._written: dict[int, Path] = {}  # id(annotation) -> its autosave
        # the series on screen (a window built after one opened starts with it)
        self._shown_volume: Any = self.document.volume
        self._shown_annotation: Annotation | None = self.document.annotation
        self._restoring: Recoverable | None = None
        self._checked = False
        self.timer = QTimer(self)
        self.timer.setInterval(self.AUTOSAVE_MS)
        self.timer.timeout.connect(self.autosave)
        self.timer.start()
        self.document.sigVolumeChanged.connect(self._on_volume_changed)
        self.document.sigLabelMapChanged.connect(lambda *_: self._remember_shown())
        self.host.volume_loaded.connect(self._on_volume_loaded)
        self.host.scan_finished.connect(self._on_scan_finished)
        host_widget = self.host.dialog_parent()
        host_widget.installEventFilter(self)
        if host_widget.isVisible():  # built after the window was shown (the real start)
            self._checked = True
            QTimer.singleShot(0, self.check_recoverable)

    # ----------------------------------------------------------------- autosave
    def needs_autosave(self, annotation: Annotation | None) -> bool:
        return annotation is not None and annotation.dirty and \
            annotation.edits != annotation.autosaved_edits

    def autosave(self, volume: Any = None, annotation: Annotation | None = None) -> bool:
        """Write the (current) series' unsaved edits in a worker; False when none are new."""
        if annotation is None:
            volume, annotation = self.document.volume, self.document.annotation
        if volume is None or not self.needs_autosave(annotation):
            return False
        if annotation.history._pending is not None:
            return False  # mid-stroke: the next tick saves the whole stroke
        labelmap, boxes, lines, areas = _snapshot(annotation, volume,
                                                  self.document.measurements_of(volume))
        annotation.autosaved_edits = annotation.edits
        self.host.pool.start(autosave_task, volume, labelmap, boxes, annotation.model, lines,
                             areas, on_result=lambda path: self._on_autosaved(annotation, path),
                             on_error=self._on_autosave_error)
        return True

    def _on_autosaved(self, annotation: Annotation, path: Path) -> None:
        self._written[id(annotation)] = path
        self.sigAutosaved.emit(path)

    def _on_autosave_error(self, exc: BaseException) -> None:
        reason = exc.reason if isinstance(exc, AnnotationError) else str(exc)
        self.host.set_status(f"Autosave failed: {reason}")
        log.warning("autosave failed: %s", reason)

    def _remember_shown(self) -> None:
        if self.document.volume is self._shown_volume:
            self._shown_annotation = self.document.annotation

    def _on_volume_changed(self) -> None:
        """Another series opens: autosave the one that is leaving, if it has new edits."""
        old_volume, old = self._shown_volume, self._shown_annotation
        self._shown_volume = self.document.volume
        self._shown_annotation = self.document.annotation
        if old_volume is not None and old_volume is not self._shown_volume:
            self.autosave(old_volume, old)

    def forget(self, annotation: Annotation) -> None:
        """After a real save: no autosave is pending for this annotation any more."""
        annotation.autosaved_edits = annotation.edits
        path = self._written.pop(id(annotation), None)
        if path is not None and path.name != AUTOSAVE_NAME:  # a refused save's, now saved
            try:
                discard_autosave(path)
            except AnnotationError as exc:
                log.warning("%s", exc.reason)

    # ----------------------------------------------------------------- recovery at start-up
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt
        shown = event.type() == QEvent.Type.Show
        if watched is self.host.dialog_parent() and shown and not self._checked:
            self._checked = True
            QTimer.singleShot(0, self.check_recoverable)  # after the first paint
        return False

    def check_recoverable(self) -> None:
        """Look for autosaves newer than their last save, in a worker."""
        folders = data_folders(self.host.recent_items())
        self.host.pool.start(find_task, folders, on_result=self._on_found,
                               on_error=self._on_autosave_error)

    def _on_found(self, found: list[Recoverable]) -> None:
        self.recoverable = [r for r in found if not r.problem]
        for bad in (r for r in found if r.problem):
            self.host.set_status(f"An autosave cannot be recovered: {bad.problem}")
        self.controller.recover_action.setEnabled(bool(self.recoverable))
        self.sigRecoverable.emit(list(self.recoverable))
        if self.recoverable:
            self.host.set_status("Unsaved annotations from an earlier session can be "
                                   "recovered: Annotate \u2192 Recover Unsaved Annotations\u2026")
            self.prompt_recovery(self.recoverable[0])

    def prompt_recovery(self, item: Recoverable) -> None:
        """Offer the newest autosave back in a non-modal box (tests replace this)."""
        box = QMessageBox(QMessageBox.Icon.Question, "Recover unsaved annotations",
                          "MedViewer found annotations that were not saved before it closed "
                          f"({item.path.parent.name}). Restore them?",
                          parent=self.host.dialog_parent())
        restore = box.addButton("Restore", QMessageBox.ButtonRole.AcceptRole)
        discard = box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton("Later", QMessageBox.ButtonRole.RejectRole)

        def answered() -> None:
            if box.clickedButton() is restore:
                self.restore(item)
            elif box.clickedButton() is discard:
                self.discard(item)

        box.finished.connect(lambda _r: answered())
        box.open()

    def recover_from_menu(self) -> None:
        if self.recoverable:
            self.prompt_recovery(self.recoverable[0])

    def discard(self, item: Recoverable) -> None:
        """Declined: delete the autosave, so it is not offered again."""
        try:
            discard_autosave(item.path)
        except AnnotationError as exc:
            self.controller.show_error(exc.reason)
        self._drop(item)

    def _drop(self, item: Recoverable) -> None:
        self.recoverable = [r for r in self.recoverable if r.path != item.path]
        self.controller.recover_action.setEnabled(bool(self.recoverable))

    def restore(self, item: Recoverable) -> bool:
        """Open the autosave's series; when it has loaded, its map comes back (one undo)."""
        volume = self.document.volume
        if volume is not None and self._uid(volume) == item.series_instance_uid:
            return self._apply(item, volume)
        folder = data_folder_of(item, data_folders(self.host.recent_items()))
        if folder is None or not folder.is_dir():
            self.controller.show_error("The folder of these unsaved annotations is not among "
                                       "the recent folders: open it, then recover again.")
            return False
        self._restoring = item
        self.host.open_path(folder)
        return True

    def _on_scan_finished(self, result: Any) -> None:
        item = self._restoring
        if item is None:
            return
        match = [s for s in result.all_series()
                 if s.series_instance_uid == item.series_instance_uid]
        if match:
            self.host.open_series(match[0])
        else:
            self._restoring = None
            self.controller.show_error("The series of these unsaved annotations was not found.")

    def _on_volume_loaded(self, volume: Any) -> None:
        item = self._restoring
        if item is not None and self._uid(volume) == item.series_instance_uid:
            self._restoring = None
            self._apply(item, volume)

    @staticmethod
    def _uid(volume: Any) -> str:
        return getattr(getattr(volume, "series", None), "series_instance_uid", "") or ""

    def _apply(self, item: Recoverable, volume: Any) -> bool:
        try:
            labelmap, boxes = load_autosave(item.path, volume)
            saved = [*autosaved_lines(item.path), *autosaved_areas(item.path)]
        except AnnotationError as exc:
            self.controller.show_error(exc.reason)
            return False
        annotation = self.controller.restore_annotation(labelmap, boxes, item.model, saved)
        self._written[id(annotation)] = item.path
        self._drop(item)
        self.host.set_status("Unsaved annotations recovered: save them, or undo (Ctrl+Z)")
        self.sigRecovered.emit(annotation)
        return True

    # ----------------------------------------------------------------- closing
    def unsaved(self) -> list[Annotation]:
        doc = self.document
        parked = list(doc._unsaved.values())
        current = [doc.annotation] if doc.annotation is not None else []
        return [a for a in current + parked if a.dirty]

    def confirm_close(self) -> bool:
        """Called by the window's closeEvent: False keeps the window open."""
        unsaved = self.unsaved()
        if not unsaved:
            return True
        answer = self.ask_unsaved(len(unsaved))
        if answer == CANCEL:
            return False
        self.timer.stop()
        if answer == SAVE:
            if not self.controller.save_now():  # not all saved (a SEG refused): keep it
                self._autosave_now()
        elif answer == DISCARD:
            for annotation in unsaved:
                path = self._written.pop(id(annotation), None)
                if path is not None:
                    discard_autosave(path)
        else:  # KEEP: write the autosave now, so the next start offers it back
            self._autosave_now()
        return True

    def _autosave_now(self) -> None:
        volume, annotation = self.document.volume, self.document.annotation
        if volume is None or not self.needs_autosave(annotation):
            return
        try:
            labelmap, boxes, lines, areas = _snapshot(annotation, volume,
                                                      self.document.measurements_of(volume))
            save_autosave(Workspace.for_series(volume), labelmap, boxes, model=annotation.model,
                          lines=lines, areas=areas)
        except AnnotationError as exc:
            log.warning("autosave on close failed: %s", exc.reason)

    def ask_unsaved(self, count: int) -> str:
        """Save / Discard / Cancel (tests replace this); KEEP when no one can be asked."""
        if QGuiApplication.platformName() in ("offscreen", "minimal"):
            return KEEP
        buttons = QMessageBox.StandardButton
        answer = QMessageBox.question(
            self.host.dialog_parent(), "Unsaved annotations",
            f"{count} series ha{'s' if count == 1 else 've'} annotations that are not saved. "
            "Save the open series' annotations before closing?",
            buttons.Save | buttons.Discard | buttons.Cancel, buttons.Save)
        return {buttons.Save: SAVE, buttons.Discard: DISCARD}.get(answer, CANCEL)
