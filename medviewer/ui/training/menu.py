"""The Model menu (Retrain..., Versions...) and `models_changed`, the viewer's switch to newly
installed or chosen versions without a restart.

`models_changed(window)` is what whoever changes the model store calls afterwards (the Versions
dialog after a rollback, the Retrain dialog after publishing): the AI menu lists the models
again (so it now offers the active versions) and the opened ONNX sessions are dropped, so the
next run opens the version that is active now and the old one's memory is freed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QMenu, QWidget

from medviewer.ui.common.guard import guarded

if TYPE_CHECKING:
    from medviewer.ui.shell.main_window import MainWindow
    from medviewer.ui.training.versions_dialog import VersionsDialog

log = logging.getLogger(__name__)

AI_MENU_TEXT = "&AI"  # the Model menu goes right after it


def models_changed(window: MainWindow) -> None:
    """The installed or active versions changed: re-list them and drop opened sessions."""
    window.ai.cache.clear()  # a run in progress keeps its own reference; later runs reopen
    window.ai.refresh_models()
    menu = getattr(window, "model_menu", None)
    dialog = menu.versions_dialog if menu is not None else None
    if dialog is not None and dialog.isVisible():
        dialog.reload()  # e.g. the Retrain dialog published while Versions is open


class ModelMenu(QObject):
    """The "&Model" menu of one main window, placed right after the AI menu."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.menu = QMenu("&Model", window)
        self.menu.setObjectName("modelMenu")
        self.menu.setToolTipsVisible(True)
        self.retrain_action = self.menu.addAction("&Retrain\u2026")
        self.retrain_action.setToolTip("Train the chosen model on your corrected annotations, "
                                       "in the background, and compare it with the current one")
        self.versions_action = self.menu.addAction("&Versions\u2026")
        self.versions_action.setToolTip("Every installed version of a model with its metrics; "
                                        "switch to (or roll back to) any of them")
        self.retrain_action.triggered.connect(lambda _checked=False: self.open_retrain())
        self.versions_action.triggered.connect(lambda _checked=False: self.open_versions())
        self.retrain_dialog: QWidget | None = None
        self.versions_dialog: VersionsDialog | None = None
        self._insert_after_ai()

    def _insert_after_ai(self) -> None:
        bar = self.window.menuBar()
        actions = bar.actions()
        after = next((i + 1 for i, a in enumerate(actions) if a.text() == AI_MENU_TEXT),
                     len(actions))
        if after < len(actions):
            bar.insertMenu(actions[after], self.menu)
        else:
            bar.addMenu(self.menu)

    def chosen_model(self) -> str | None:
        """The model the AI menu has chosen (None: none yet)."""
        return getattr(getattr(self.window, "ai", None), "chosen_id", "") or None

    def show_error(self, text: str) -> None:  # what `guarded` calls
        self.window.show_error(text)

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

        self.retrain_dialog = RetrainDialog(self.window, model_id=self.chosen_model())
        self.retrain_dialog.show()
        return self.retrain_dialog

    @guarded
    def open_versions(self, model_id: str | None = None) -> VersionsDialog | None:
        """Show the Versions dialog on `model_id` (default: the AI menu's chosen model)."""
        from medviewer.ui.training.versions_dialog import VersionsDialog

        dialog = self.versions_dialog
        if not _alive(dialog):
            dialog = self.versions_dialog = VersionsDialog(self.window)
        dialog.show_model(model_id or self.chosen_model())
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()
        return dialog


    def shutdown(self) -> None:
        """The window is closing: a training child must not outlive the viewer."""
        dialog = self.retrain_dialog
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


def install_model_menu(window: MainWindow) -> ModelMenu:
    """The Model menu of `window` (after the AI menu, which must exist already)."""
    return ModelMenu(window)
