"""DICOMweb (QIDO-RS search, WADO-RS retrieve, STOW-RS send) through dicomweb-client.

The same functions as medviewer.pacs.dimse, for servers of kind "dicomweb". Two things the
library does not do for us:
- Wildcards go to the server as typed (`Name*`): dicomweb-client percent-encodes them
  (%2A), and Orthanc's DICOMweb plugin (1.10's) does not decode that, so a wildcard search
  silently finds nothing. `_LiteralWildcards` puts them back in each prepared request's query.
  A caret cannot be sent raw (urllib3 encodes it again), so a name with `^` is asked with `?`
  in its place and the answers are filtered here (`_caretless`).
- Every failure (refused connection, timeout, TLS, 401/403, 4xx/5xx, a non-DICOM answer)
  becomes a PacsError whose text says what happened and what to do.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from medviewer.pacs.errors import PacsCancelled, PacsError, PacsTransient
from medviewer.pacs.models import (
    Cancelled,
    Progress,
    RetrieveResult,
    SendResult,
    SeriesHit,
    StudyHit,
)
from medviewer.pacs.servers import Server, get_secret

TIMEOUT_S = 20.0
ANY_SYNTAX = (("application/dicom", "*"),)  # as stored: no transcoding on the server
STUDY_FIELDS = ("StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                "NumberOfStudyRelatedInstances", "AccessionNumber")
SERIES_FIELDS = ("SeriesDescription", "SeriesNumber", "Modality",
                 "NumberOfSeriesRelatedInstances")
_LITERAL = {"%2A": "*", "%2a": "*", "%5E": "^", "%5e": "^", "%3F": "?", "%3f": "?"}


def _session_class():
    import requests

    class _LiteralWildcards(requests.Session):
        def send(self, request, **kwargs):
            base, sep, query = request.url.partition("?")
            if sep:
                for encoded, char in _LITERAL.items():
                    query = query.replace(encoded, char)
                request.url = base + sep + query
            return super().send(request, **kwargs)

        def merge_environment_settings(self, url, proxies, stream, verify, cert):
            # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's
            # verify=False (psf/requests#3829): the server's own setting wins here
            return super().merge_environment_settings(
                url, proxies, stream, self.verify if verify is None else verify, cert)

    return _LiteralWildcards


def connect(server: Server, timeout: float | None = None):
    """A DICOMwebClient for `server`, with its authentication and TLS settings."""
    from dicomweb_client.api import DICOMwebClient

    if server.kind != "dicomweb":
        raise PacsError(f"Server {server.name!r} is a DIMSE peer, not a DICOMweb endpoint.")
    if (problem := server.problem()) is not None:
        raise PacsError(problem)
    session = _session_class()()
    session.verify = bool(server.verify_tls)
    headers = {}
    if server.auth in ("basic", "bearer"):
        secret = get_secret(server)
        if secret is None:
            what = "password" if server.auth == "basic" else "token"
            raise PacsError(f"Server {server.name!r} needs a {what}; enter it in File > PACS "
                            "Servers... (or set MEDVIEWER_PACS_SECRET for the command line).")
        if server.auth == "basic":
            session.auth = (server.username, secret)
        else:
            headers["Authorization"] = f"Bearer {secret}"
    client = DICOMwebClient(server.base_url.rstrip("/"), session=session, headers=headers,
                            qido_url_prefix=server.qido_path.strip("/") or None,
                            wado_url_prefix=server.wado_path.strip("/") or None,
                            stow_url_prefix=server.stow_path.strip("/") or None,
                            timeout=TIMEOUT_S if timeout is None else timeout)
    client.set_http_retry_params(retry=False)  # a failure is reported at once, not in 30 s
    return client


@contextmanager
def _sentences(server: Server, doing: str):
    """Turn requests/HTTP/decoding failures inside the block into a PacsError sentence."""
    import requests

    where = f"the DICOMweb server {server.name!r} ({server.base_url})"
    try:
        yield
    except PacsError:
        raise
    except requests.exceptions.SSLError as exc:
        raise PacsError(f"Could not {doing}: the TLS certificate of {where} could not be "
                        "verified; install its CA certificate, or turn off TLS verification for "
                        "this server only if you trust the network.") from exc
    except requests.exceptions.Timeout as exc:
        raise PacsTransient(f"Could not {doing}: {where} did not answer in time; check that it "
                        "is running and not overloaded, then try again.") from exc
    except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
        raise PacsTransient(f"Could not {doing}: {where} cannot be reached or dropped the "
                        "connection; check the URL and that the server is running, then try "
                        "again (what has fully arrived is kept).") from exc
    except requests.exceptions.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else 0
        reason = exc.response.reason if exc.response is not None else ""
        if code in (401, 403):
            hint = "refused the credentials; check the user name and password or token"
        elif code == 404:
            hint = "has no such resource; check the base URL and the QIDO/WADO/STOW paths"
        elif code < 500:
            hint = "refused the request"
        else:
            hint = "failed on its side; try again later or ask its administrator"
        raise PacsError(f"Could not {doing}: {where} answered HTTP {code} {reason}".rstrip()
                        + f" and {hint}.") from exc
    except (requests.exceptions.RequestException, ValueError, KeyError, OSError) as exc:
        raise PacsError(f"Could not {doing}: {where} sent an answer MedViewer cannot read "
                        f"({exc}); check that the URL points at a DICOMweb service.") from exc


def echo(server: Server) -> str:
    """A QIDO-RS probe (one study asked for), answered as a sentence with its time."""
    client = connect(server)
    start = time.perf_counter()
    with _sentences(server, "verify the connection"):
        client.search_for_studies(limit=1)
    ms = (time.perf_counter() - start) * 1000
    return f"The DICOMweb server {server.name!r} answered a study search in {ms:.0f} ms."


def _value(item: dict, keyword: str):
    from dicomweb_client.api import DICOMwebClient

    values = item.get(DICOMwebClient.lookup_tag(keyword), {}).get("Value") or []
    return values


def _text(item: dict, keyword: str) -> str:
    values = _value(item, keyword)
    if not values:
        return ""
    first = values[0]
    if isinstance(first, dict):  # a person name
        return str(first.get("Alphabetic", ""))
    return str(first)


def _int(item: dict, keyword: str) -> int | None:
    text = _text(item, keyword)
    try:
        return int(float(text)) if text else None
    except ValueError:
        return None


def _dicom_date(value: date | str | None) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    return str(value).replace("-", "")


def study_filters(*, patient_name="", patient_id="", accession="", date_from=None,
                  date_to=None, modality="") -> dict[str, str]:
    """The QIDO/C-FIND matching keys for the Query/Retrieve form's fields."""
    filters = {}
    if patient_name:
        filters["PatientName"] = patient_name
    if patient_id:
        filters["PatientID"] = patient_id
    if accession:
        filters["AccessionNumber"] = accession
    if modality:
        filters["ModalitiesInStudy"] = modality
    start, end = _dicom_date(date_from), _dicom_date(date_to)
    if start or end:
        filters["StudyDate"] = start if start == end else f"{start}-{end}"
    return filters


