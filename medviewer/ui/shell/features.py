"""The window's features: AI, Model, Annotate, PACS and Export Dataset (issue 17 item 4).

What a reader needs at once (the viewer, browser, tags, File / View / Help) is the main
window itself; these features, and the stacks they import (ONNX Runtime's wrappers, the
model list validated with jsonschema, the annotation and PACS machinery), are built by
`build_features`: in the constructor by default (tests, scripts), or on the tick after the
first paint for the real start (`MainWindow(defer_features=True)`), so the window is on
screen first. Menus keep one order either way: File, View, AI, Model, Annotate, Help.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QCoreApplication, QEvent, QObject, QTimer
from PySide6.QtWidgets import QWidget

if TYPE_CHECKING:
    from medviewer.ui.shell.main_window import MainWindow


class _FirstPaint(QObject):
    """Watches the application's events until a widget of `window` paints, then calls `then`
    on the next tick. Any widget: Qt skips painting a parent its opaque children cover."""

    def __init__(self, window: QWidget, then: Callable[[], None]) -> None:
        super().__init__(window)
        self.window, self.then = window, then
        QCoreApplication.instance().installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt
        if event.type() == QEvent.Type.Paint and isinstance(watched, QWidget) \
                and watched.window() is self.window:
            QCoreApplication.instance().removeEventFilter(self)
            QTimer.singleShot(0, self.then)
            self.deleteLater()
        return False


def after_first_paint(window: QWidget, then: Callable[[], None]) -> None:
    """Call `then` on the tick after `window` (or any widget in it) first paints."""
    _FirstPaint(window, then)


def build_features(window: MainWindow) -> None:
    """The features, each given the document, its views and the window as its `Host`; what
    one feature tells another goes through here. A series opened before they existed is
    taken up by each feature as it is built (it reads the document's state then)."""
    from medviewer.ui.ai.controller import AiController
    from medviewer.ui.annotate.controller import AnnotateController
    from medviewer.ui.dataset.feature import DatasetFeature
    from medviewer.ui.pacs.feature import PacsFeature
    from medviewer.ui.training.menu import ModelMenu

    document, file_menu, export = window.document, window.file_menu, window.export_action
    # AI menu, results dock, provider label; Model menu; Annotate menu, dock and tools
    window.ai = ai = AiController(window, document, window.viewer)
    window.model_menu = ModelMenu(window, document=document, chosen_model=ai.model_for_series)
    window.model_menu.sigModelsChanged.connect(ai.models_changed)
    window.annotate = AnnotateController(window, document, window.viewer)
    window.pacs = pacs = PacsFeature(window, document)  # File, Annotate and AI menu items
    file_menu.insertActions(export, [pacs.servers_action, pacs.query_action])
    file_menu.insertSeparator(export)
    window.dataset = DatasetFeature(window, document)  # File ▸ Export Dataset…
    actions = file_menu.actions()
    file_menu.insertAction(actions[actions.index(export) + 1], window.dataset.export_action)
    window.annotate.menu.addAction(pacs.send_annotations_action)
    ai.menu.addAction(pacs.send_ai_action)
    ai.menu.aboutToShow.connect(  # again after the AI menu rebuilt its model list
        lambda: ai.menu.addAction(pacs.send_ai_action))
