"""The Model menu (Retrain..., Versions..., Import Model...) and `models_changed`, the viewer's
switch to newly installed or chosen versions without a restart.

`ModelMenu.models_changed()` is what whoever changes the model store calls afterwards (the
Versions dialog after a rollback, the Retrain dialog after publishing, the Import dialog after
installing): it emits `sigModelsChanged`, which the shell hands to the AI feature (it lists the
models again and drops its opened ONNX sessions, so the next run opens the version that is
active now), an open Versions dialog reloads and the Retrain dialog shows the version now in
use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMenu, QWidget

from medviewer.ui.common.guard import guarded
from medviewer.ui.common.host import Host

if TYPE_CHECKING:
    from medviewer.ui.document.study import StudyDocument
    from medviewer.ui.training.import_dialog import ImportDialog
    from medviewer.ui.training.versions_dialog import VersionsDialog

log = logging.getLogger(__name__)


class ModelMenu(QObject):
    """The "&Model" menu of one window (its `Host`); `chosen_model()` names the model the
    dialogs start on (handed in by the shell: one that reads the open series); `document`
    is the window's open study (the slice Import's Preview runs on)."""

    sigModelsChanged = Signal()  # the installed or active versions changed

    def __init__(self, host: Host, *, document: StudyDocument | None = None,
                 chosen_model: Callable[[], str | None] = lambda: None) -> None:
        super().__init__(host.dialog_parent())
        self.host, self.chosen_model, self.document = host, chosen_model, document
        self.menu = QMenu("&Model", host.dialog_parent())
        self.menu.setObjectName("modelMenu")
        self.menu.setToolTipsVisible(True)
        self.retrain_action = self.menu.addAction("&Retrain\u2026")
        self.retrain_action.setToolTip("Train the chosen model on your corrected annotations, "
                                       "in the background, and compare it with the current one")
        self.versions_action = self.menu.addAction("&Versions\u2026")
        self.versions_action.setToolTip("Every installed version of a model with its metrics; "
                                        "switch to (or roll back to) any of them")
        self.import_action = self.menu.addAction("&Import Model\u2026")
        self.import_action.setToolTip("Your own checkpoint (.pth, .safetensors) or model file "
                                      "(.onnx, TorchScript, .pt2) as a model of the AI menu, "
                                      "previewed on this slice first")
        self.retrain_action.triggered.connect(lambda _checked=False: self.open_retrain())
        self.versions_action.triggered.connect(lambda _checked=False: self.open_versions())
        self.import_action.triggered.connect(lambda _checked=False: self.open_import())
        self.retrain_dialog: QWidget | None = None
        self.versions_dialog: VersionsDialog | None = None
        self.import_dialog: ImportDialog | None = None
        host.add_menu(self.menu)

    def models_changed(self) -> None:
        """The installed or active versions changed: tell the viewer, reload Versions."""
        self.sigModelsChanged.emit()
        dialog = self.versions_dialog
        if _alive(dialog) and dialog.isVisible():
            dialog.reload()  # e.g. the Retrain dialog published while Versions is open
        retrain = self.retrain_dialog
        if _alive(retrain):
            retrain.active_changed()  # e.g. rolled back in Versions: not "Now using" the old

    def show_error(self, text: str) -> None:  # what `guarded` calls
        self.host.show_error(text)

    @guarded
    def open_retrain(self) -> QWidget | None:
        """Show the Retrain dialog (one per window: raised again when already open)."""
        dialog = self.retrain_dialog
        if _alive(dialog):  # hidden with a run going on: that run's dialog, not a new one
            if not dialog.isVisible() and not dialog.process.running:
                dialog.reload_models(self.chosen_model())
                dialog.refresh_series()
            dialog.show()
            dialog.raise_()
            dialog.activateWindow()
            return dialog
        from medviewer.ui.training.retrain_dialog import RetrainDialog  # pyqtgraph plots: on demand

        self.retrain_dialog = RetrainDialog(self.host, model_id=self.chosen_model(),
                                            on_models_changed=self.models_changed)
        self.retrain_dialog.show()
        return self.retrain_dialog

    @guarded
    def open_versions(self, model_id: str | None = None) -> VersionsDialog | None:
        """Show the Versions dialog on `model_id` (default: one that reads the open series)."""
        from medviewer.ui.training.versions_dialog import VersionsDialog

        dialog = self.versions_dialog
        if not _alive(dialog):
            dialog = self.versions_dialog = VersionsDialog(self.host,
                                                           on_models_changed=self.models_changed)
        dialog.show_model(model_id or self.chosen_model())
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()
        return dialog

    @guarded
    def open_import(self) -> ImportDialog | None:
        """Show the Import Model dialog (one per window: raised again when already open)."""
        from medviewer.ui.training.import_dialog import ImportDialog

        dialog = self.import_dialog
        if not _alive(dialog):
            dialog = self.import_dialog = ImportDialog(self.host, self.document,
                                                       on_models_changed=self.models_changed)
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()
        return dialog

    def shutdown(self) -> None:
        """The window is closing: a training child must not outlive the viewer, an import
        worker neither, and the import's temporary folders go."""
        for dialog in (self.retrain_dialog, self.import_dialog):
            if _alive(dialog):
                dialog.shutdown()


def _alive(widget: Any) -> bool:
    """A dialog we made that Qt has not deleted (a WA_DeleteOnClose dialog may be gone)."""
    if widget is None:
        return False
    try:
        widget.objectName()
    except RuntimeError:  # "Internal C++ object already deleted"
        return False
    return True