def _caretless(filters: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """urllib3 percent-encodes a caret whatever we do, and this Orthanc does not decode %5E:
    the caret goes out as the one-character wildcard `?`, and the answers are filtered here
    against the name as typed (DICOM matching: case-insensitive, * and ? wildcards)."""
    name = filters.get("PatientName", "")
    if "^" not in name:
        return filters, None
    return {**filters, "PatientName": name.replace("^", "?")}, name


def _name_matches(name: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(name.upper(), pattern.upper().replace("[", "[[]"))


def find_studies(server: Server, **query) -> list[StudyHit]:
    client = connect(server)
    filters, caret_name = _caretless(study_filters(**query))
    with _sentences(server, "search for studies"):
        found = client.search_for_studies(search_filters=filters, fields=list(STUDY_FIELDS))
    if caret_name is not None:
        found = [i for i in found if _name_matches(_text(i, "PatientName"), caret_name)]
    return [StudyHit(study_uid=_text(i, "StudyInstanceUID"),
                     patient_name=_text(i, "PatientName"), patient_id=_text(i, "PatientID"),
                     study_date=_text(i, "StudyDate"), accession=_text(i, "AccessionNumber"),
                     modalities=tuple(str(m) for m in _value(i, "ModalitiesInStudy")),
                     description=_text(i, "StudyDescription"),
                     series_count=_int(i, "NumberOfStudyRelatedSeries"),
                     instance_count=_int(i, "NumberOfStudyRelatedInstances"))
            for i in found]


def find_series(server: Server, study_uid: str) -> list[SeriesHit]:
    client = connect(server)
    with _sentences(server, "list the study's series"):
        found = client.search_for_series(study_uid, fields=list(SERIES_FIELDS))
    hits = [SeriesHit(series_uid=_text(i, "SeriesInstanceUID"), modality=_text(i, "Modality"),
                      number=_int(i, "SeriesNumber"), description=_text(i, "SeriesDescription"),
                      instance_count=_int(i, "NumberOfSeriesRelatedInstances"))
            for i in found]
    return sorted(hits, key=lambda h: (h.number is None, h.number or 0, h.series_uid))


def _instances(client, study_uid: str, series_uid: str | None) -> list[tuple[str, str]]:
    """(series UID, SOP instance UID) of every instance of the study or series."""
    out: dict[str, str] = {}
    while True:  # pages, for servers that cap the answer; one that ignores offset stops too
        page = client.search_for_instances(study_uid, series_uid, offset=len(out) or None,
                                           fields=["SeriesInstanceUID"])
        before = len(out)
        for item in page:
            out.setdefault(_text(item, "SOPInstanceUID"), _text(item, "SeriesInstanceUID"))
        if len(out) == before:
            return [(series, sop) for sop, series in out.items()]


def retrieve(server: Server, study_uid: str, series_uid: str | None = None, *, store,
             progress: Progress | None = None,
             cancelled: Cancelled | None = None) -> RetrieveResult:
    """WADO-RS into `store`: instances it already has are not fetched again; a cancel raises
    PacsCancelled between two instances (each stored file is complete: store.add is atomic)."""
    client = connect(server)
    result = RetrieveResult()
    what = "retrieve the series" if series_uid else "retrieve the study"
    with _sentences(server, what):
        wanted = _instances(client, study_uid, series_uid)
        missing = [(s, uid) for s, uid in wanted if not store.has(uid)]
        result.skipped = len(wanted) - len(missing)
        total, done = len(wanted), result.skipped
        if progress:
            progress(done, total)
        for ds in _fetch(client, study_uid, missing, len(missing) == len(wanted)):
            if cancelled is not None and cancelled():
                raise PacsCancelled()
            uid = str(ds.SOPInstanceUID)
            if store.has(uid):
                result.skipped += 1
            else:
                result.stored.append(store.add(ds))
            done += 1
            if progress:
                progress(done, total)
    return result


def _fetch(client, study_uid: str, missing: list[tuple[str, str]], everything: bool
           ) -> Iterator:
    """Stream whole series when nothing is there yet, else one request per missing instance."""
    if everything:
        series = list(dict.fromkeys(s for s, _ in missing))
        return (ds for s in series
                for ds in client.iter_series(study_uid, s, media_types=ANY_SYNTAX))
    return (client.retrieve_instance(study_uid, s, uid, media_types=ANY_SYNTAX)
            for s, uid in missing)


def send(server: Server, paths: Iterable[str | Path]) -> SendResult:
    """STOW-RS of DICOM files, one request per study; what the server refused is listed with
    its reason, and the local files are never touched."""
    import pydicom

    result = SendResult()
    by_study: dict[str, list] = {}
    for path in paths:
        try:
            ds = pydicom.dcmread(path)
            by_study.setdefault(str(ds.StudyInstanceUID), []).append(ds)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is one failed row
            result.failed.append((str(path), f"{path} is not a readable DICOM file ({exc})."))
    if not by_study:
        return result
    client = connect(server)
    for study_uid, datasets in by_study.items():
        with _sentences(server, "send to PACS"):
            answer = client.store_instances(datasets, study_uid)
        refs = {str(i.ReferencedSOPInstanceUID) for i in answer.get("ReferencedSOPSequence", [])}
        reasons = {str(i.ReferencedSOPInstanceUID): i.get("FailureReason")
                   for i in answer.get("FailedSOPSequence", [])}
        for ds in datasets:
            uid = str(ds.SOPInstanceUID)
            if uid in refs and uid not in reasons:
                result.accepted.append(uid)
            else:
                code = reasons.get(uid)
                why = f" (failure reason {int(code):#06x})" if code is not None else ""
                result.failed.append((uid, f"The server did not store instance {uid}{why}; "
                                           "the local file is kept."))
    return result
