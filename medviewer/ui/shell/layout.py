"""Where the main window's docks go: the reader's layout saved and restored, the defaults, and
View ▸ Reset Layout, for the docks built with the window and for the features' docks built
later (`add_dock`, the `Host` call), which may arrive after the saved layout was restored."""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QDockWidget, QMainWindow, QMenu, QWidget

from medviewer.ui.common.host import DockPlace

GEOMETRY_KEY, STATE_KEY = "window/geometry", "window/state"


class DockLayout(QMainWindow):
    """The layout half of `MainWindow` (which sets the attributes below)."""

    settings: QSettings
    browser_dock: QDockWidget
    tags_dock: QDockWidget
    view_menu: QMenu

    def _dock(self, title: str, name: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)  # saveState needs names
        dock.setWidget(widget)
        return dock

    def _remember_default_layout(self) -> None:
        """Before the reader's layout is restored; the features' docks: see reset_layout."""
        self._default_state = self.saveState()
        self._feature_docks: list[tuple[QDockWidget, DockPlace]] = []
        self._sized = False  # the docks get their default widths when first shown

    def _restore_layout(self) -> None:
        geometry = self.settings.value(GEOMETRY_KEY)
        if isinstance(geometry, QByteArray | bytes):
            self.restoreGeometry(geometry)
        state = self.settings.value(STATE_KEY)
        if isinstance(state, QByteArray | bytes):
            self._sized = self.restoreState(state)  # the reader's own widths win

    def _default_dock_widths(self) -> None:
        """Room for the browser's names and the AI and annotation tables: Qt lays docks out
        only once the window has its size, so this runs on show and on View ▸ Reset Layout."""
        self.resizeDocks([self.browser_dock, self.tags_dock], [280, 380],
                         Qt.Orientation.Horizontal)

    def reset_layout(self) -> None:
        self.restoreState(self._default_state)  # the reader's docks; the features' follow
        for dock, place in self._feature_docks:
            self.removeDockWidget(dock)
            self._place_dock(dock, place)
            dock.show()
        self.browser_dock.show()
        self.tags_dock.show()
        QTimer.singleShot(0, self._default_dock_widths)  # after the restored layout has run

    def add_dock(self, dock: QDockWidget, place: DockPlace) -> None:
        """Where the reader had it last time (saved with the window's state), else `place`."""
        self._feature_docks.append((dock, place))
        if not self.restoreDockWidget(dock):
            self._place_dock(dock, place)
        self.view_menu.addAction(dock.toggleViewAction())

    def _place_dock(self, dock: QDockWidget, place: DockPlace) -> None:
        """left: a tab beside the studies (which stay in front); right: under the tags."""
        if place == "left":
            self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
            self.tabifyDockWidget(self.browser_dock, dock)
            self.browser_dock.raise_()
        else:
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
            self.resizeDocks([self.tags_dock, dock], [480, 400], Qt.Orientation.Vertical)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if not self._sized:
            self._sized = True
            QTimer.singleShot(0, self._default_dock_widths)  # once the layout has run

    def save_settings(self) -> None:
        self.settings.setValue(GEOMETRY_KEY, self.saveGeometry())
        self.settings.setValue(STATE_KEY, self.saveState())
        self.settings.sync()
