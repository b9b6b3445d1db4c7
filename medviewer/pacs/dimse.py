"""DICOM networking (DIMSE) through pynetdicom: associations, echo, find and send (C-GET and
C-MOVE are in medviewer.pacs.dimse_retrieve).

`server` is a medviewer.pacs.servers.Server (any object with ae_title, host, port, calling_ae
and receive_port). Every failure is a PacsError whose str is a sentence for the user.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import date
from pathlib import Path

from pydicom.dataset import Dataset

from medviewer.pacs.errors import PacsError, PacsTransient
from medviewer.pacs.models import (
    SendResult,
    SeriesHit,
    StudyHit,
)

CONNECT_TIMEOUT = 5.0  # TCP connect
ACSE_TIMEOUT = 10.0  # association request -> answer
DIMSE_TIMEOUT = 30.0  # each DIMSE answer (a pending C-GET / C-MOVE response included)
NETWORK_TIMEOUT = 60.0  # silence on an established association

FIND = "1.2.840.10008.5.1.4.1.2.2.1"  # Study Root Query/Retrieve - FIND
GET = "1.2.840.10008.5.1.4.1.2.2.3"  # Study Root Query/Retrieve - GET
MOVE = "1.2.840.10008.5.1.4.1.2.2.2"  # Study Root Query/Retrieve - MOVE
VERIFICATION = "1.2.840.10008.1.1"
WARNING_STATUSES = {0xB000, 0xB006, 0xB007, 0x0107, 0x0116}

_REJECT_REASONS = {
    # (source, reason) of an A-ASSOCIATE-RJ, PS3.8 9.3.4
    (1, 2): "does not support this application context",
    (1, 3): "does not know MedViewer's AE title {calling!r} (ask its administrator to add "
            "it, or set MedViewer's AE title in the server's settings)",
    (1, 7): "is not called {called!r}: check the PACS's AE title in the server's settings",
    (2, 2): "does not support this protocol version",
    (3, 1): "is busy (too many connections); try again in a moment",
    (3, 2): "is temporarily unable to accept connections; try again in a moment",
}


def _where(server) -> str:
    return f"{server.ae_title} at {server.host}:{server.port}"


def _ae(server):
    from pynetdicom import AE

    ae = AE(ae_title=server.calling_ae or "MEDVIEWER")
    ae.connection_timeout = CONNECT_TIMEOUT
    ae.acse_timeout = ACSE_TIMEOUT
    ae.dimse_timeout = DIMSE_TIMEOUT
    ae.network_timeout = NETWORK_TIMEOUT
    return ae


def _associate(server, ae, *, ext_neg=None, handlers=()):
    """An established association with `server`, or PacsError saying why there is none."""
    from pynetdicom import evt

    opened = threading.Event()
    started = time.monotonic()
    assoc = ae.associate(server.host, int(server.port), ae_title=server.ae_title,
                         ext_neg=ext_neg or None,
                         evt_handlers=[(evt.EVT_CONN_OPEN, lambda _e: opened.set()),
                                       *handlers])
    if assoc.is_established:
        return assoc
    where = _where(server)
    if assoc.is_rejected:
        rj = assoc.acceptor.primitive
        source, reason = getattr(rj, "result_source", None), getattr(rj, "diagnostic", None)
        text = _REJECT_REASONS.get((source, reason), "refused the connection "
                                   f"(source {source}, reason {reason})")
        text = text.format(calling=server.calling_ae, called=server.ae_title)
        busy = source == 3  # the service-provider rejections: busy / temporarily unable
        raise (PacsTransient if busy else PacsError)(f"The PACS {where} {text}.")
    if not opened.is_set():
        if time.monotonic() - started >= CONNECT_TIMEOUT - 0.5:
            raise PacsTransient(f"The PACS {where} did not answer within {CONNECT_TIMEOUT:g} s; "
                            "check the host and port, and that no firewall blocks them.")
        raise PacsError(f"Could not connect to the PACS {where}: nothing accepts connections "
                        "there. Check the host and port, and that the PACS is running.")
    if time.monotonic() - started >= ACSE_TIMEOUT - 0.5:
        raise PacsTransient(f"The PACS {where} accepted the connection but did not answer the "
                        f"association request within {ACSE_TIMEOUT:g} s; check that this "
                        "port is its DICOM port, or try again later.")
    raise PacsError(f"The PACS {where} closed the connection during the association request; "
                    "check the port and the AE titles in the server's settings.")


def _accepted_or_fail(assoc, server, sop_class: str, what: str) -> None:
    if not any(cx.abstract_syntax == sop_class for cx in assoc.accepted_contexts):
        assoc.release()
        raise PacsError(f"The PACS {_where(server)} does not offer {what}.")


def echo(server) -> str:
    """C-ECHO; a sentence with the round-trip time, or PacsError."""
    ae = _ae(server)
    ae.add_requested_context(VERIFICATION)
    started = time.monotonic()
    assoc = _associate(server, ae)
    try:
        _accepted_or_fail(assoc, server, VERIFICATION, "verification (C-ECHO)")
        status = assoc.send_c_echo()
    finally:
        _close(assoc)
    ms = (time.monotonic() - started) * 1000
    code = getattr(status, "Status", None)
    if code != 0x0000:
        raise PacsError(_no_answer(server, "the echo") if code is None else
                        f"The PACS {_where(server)} answered the echo with status 0x{code:04X}.")
    return f"{server.ae_title} at {server.host}:{server.port} answered the echo in {ms:.0f} ms."


def _close(assoc) -> None:
    if assoc.is_established:
        assoc.release()


def _no_answer(server, what: str) -> str:
    return (f"The PACS {_where(server)} stopped answering during {what} (timeout or dropped "
            "connection); try again: what has fully arrived is kept.")


def _date(value) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    return str(value).replace("-", "")


def _find(server, identifier: Dataset, what: str) -> list[Dataset]:
    ae = _ae(server)
    ae.add_requested_context(FIND)
    assoc = _associate(server, ae)
    answers = []
    try:
        _accepted_or_fail(assoc, server, FIND, "study-root queries (C-FIND)")
        for status, ds in assoc.send_c_find(identifier, FIND):
            code = getattr(status, "Status", None)
            if code is None:
                raise PacsTransient(_no_answer(server, what))
            if code in (0xFF00, 0xFF01):
                if ds is not None:
                    answers.append(ds)
            elif code != 0x0000:
                raise PacsError(f"The PACS {_where(server)} refused {what} (status "
                                f"0x{code:04X}); check the search values.")
    finally:
        _close(assoc)
    return answers


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value)


def find_studies(server, *, patient_name: str = "", patient_id: str = "", accession: str = "",
                 date_from=None, date_to=None, modality: str = "",
                 study_uid: str = "") -> list[StudyHit]:
    """C-FIND at study level. patient_name may hold * and ? wildcards; dates are date objects
    or YYYYMMDD / YYYY-MM-DD strings, either end open."""
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = study_uid
    q.PatientName = patient_name
    q.PatientID = patient_id
    q.AccessionNumber = accession
    start, end = _date(date_from), _date(date_to)
    q.StudyDate = f"{start}-{end}" if (start or end) and start != end else start
    q.ModalitiesInStudy = modality
    q.StudyDescription = ""
    q.NumberOfStudyRelatedSeries = None
    q.NumberOfStudyRelatedInstances = None
    hits = []
    for ds in _find(server, q, "the study search"):
        mods = ds.get("ModalitiesInStudy") or ()
        mods = tuple(str(m) for m in ([mods] if isinstance(mods, str) else mods) if m)
        hits.append(StudyHit(study_uid=_text(ds, "StudyInstanceUID"),
                             patient_name=_text(ds, "PatientName"),
                             patient_id=_text(ds, "PatientID"),
                             study_date=_text(ds, "StudyDate"),
                             accession=_text(ds, "AccessionNumber"), modalities=mods,
                             description=_text(ds, "StudyDescription"),
                             series_count=_int(ds.get("NumberOfStudyRelatedSeries")),
                             instance_count=_int(ds.get("NumberOfStudyRelatedInstances"))))
    return hits


def find_series(server, study_uid: str) -> list[SeriesHit]:
    """C-FIND at series level within one study, in series number order."""
    q = Dataset()
    q.QueryRetrieveLevel = "SERIES"
    q.StudyInstanceUID = study_uid
    q.SeriesInstanceUID = ""
    q.Modality = ""
    q.SeriesNumber = None
    q.SeriesDescription = ""
    q.NumberOfSeriesRelatedInstances = None
    hits = [SeriesHit(series_uid=_text(ds, "SeriesInstanceUID"), modality=_text(ds, "Modality"),
                      number=_int(ds.get("SeriesNumber")),
                      description=_text(ds, "SeriesDescription"),
                      instance_count=_int(ds.get("NumberOfSeriesRelatedInstances")))
            for ds in _find(server, q, "the series search")]
    return sorted(hits, key=lambda h: (h.number is None, h.number or 0, h.series_uid))


def _instances(server, study_uid: str, series_uid: str | None) -> list[tuple[str, str]]:
    """(SOPInstanceUID, SOPClassUID) of every instance of the study or series."""
    q = Dataset()
    q.QueryRetrieveLevel = "IMAGE"
    q.StudyInstanceUID = study_uid
    q.SeriesInstanceUID = series_uid or ""
    q.SOPInstanceUID = ""
    q.SOPClassUID = ""
    return [(_text(ds, "SOPInstanceUID"), _text(ds, "SOPClassUID"))
            for ds in _find(server, q, "the instance list")]


def send(server, paths: Iterable[Path | str]) -> SendResult:
    """C-STORE files to `server`; what it accepted and, per refused file, why."""
    import pydicom

    result = SendResult()
    datasets = []
    for path in paths:
        try:
            datasets.append((str(path), pydicom.dcmread(path)))
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a row, not a crash
            result.failed.append((str(path), f"{path} is not a readable DICOM file ({exc})."))
    if not datasets:
        return result
    ae = _ae(server)
    contexts = sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
                       for _, ds in datasets})
    for cls in sorted({c for c, _ in contexts})[:128]:
        ae.add_requested_context(cls, sorted({t for c, t in contexts if c == cls} |
                                             {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2"}))
    assoc = _associate(server, ae)
    try:
        for k, (path, ds) in enumerate(datasets):
            if not assoc.is_established:
                result.failed.extend((p, _no_answer(server, "the send")) for p, _ in datasets[k:])
                break
            try:
                status = assoc.send_c_store(ds)
            except ValueError as exc:  # no accepted context for this SOP class / syntax
                result.failed.append((path, f"The PACS {_where(server)} does not accept this "
                                            f"kind of object ({exc})."))
                continue
            code = getattr(status, "Status", None)
            if code is None:
                result.failed.append((path, _no_answer(server, "the send")))
            elif code == 0x0000 or code in WARNING_STATUSES:
                result.accepted.append(str(ds.SOPInstanceUID))
            else:
                result.failed.append((path, f"The PACS {_where(server)} refused it (status "
                                            f"0x{code:04X}); the local file is kept."))
    finally:
        _close(assoc)
    return result


_TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.1.99",  # Deflated
]
