"""File > Open Recent: the last folders and file sets opened, most recent first, remembered.

An item is one path, or several joined by newlines (a multi-file open); the menu shows it in a
few words and opens it again through `sigOpenRequested`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QSettings, Signal
from PySide6.QtWidgets import QMenu, QWidget

MAX_RECENT = 10
RECENT_KEY = "files/recent"


def describe_paths(paths: Sequence[str]) -> str:
    """What a recent item or a scan is about, in a few words."""
    if len(paths) == 1:
        return paths[0]
    return f"{len(paths)} files in {Path(paths[0]).parent}"


class RecentMenu(QMenu):
    """The Open Recent submenu, backed by a QSettings list."""

    sigOpenRequested = Signal(object)  # list[str]: the paths of the chosen item

    def __init__(self, settings: QSettings, parent: QWidget | None = None) -> None:
        super().__init__("Open &Recent", parent)
        self.settings = settings
        self.rebuild()

    def items(self) -> list[str]:
        value = self.settings.value(RECENT_KEY, [])
        items = [value] if isinstance(value, str) else list(value or [])
        return [str(v) for v in items if v][:MAX_RECENT]

    def add(self, item: str) -> None:
        """Most recent first, no duplicates, at most MAX_RECENT."""
        items = [item] + [i for i in self.items() if i != item]
        self.settings.setValue(RECENT_KEY, items[:MAX_RECENT])
        self.rebuild()

    def rebuild(self) -> None:
        self.clear()
        items = self.items()
        for item in items:
            paths = item.split("\n")
            action = self.addAction(describe_paths(paths))
            action.setToolTip(item)
            action.triggered.connect(functools.partial(self._chosen, paths))
        if not items:
            self.addAction("(none)").setEnabled(False)

    def _chosen(self, paths: list[str], _checked: bool = False) -> None:
        self.sigOpenRequested.emit(paths)
