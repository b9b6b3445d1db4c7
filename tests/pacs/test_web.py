"""DICOMweb against a real Orthanc + DICOMweb plugin: QIDO-RS, WADO-RS, STOW-RS and failures."""

from __future__ import annotations

from datetime import date

import numpy as np
import pydicom
import pytest

from medviewer.pacs import servers as srv
from medviewer.pacs import web
from medviewer.pacs.errors import PacsCancelled, PacsError
from medviewer.pacs.store import LocalStore


@pytest.fixture(autouse=True)
def _no_secrets(monkeypatch):
    monkeypatch.setattr(srv, "_memory_secrets", {})
    monkeypatch.setattr(srv, "_keyring", lambda: None)


def test_echo_is_a_sentence_with_the_time(orthanc):
    answer = web.echo(orthanc.web_server())
    assert answer.startswith("The DICOMweb server 'orthanc-web' answered") and " ms" in answer


def test_wildcard_caret_id_and_date_searches_find_the_study(orthanc, pacs_ct):
    server = orthanc.web_server()
    for query in ({"patient_name": "PACS*"}, {"patient_name": "PACS^TEST"},
                  {"patient_name": "PACS^TE*"}, {"patient_id": "PACSCT01"},
                  {"patient_id": "PACSCT*", "date_from": date(2024, 3, 1),
                   "date_to": "20240331"},
                  {"patient_id": "PACSCT01", "date_from": "2024-03-15"},
                  {"accession": "ACC0001", "modality": "CT"}):
        hits = web.find_studies(server, **query)
        assert [h.study_uid for h in hits] == [pacs_ct.study_uid], query
    hit = hits[0]
    assert (hit.patient_name, hit.patient_id, hit.study_date) == ("PACS^TEST", "PACSCT01",
                                                                  "20240315")
    assert hit.modalities == ("CT",) and hit.series_count == 1 and hit.instance_count == 20
    assert web.find_studies(server, patient_id="PACSCT01", date_from="20240316") == []
    assert web.find_studies(server, patient_name="NOBODY*") == []
    [series] = web.find_series(server, pacs_ct.study_uid)
    assert (series.series_uid, series.modality, series.instance_count) == (
        pacs_ct.series_uid, "CT", 20)


def _pixels(paths) -> np.ndarray:
    slices = sorted((pydicom.dcmread(p) for p in paths), key=lambda d: int(d.InstanceNumber))
    return np.stack([d.pixel_array for d in slices])


def test_wado_retrieve_every_pixel_then_only_what_is_missing(orthanc, pacs_ct, tmp_path):
    server, store = orthanc.web_server(), LocalStore(tmp_path / "store")
    seen = []
    got = web.retrieve(server, pacs_ct.study_uid, pacs_ct.series_uid, store=store,
                       progress=lambda done, total: seen.append((done, total)))
    assert len(got.stored) == 20 and got.skipped == 0 and got.failed == []
    assert seen[0] == (0, 20) and seen[-1] == (20, 20)
    assert np.array_equal(_pixels(got.stored), _pixels(pacs_ct.paths))
    got.stored[3].unlink()
    got.stored[11].unlink()
    again = web.retrieve(server, pacs_ct.study_uid, store=LocalStore(tmp_path / "store"))
    assert again.skipped == 18 and sorted(again.stored) == sorted([got.stored[3],
                                                                    got.stored[11]])


def test_cancel_mid_retrieve_leaves_whole_files_only(orthanc, pacs_ct, tmp_path):
    store = LocalStore(tmp_path / "store")
    progress = []
    with pytest.raises(PacsCancelled, match="cancelled"):
        web.retrieve(orthanc.web_server(), pacs_ct.study_uid, store=store,
                     progress=lambda d, t: progress.append(d), cancelled=lambda: len(progress) > 5)
    files = list(store.root.rglob("*"))
    dcm = [p for p in files if p.is_file()]
    assert 0 < len(dcm) < 20 and all(p.suffix == ".dcm" for p in dcm)
    for path in dcm:
        pydicom.dcmread(path).pixel_array  # noqa: B018 - every file is whole
    rest = web.retrieve(orthanc.web_server(), pacs_ct.study_uid, store=LocalStore(store.root))
    assert rest.skipped == len(dcm) and len(rest.stored) == 20 - len(dcm)


