"""MedViewer's own C-STORE receiver in the window: a PACS pushes studies to it.

Off by default; its AE title and port are the window's settings (`pacs/receiver/*`), set in
File ▸ PACS Servers…. When on, a medviewer.pacs.receiver.Receiver stores what arrives in the
local store, and the study browser lists each pushed study from its first instance on (the
PACS study folders are listed again, at most every LIST_DELAY_MS while instances arrive, and
once after the last). It stops when the window closes. A port already in use is a sentence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

ENABLED_KEY = "pacs/receiver/enabled"
AE_KEY = "pacs/receiver/ae_title"
PORT_KEY = "pacs/receiver/port"
DEFAULT_AE, DEFAULT_PORT = "MEDVIEWER", 11112
LIST_DELAY_MS = 400


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


class ReceiverService(QObject):
    """The window's receiver: `apply(enabled, ae_title, port)` saves and (re)starts it."""

    sigArrived = Signal(str)  # a stored instance's path (emitted on pynetdicom's thread)
    sigChanged = Signal(str)  # the sentence saying what the receiver does now

    def __init__(self, host: Any, store: Any, opened: list[str]) -> None:
        """`store`: () -> the LocalStore; `opened`: the PACS study folders listed in the
        window (shared with Query/Retrieve)."""
        super().__init__(host.dialog_parent())
        self.host, self._store, self.opened = host, store, opened
        self.receiver: Any = None
        self.state = "MedViewer's receiver is off."
        self._list = QTimer(self)
        self._list.setSingleShot(True)
        self._list.setInterval(LIST_DELAY_MS)
        self._list.timeout.connect(self._list_studies)
        self.sigArrived.connect(self._arrived)  # queued: it comes from another thread

    def settings(self) -> tuple[bool, str, int]:
        """(enabled, AE title, port) as saved; off by default."""
        s = self.host.settings
        try:
            port = int(s.value(PORT_KEY, DEFAULT_PORT))
        except (TypeError, ValueError):
            port = DEFAULT_PORT
        return (_truthy(s.value(ENABLED_KEY, False)),
                str(s.value(AE_KEY, DEFAULT_AE) or DEFAULT_AE), port)

    def running(self) -> Any:
        """The running Receiver, or None."""
        return self.receiver if self.receiver is not None and self.receiver.running else None

    def start_from_settings(self) -> str:
        enabled, ae_title, port = self.settings()
        return self._start(ae_title, port) if enabled else self.state

    def apply(self, enabled: bool, ae_title: str, port: int) -> str:
        """Save the settings, then stop the receiver and start it again when enabled; the
        sentence says what it does now (or why it could not start)."""
        ae_title = ae_title.strip() or DEFAULT_AE
        if len(ae_title) > 16:
            return self._say("An AE title has at most 16 characters; choose a shorter one.")
        s = self.host.settings
        s.setValue(ENABLED_KEY, bool(enabled))
        s.setValue(AE_KEY, ae_title)
        s.setValue(PORT_KEY, int(port))
        s.sync()
        self.stop()
        if not enabled:
            return self._say("MedViewer's receiver is off.")
        return self._start(ae_title, int(port))

    def _start(self, ae_title: str, port: int) -> str:
        from medviewer.pacs.errors import PacsError
        from medviewer.pacs.receiver import Receiver

        self.stop()
        receiver = Receiver(self._store(), ae_title, port,
                            on_received=lambda path: self.sigArrived.emit(str(path)))
        try:
            receiver.start()
        except PacsError as exc:
            return self._say(str(exc))
        self.receiver = receiver
        return self._say(f"MedViewer's receiver is listening as {ae_title} on port {port}; "
                         "studies a PACS sends there appear in the study browser.")

    def stop(self) -> None:
        receiver, self.receiver = self.receiver, None
        if receiver is not None:
            receiver.stop()
            self.state = "MedViewer's receiver is off."

    def _say(self, text: str) -> str:
        self.state = text
        self.host.set_status(text)
        self.sigChanged.emit(text)
        return text

    def _arrived(self, path: str) -> None:
        folder = str(Path(path).parent.parent)  # <store>/<study>/<series>/<instance>.dcm
        if folder not in self.opened:
            self.opened.append(folder)
        if not self._list.isActive():
            self._list.start()

    def _list_studies(self) -> None:
        if self.receiver is None or not self.opened:
            return
        self.host.open_path(self.opened[0] if len(self.opened) == 1 else list(self.opened))
