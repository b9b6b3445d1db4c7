"""`Host`: what a feature (ai, annotate, training) may ask of the window it lives in.

A feature gets the `StudyDocument`, the views it draws on and a `Host`, never the main window:
so it cannot reach into another feature or the shell's widgets, and a test can host it in
anything that has these members. The shell's `MainWindow` is the one real implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from PySide6.QtCore import QSettings, SignalInstance
from PySide6.QtWidgets import QDockWidget, QMenu, QWidget

from medviewer.ui.common.workers import TaskRunner, WorkerPool

DockPlace = Literal["left", "right"]  # left: a tab beside the studies; right: under the tags


class Host(Protocol):
    """The window's services a feature uses: messages, docks, menus, workers, opening data."""

    settings: QSettings
    pool: WorkerPool  # short jobs whose result a feature handles itself
    tasks: TaskRunner  # named jobs behind the status bar's progress and Cancel
    scan_result: Any  # the open folder's ScanResult (None before the first scan)
    scan_finished: SignalInstance  # (ScanResult) a folder was listed
    volume_loaded: SignalInstance  # (Volume) a series finished loading

    def set_status(self, text: str) -> None:
        """One line in the status bar."""

    def show_error(self, text: str) -> None:
        """The status bar plus a non-modal message box."""

    def add_dock(self, dock: QDockWidget, place: DockPlace) -> None:
        """Place a feature's dock (and list it in the View menu)."""

    def add_menu(self, menu: QMenu) -> None:
        """A feature's menu in the menu bar, before Help, in the order features are made."""

    def add_status_widget(self, widget: QWidget) -> None:
        """A permanent widget at the right of the status bar."""

    def dialog_parent(self) -> QWidget:
        """The widget a feature's dialogs and message boxes belong to."""

    def recent_items(self) -> list[str]:
        """Folders and files opened lately, newest first."""

    def open_path(self, path: str | Path | Sequence[str | Path],
                  auto_select: bool = False) -> None:
        """Scan and list a folder, DICOMDIR or files (in the background)."""

    def open_series(self, series: Any) -> None:
        """Show a series of the listed folder."""