def test_stow_send_a_series_with_its_seg_and_sr_then_find_and_get_them_back(orthanc,
                                                                              tmp_path):
    from medviewer.core import synthetic
    from medviewer.core.annotations import read_seg, write_seg
    from medviewer.core.annotations.boxes import AnnotatedBox, BoxSet, slice_uid
    from medviewer.core.annotations.sr import read_sr, write_sr
    from medviewer.core.dicom import load_series, scan

    voxels = np.arange(3 * 16 * 16, dtype=np.int16).reshape(3, 16, 16)
    paths = synthetic.write_series(tmp_path / "src", voxels, seed=1402, PatientName="WEB^SEND",
                                   PatientID="WEBSEND1", StudyDate="20230102")
    volume = load_series(scan(tmp_path / "src", cache=False).all_series()[0])
    labels = np.zeros(voxels.shape, np.uint8)
    labels[1:3, 4:10, 5:12] = 1
    seg = write_seg(labels, volume, ["background", "lesion"], tmp_path / "out" / "seg.dcm")
    boxes = BoxSet([AnnotatedBox(3, 4, 9, 9, 1, "mass", sop_instance_uid=slice_uid(volume, 1))])
    sr = write_sr(tmp_path / "out" / "sr.dcm", volume, boxes, annotator="Jane Doe")
    server = orthanc.web_server()
    bad = tmp_path / "not.dcm"
    bad.write_text("hello")
    sent = web.send(server, [*paths, seg, sr, bad])
    uids = [str(pydicom.dcmread(p).SOPInstanceUID) for p in [*paths, seg, sr]]
    assert sent.accepted == uids
    assert [f[0] for f in sent.failed] == [str(bad)] and "not a readable DICOM" in sent.failed[0][1]
    [hit] = web.find_studies(server, patient_name="WEB^S*")
    assert sorted(hit.modalities) == ["CT", "SEG", "SR"]
    store = LocalStore(tmp_path / "store")
    got = web.retrieve(server, hit.study_uid, store=store)
    assert len(got.stored) == 5
    by_modality = {}
    for path in got.stored:
        by_modality.setdefault(pydicom.dcmread(path, stop_before_pixels=True).Modality,
                               []).append(path)
    assert np.array_equal(_pixels(by_modality["CT"]), _pixels(paths))
    back, names = read_seg(by_modality["SEG"][0], volume)
    assert names[1] == "lesion" and np.array_equal(back, labels)
    assert read_sr(by_modality["SR"][0], volume).boxes == list(boxes.boxes)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_failures_are_sentences(orthanc, tmp_path):
    down = orthanc.web_server(base_url=f"http://127.0.0.1:{_free_port()}/dicom-web")
    with pytest.raises(PacsError, match="cannot be reached.*check the URL"):
        web.echo(down)
    wrong_path = orthanc.web_server(base_url=orthanc.base_url.replace("dicom-web", "nothing"))
    with pytest.raises(PacsError, match="HTTP 404.*no such resource"):
        web.find_studies(wrong_path, patient_id="X")
    with pytest.raises(PacsError, match="needs a password"):
        web.echo(orthanc.web_server(auth="basic", username="u"))
    with pytest.raises(PacsError, match="DIMSE peer"):
        web.echo(orthanc.dimse_server())


def test_credentials_and_tls_settings_reach_the_session():
    plain = srv.Server("w", kind="dicomweb", base_url="https://pacs.example.org/dicom-web")
    assert web.connect(plain)._session.verify is True
    basic = srv.Server("b", kind="dicomweb", base_url="https://h/dw", auth="basic",
                       username="alice", verify_tls=False)
    srv.set_secret(basic, "pw")
    session = web.connect(basic)._session
    assert session.auth == ("alice", "pw") and session.verify is False
    bearer = srv.Server("t", kind="dicomweb", base_url="https://h/dw", auth="bearer")
    srv.set_secret(bearer, "tok")
    assert web.connect(bearer)._session.headers["Authorization"] == "Bearer tok"


