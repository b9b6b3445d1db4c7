"""What the PACS dialogs share: the backend modules (injectable) and a server chooser."""

from __future__ import annotations

import importlib
from typing import Any

from PySide6.QtWidgets import QComboBox, QInputDialog, QLineEdit, QWidget


def backend(module: Any, name: str) -> Any:
    """`module`, or medviewer.pacs.<name> when None (imported on first use, not at start-up)."""
    return module if module is not None else importlib.import_module(f"medviewer.pacs.{name}")


def error_text(exc: BaseException) -> str:
    """The sentence to show: the PACS layer's or the core's own, or what happened."""
    from medviewer.core.annotations.seg import AnnotationError
    from medviewer.core.dicom.errors import DicomError
    from medviewer.pacs.errors import PacsError

    if isinstance(exc, AnnotationError | DicomError):
        return exc.reason
    if isinstance(exc, PacsError | ValueError):
        return str(exc)
    return f"Unexpected error: {exc}"


class ServerCombo(QComboBox):
    """The configured servers by name; `server()` is the chosen Server (None without any)."""

    def __init__(self, servers: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._servers_module = servers
        self._servers: list[Any] = []
        self.reload()

    def reload(self) -> None:
        current = self.currentText()
        self._servers = list(self._servers_module.load_servers())
        self.clear()
        self.addItems([s.name for s in self._servers])
        if current:
            index = self.findText(current)
            if index >= 0:
                self.setCurrentIndex(index)

    def server(self) -> Any:
        index = self.currentIndex()
        return self._servers[index] if 0 <= index < len(self._servers) else None


def have_secret(parent: QWidget, servers: Any, server: Any) -> bool:
    """Whether `server` can be asked: no authentication, a secret known (keyring or this run),
    or one the user types now (kept by `servers.set_secret`: asked once per run without a
    keyring). False when the user cancels the question."""
    if server.auth == "none" or servers.get_secret(server) is not None:
        return True
    what = "token" if server.auth == "bearer" else f"password of '{server.username}'"
    text, ok = QInputDialog.getText(parent, "PACS sign-in",
                                    f"The {what} for '{server.name}':",
                                    QLineEdit.EchoMode.Password)
    if not ok or not text:
        return False
    servers.set_secret(server, text)
    return True


def no_secret(server: Any) -> str:
    what = "token" if server.auth == "bearer" else "password"
    return (f"'{server.name}' needs a {what}: type it when asked, or set it in "
            "File \u25b8 PACS Servers\u2026")
