"""The one PACS API the viewer and the command line use: it dispatches on `server.kind` to
DICOM networking (medviewer.pacs.dimse and dimse_retrieve, pynetdicom) or DICOMweb
(medviewer.pacs.web).

Every function raises PacsError (a sentence) on failure; a cancelled retrieve raises
PacsCancelled. Retrieved instances go to a LocalStore (default: the user data folder's).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path

from medviewer.pacs.errors import PacsError
from medviewer.pacs.models import (
    Cancelled,
    Progress,
    RetrieveResult,
    SendResult,
    SeriesHit,
    StudyHit,
)
from medviewer.pacs.servers import Server

METHODS = ("get", "move", "wado")


def _backend(server: Server):
    if server.kind == "dicomweb":
        from medviewer.pacs import web

        return web
    if server.kind == "dimse":
        from medviewer.pacs import dimse

        return dimse
    raise PacsError(f"Server {server.name!r} has an unknown kind {server.kind!r}; choose DICOM "
                    "networking (dimse) or DICOMweb in PACS Servers.")


def echo(server: Server) -> str:
    """C-ECHO or a QIDO-RS probe; a sentence with the round-trip time."""
    return _backend(server).echo(server)


def find_studies(server: Server, *, patient_name: str = "", patient_id: str = "",
                 accession: str = "", date_from: date | str | None = None,
                 date_to: date | str | None = None, modality: str = "") -> list[StudyHit]:
    """Studies matching every field given (patient_name may hold * and ? wildcards)."""
    return _backend(server).find_studies(server, patient_name=patient_name,
                                         patient_id=patient_id, accession=accession,
                                         date_from=date_from, date_to=date_to,
                                         modality=modality)


def find_series(server: Server, study_uid: str) -> list[SeriesHit]:
    return _backend(server).find_series(server, study_uid)


def retrieve(server: Server, study_uid: str, series_uid: str | None = None, *,
             method: str = "get", store=None, progress: Progress | None = None,
             cancelled: Cancelled | None = None, receiver=None) -> RetrieveResult:
    """Fetch a study (or one series) into `store`; instances it has are not fetched again.

    method: "get" (C-GET, preferred), "move" (C-MOVE to MedViewer's own receiver) or "wado"
    (WADO-RS). A DICOMweb server always uses WADO-RS, so "get" means "wado" there.
    receiver: MedViewer's running C-STORE receiver (medviewer.pacs.receiver.Receiver), if
    any: a C-MOVE to the port it listens on uses it instead of starting a second one there.
    """
    if method not in METHODS:
        raise PacsError(f"Unknown retrieve method {method!r}; use get, move or wado.")
    if store is None:
        from medviewer.pacs.store import LocalStore

        store = LocalStore()
    backend = _backend(server)
    kw = dict(store=store, progress=progress, cancelled=cancelled)
    if server.kind == "dicomweb":
        if method == "move":
            raise PacsError(f"Server {server.name!r} is a DICOMweb endpoint, which has no "
                            "C-MOVE; retrieve with WADO-RS (get or wado) instead.")
        return backend.retrieve(server, study_uid, series_uid, **kw)
    if method == "wado":
        raise PacsError(f"Server {server.name!r} is a DICOM networking peer; WADO-RS needs a "
                        "DICOMweb server entry. Retrieve with get or move instead.")
    from medviewer.pacs import dimse_retrieve

    if method == "get":
        return dimse_retrieve.get(server, study_uid, series_uid, **kw)
    if receiver is not None and receiver.running and receiver.port == int(server.receive_port):
        return dimse_retrieve.move(server, study_uid, series_uid, receiver=receiver, **kw)
    return dimse_retrieve.move(server, study_uid, series_uid, **kw)


def send(server: Server, paths: Iterable[str | Path]) -> SendResult:
    """C-STORE or STOW-RS; the result lists what the server accepted and what it refused."""
    return _backend(server).send(server, [Path(p) for p in paths])