def test_wildcards_and_carets_leave_unencoded():
    import requests

    session = web._session_class()()
    sent = []
    session.get_adapter = lambda url: type("A", (), {"send": lambda self, r, **k: sent.append(
        r.url) or requests.Response(), "close": lambda self: None})()
    session.get("http://h/dw/studies?PatientName=DOE%3FJ%2A&PatientID=A%20B")
    assert sent == ["http://h/dw/studies?PatientName=DOE?J*&PatientID=A%20B"]
    # a caret goes out as '?', and what '?' matches besides it is filtered out afterwards
    assert web._caretless({"PatientName": "DOE^J*"}) == ({"PatientName": "DOE?J*"}, "DOE^J*")
    assert web._name_matches("Doe^John", "DOE^J*")
    assert not web._name_matches("DOE JOHN", "DOE^J*")


def test_server_killed_mid_retrieve_is_a_sentence_and_a_retry_completes(orthanc_factory,
                                                                         pacs_ct, tmp_path):
    pacs = orthanc_factory()
    pacs.upload(pacs_ct.paths)
    server, store = pacs.web_server(), LocalStore(tmp_path / "store")
    for path in pacs_ct.paths[:2]:  # already here: the rest comes one request per instance
        store.add(path.read_bytes())

    def kill_at_six(done, total):
        if done == 6:
            pacs.kill()

    with pytest.raises(PacsError, match="cannot be reached or dropped the connection"):
        web.retrieve(server, pacs_ct.study_uid, store=store, progress=kill_at_six)
    kept = [p for p in store.root.rglob("*") if p.is_file()]
    assert len(kept) == 6 and all(p.suffix == ".dcm" for p in kept)
    pacs.start()  # the same storage and ports
    rest = web.retrieve(server, pacs_ct.study_uid, store=LocalStore(store.root))
    assert rest.skipped == 6 and len(rest.stored) == 14
    assert np.array_equal(_pixels(store.root.rglob("*.dcm")), _pixels(pacs_ct.paths))
    pacs.kill()  # a throwaway server: no 3 s graceful shutdown


def test_basic_credentials_against_a_server_that_checks_them(orthanc, tmp_path):
    import base64
    import urllib.request

    class Guarded(type(orthanc)):  # the fixture's Orthanc class, with users to check
        def config(self):
            return {**super().config(), "AuthenticationEnabled": True,
                    "RegisteredUsers": {"alice": "right-pw"}}

        def rest(self, path, data=None, method=None):
            token = base64.b64encode(b"alice:right-pw").decode()
            opener = urllib.request.build_opener()
            opener.addheaders = [("Authorization", f"Basic {token}")]
            with opener.open(f"http://{self.host}:{self.http_port}{path}", timeout=10):
                return None

    pacs = Guarded(tmp_path / "guarded").start()
    try:
        server = pacs.web_server(auth="basic", username="alice")
        srv.set_secret(server, "wrong-pw")
        with pytest.raises(PacsError, match="HTTP 401.*refused the credentials"):
            web.echo(server)
        srv.set_secret(server, "right-pw")
        assert "answered a study search" in web.echo(server)
    finally:
        pacs.kill()  # a throwaway server: no 3 s graceful shutdown


def test_a_silent_server_times_out_with_a_sentence(orthanc, monkeypatch):
    import socket

    monkeypatch.setattr(web, "TIMEOUT_S", 0.5)
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        server = orthanc.web_server(base_url=f"http://127.0.0.1:{silent.getsockname()[1]}/dw")
        with pytest.raises(PacsError, match="did not answer in time"):
            web.echo(server)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_is_verified_unless_turned_off_for_the_server(orthanc, tmp_path):
    import datetime as dt
    import http.server
    import ssl
    import threading

    pytest.importorskip("cryptography", reason="makes the self-signed certificate (it comes "
                        "with keyring's SecretStorage on Linux)")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    httpd = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"https://127.0.0.1:{httpd.server_address[1]}/dicom-web"
        with pytest.raises(PacsError, match="TLS certificate.*could not be verified"):
            web.echo(orthanc.web_server(base_url=url))
        # verification off: the handshake passes and the (non-DICOMweb) server's 501 is said
        with pytest.raises(PacsError, match="HTTP 501"):
            web.echo(orthanc.web_server(base_url=url, verify_tls=False))
    finally:
        httpd.shutdown()
        httpd.server_close()
