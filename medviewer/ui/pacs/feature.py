"""`PacsFeature`: the PACS actions of one window; the shell puts them in its menus.

servers_action (File ▸ PACS Servers…), query_action (File ▸ Query/Retrieve…),
send_annotations_action (Annotate ▸ Send to PACS…) and send_ai_action (AI ▸ Send Results to
PACS…). One dialog of each kind per window, raised again when already open. `receiver`: the
window's optional C-STORE receiver (ui/pacs/receiving.py), started here when the settings say
so and stopped by `shutdown()` when the window closes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDialog

from medviewer.ui.common.guard import guarded
from medviewer.ui.common.host import Host
from medviewer.ui.pacs.receiving import ReceiverService

if TYPE_CHECKING:
    from medviewer.ui.document.study import StudyDocument


class PacsFeature(QObject):
    """PACS dialogs of the window `host`, on its open study `document`; `client`, `servers`
    and `store` replace medviewer.pacs.client / .servers / LocalStore() (tests)."""

    def __init__(self, host: Host, document: StudyDocument, *, client: Any = None,
                 servers: Any = None, store: Any = None) -> None:
        super().__init__(host.dialog_parent())
        self.host, self.document = host, document
        self.backends = {"client": client, "servers": servers}
        self.store = store
        parent = host.dialog_parent()
        self.servers_action = QAction("PACS &Servers\u2026", parent)
        self.servers_action.setToolTip("The PACS (DICOM network or DICOMweb) MedViewer talks to")
        self.query_action = QAction("&Query/Retrieve\u2026", parent)
        self.query_action.setToolTip("Search a PACS and retrieve studies into the local store")
        self.send_annotations_action = QAction("Send to &PACS\u2026", parent)
        self.send_annotations_action.setToolTip("Store this series' saved SEG and SR on a PACS")
        self.send_ai_action = QAction("Send Results to &PACS\u2026", parent)
        self.send_ai_action.setToolTip("Store the AI's results on a PACS: segmentations as DICOM "
                                       "SEG, detections and class verdicts as DICOM SR")
        for action, slot in ((self.servers_action, self.open_servers),
                             (self.query_action, self.open_query),
                             (self.send_annotations_action, self.send_annotations),
                             (self.send_ai_action, self.send_ai_results)):
            action.triggered.connect(lambda _checked=False, slot=slot: slot())
        self.dialogs: dict[str, QDialog] = {}
        self.opened: list[str] = []  # PACS study folders listed in the browser (retrieved, pushed)
        self.receiver = ReceiverService(host, self._local_store, self.opened)
        self.receiver.start_from_settings()

    def _local_store(self) -> Any:
        if self.store is None:
            from medviewer.pacs.store import LocalStore

            self.store = LocalStore()
        return self.store

    def shutdown(self) -> None:
        """The window closes: the receiver stops (no thread of it is left)."""
        self.receiver.stop()

    def show_error(self, text: str) -> None:  # what `guarded` calls
        self.host.show_error(text)

    def _show(self, key: str, make: Any) -> Any:
        dialog = self.dialogs.get(key)
        if dialog is None or not _alive(dialog):
            dialog = self.dialogs[key] = make()
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()
        return dialog

    @guarded
    def open_servers(self) -> Any:
        from medviewer.ui.pacs.servers_dialog import ServersDialog

        def make() -> ServersDialog:
            dialog = ServersDialog(self.host, **self.backends, receiver=self.receiver)
            dialog.sigSaved.connect(self._servers_changed)
            return dialog

        return self._show("servers", make)

    def _servers_changed(self) -> None:
        for key in ("query", "send"):
            dialog = self.dialogs.get(key)
            if dialog is not None and _alive(dialog):
                dialog.server.reload()

    @guarded
    def open_query(self) -> Any:
        from medviewer.ui.pacs.query_dialog import QueryDialog

        dialog = self._show("query", lambda: QueryDialog(
            self.host, **self.backends, store=self.store, receiver=self.receiver.running,
            opened=self.opened))
        dialog.reload_servers()
        return dialog

    @guarded
    def send_annotations(self) -> Any:
        """The saved SEG and SR of the open series, after choosing the server."""
        from medviewer.core.annotations.seg import AnnotationError
        from medviewer.ui.pacs.send import SendDialog, annotation_files

        volume = self.document.volume
        if volume is None:
            self.host.show_error("Open a series first: Send to PACS sends its saved "
                                 "annotations.")
            return None
        try:
            files = annotation_files(volume)
        except AnnotationError as exc:  # e.g. a series not read from files: no workspace
            self.host.show_error(exc.reason)
            return None
        if not files:
            self.host.show_error("This series has no saved annotations yet: save them "
                                 "(Annotate \u25b8 Save Annotations) and send again.")
            return None
        dialog = self._new("send", lambda: SendDialog(
            self.host, "Send Annotations to PACS", files, **self.backends))
        annotation = getattr(self.document, "annotation", None)
        if annotation is not None and annotation.dirty and dialog.server.count():
            dialog.status.setText("This series has unsaved changes: these files are as last "
                                  "saved. Save first (Ctrl+S) to send the changes too.")
        return dialog

    @guarded
    def send_ai_results(self) -> Any:
        """The AI's results as DICOM SEG / SR (written in the worker), then sent."""
        from medviewer.core.demo import data_dir
        from medviewer.ui.pacs.send import OUTBOX, SendDialog, has_ai_results, write_ai_results

        output, volume = self.document.ai_output, self.document.volume
        if volume is None or output is None or not has_ai_results(output):
            self.host.show_error("There is no AI result on this series to send: run a model "
                                 "first.")
            return None
        series = getattr(volume.series, "series_instance_uid", "") or "series"
        folder = data_dir() / OUTBOX / series

        def prepare(_ctx: Any) -> list:
            return write_ai_results(output, volume, folder)

        return self._new("send", lambda: SendDialog(
            self.host, "Send AI Results to PACS", [], prepare=prepare, keep=folder,
            **self.backends))

    def _new(self, key: str, make: Any) -> Any:
        """A fresh dialog (its files are this moment's), replacing an open one of the kind."""
        old = self.dialogs.pop(key, None)
        if old is not None and _alive(old):
            old.close()
        return self._show(key, make)


def _alive(widget: Any) -> bool:
    try:
        widget.objectName()
    except RuntimeError:  # "Internal C++ object already deleted"
        return False
    return True
