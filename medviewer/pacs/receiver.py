"""MedViewer's own C-STORE receiver (SCP): a PACS pushes instances, or answers a C-MOVE.

Each instance is written atomically into a LocalStore. What cannot be stored is refused with
the DIMSE status that says why: an instance without the UIDs that place it 0xC000 ("cannot
understand"), a full or read-only disk 0xA700 ("out of resources"); SOP classes it does not
know are refused at association time by pynetdicom.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from medviewer.pacs.errors import PacsError
from medviewer.pacs.store import LocalStore


class Receiver:
    """A C-STORE SCP for `ae_title` on `port` (all interfaces unless `host` is given)."""

    def __init__(self, store: LocalStore, ae_title: str = "MEDVIEWER", port: int = 11112,
                 host: str = "", on_received: Callable[[Path], None] | None = None) -> None:
        self.store, self.ae_title, self.port, self.host = store, ae_title, int(port), host
        self.listeners: list = []  # running C-MOVEs (dimse_retrieve._Retrieval) that want the files
        self.received: list = []  # paths stored while no C-MOVE was listening
        self.on_received = on_received  # called (on pynetdicom's thread) with each such path
        self._server = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        from pynetdicom import AE, AllStoragePresentationContexts, evt

        if self._server is not None:
            return
        ae = AE(ae_title=self.ae_title)
        ae.maximum_associations = 8
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, _ANY_SYNTAX)
        ae.add_supported_context("1.2.840.10008.1.1")  # verification: a PACS may echo us
        try:
            self._server = ae.start_server((self.host, self.port), block=False,
                                           evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        except OSError as exc:
            raise PacsError(f"MedViewer's receiver cannot listen on port {self.port} "
                            f"({exc.strerror or exc}); choose another receive port in the "
                            "PACS settings, or close the program using it.") from exc

    def stop(self) -> None:
        """Stop listening and end the associations in progress (an instance half-received is
        not stored): no thread of this receiver is left when it returns."""
        server, self._server = self._server, None
        if server is None:
            return
        associations = server.active_associations
        server.shutdown()
        for assoc in associations:
            assoc.abort()
        for assoc in associations:
            assoc.join(timeout=5)

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _on_store(self, event) -> int:
        with self._lock:
            listener = self.listeners[-1] if self.listeners else None
        if listener is not None:
            return listener.on_store(event)
        try:
            ds = event.dataset
            if not all(str(ds.get(k, "") or "").strip() for k in
                       ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")):
                return 0xC000  # cannot understand: nothing to place it by
            path = self.store.add(event.encoded_dataset())
            self.received.append(path)
        except PacsError:
            return 0xA700  # out of resources (the disk refused the write)
        except Exception:  # noqa: BLE001 - an undecodable data set is refused, not a crash
            return 0xC000
        if self.on_received is not None:
            try:
                self.on_received(path)
            except Exception:  # noqa: BLE001 - the instance is stored; a listener's fault is not the sender's
                pass
        return 0x0000


_ANY_SYNTAX = [
    "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.5",
]
