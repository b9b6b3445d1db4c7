"""A real PACS for the PACS tests: Debian's Orthanc with the DICOMweb plugin (issue 14).

Orthanc 1.10 listens on every interface and cannot be told to bind to loopback only, while
tests may send traffic only to this machine's own addresses. So when this folder is collected
(before any test runs) the test process moves into a private network namespace that holds
only `lo` (libc unshare(CLONE_NEWNET), then `ip link set lo up`), and Orthanc starts as a
child, which inherits it. Nothing outside the machine can reach it, nor it anything outside.
Threads stay in the namespace of the thread that created them: threads made before the
collection (none in a normal run) would still see the host's network.

Fixtures:
- `orthanc` (session): a running Orthanc with a temporary config (own storage, free DICOM
  and HTTP ports, RemoteAccessAllowed false, the DICOMweb plugin, MedViewer's AE title
  "MEDVIEWER" at 127.0.0.1:<receive_port> as a known modality for C-MOVE). Attributes:
  host, dicom_port, http_port, ae_title, calling_ae, receive_port, base_url (DICOMweb root),
  rest(path, data=None, method=None) -> parsed JSON, upload(paths) -> None (REST, not the
  code under test), log (the log file), dimse_server() / web_server() -> Server.
  The instance is shared by the session: query by your own PatientID / UIDs, never "all",
  and give synthetic series a seed of your own (their UIDs follow the seed).
- `orthanc_factory` (function): start a private Orthanc (e.g. one to kill mid-transfer);
  it is stopped at the end of the test.
- `pacs_ct` (session): a 20 x 64 x 64 synthetic CT already in the session Orthanc, with
  patient "PACS^TEST" / ID "PACSCT01" / StudyDate 20240315. Attributes: study_uid,
  series_uid, sop_uids (slice order), paths, voxels (HU), patient_name, patient_id,
  study_date.

The tests skip with a reason where Orthanc is not installed or network namespaces are not
allowed (not root, or a container without CAP_SYS_ADMIN).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
CLONE_NEWNET = 0x40000000
HOST = "127.0.0.1"
ORTHANC_AE = "ORTHANC"
CALLING_AE = "MEDVIEWER"

_namespace: dict[str, str | None] = {}  # "error" -> None once this process is in its own ns


def _enter_private_network() -> str | None:
    """Move this process (its calling thread and every thread and child it starts later)
    into a network namespace holding only loopback. Returns why it could not, or None."""
    if "error" in _namespace:
        return _namespace["error"]
    error = None
    if not ORTHANC.exists():
        error = f"Orthanc is not installed ({ORTHANC}); run scripts/setup.sh test"
    elif not DICOMWEB_PLUGIN.exists():
        error = (f"Orthanc's DICOMweb plugin is missing ({DICOMWEB_PLUGIN}); "
                 "install orthanc-dicomweb")
    elif shutil.which("ip") is None:
        error = "the `ip` command (iproute2) is missing; it brings up loopback in the namespace"
    else:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) != 0:
            error = ("network namespaces are not allowed here (unshare(CLONE_NEWNET) failed: "
                     f"{os.strerror(ctypes.get_errno())}); the PACS tests need root or "
                     "CAP_SYS_ADMIN so that Orthanc can only be reached over loopback")
        else:
            done = subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True,
                                  text=True)
            if done.returncode != 0:
                error = f"could not bring up loopback in the namespace: {done.stderr.strip()}"
    _namespace["error"] = error
    return error


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the test process dies, even killed -9."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port() -> int:
    """A TCP port nobody listens on (in the private namespace every port is free)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Orthanc:
    """One Orthanc process with its own temporary folder, config and ports."""

    def __init__(self, folder: Path, receive_port: int | None = None) -> None:
        self.folder = folder
        self.host = HOST
        self.ae_title = ORTHANC_AE
        self.calling_ae = CALLING_AE
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.receive_port = receive_port or free_port()
        self.base_url = f"http://{HOST}:{self.http_port}/dicom-web"
        self.log = folder / "orthanc.log"
        self.process: subprocess.Popen | None = None

    def config(self) -> dict:
        return {
            "Name": "MedViewerTest",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "storage"),
            "StorageCompression": False,
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SslEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,  # a wrong AE title is refused, as on a real PACS
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowMove": True,
            "DicomScpTimeout": 10,
            "DicomModalities": {
                "medviewer": {"AET": self.calling_ae, "Host": HOST, "Port": self.receive_port,
                              "AllowEcho": True, "AllowFind": True, "AllowGet": True,
                              "AllowMove": True, "AllowStore": True},
            },
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True,
                         "Ssl": False, "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
            "SaveJobs": False,
            "ConcurrentJobs": 2,
            "HttpTimeout": 10,
            "KeepAlive": True,
        }

    def start(self, timeout: float = 30.0) -> Orthanc:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "orthanc.json"
        config.write_text(json.dumps(self.config(), indent=1))
        with open(self.log, "wb") as log:
            # TCP_NODELAY=1: DCMTK (inside Orthanc) then turns Nagle's algorithm off; with it on,
            # each C-GET/C-MOVE sub-operation waits ~45 ms for a delayed ACK (measured: 20
            # slices 1.1 s -> 0.3 s), which only slows the tests down
            self.process = subprocess.Popen([str(ORTHANC), str(config)], stdout=log,
                                            stderr=subprocess.STDOUT, cwd=self.folder,
                                            env={**os.environ, "TCP_NODELAY": "1"},
                                            preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited at start:\n{self.log.read_text()[-3000:]}")
            try:
                self.rest("/system")
                with socket.create_connection((HOST, self.dicom_port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout} s:\n"
                           f"{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """Kill it at once (a server that drops its connections mid-transfer)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def rest(self, path: str, data: bytes | dict | None = None, method: str | None = None):
        if isinstance(data, dict):
            data = json.dumps(data).encode()
        request = urllib.request.Request(f"http://{HOST}:{self.http_port}{path}", data=data,
                                         method=method)
        with urllib.request.urlopen(request, timeout=10) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def upload(self, paths) -> None:
        for path in paths:
            self.rest("/instances", Path(path).read_bytes(), "POST")

    def dimse_server(self, **changes):
        from medviewer.pacs.servers import Server

        fields = dict(name="orthanc", kind="dimse", ae_title=self.ae_title, host=self.host,
                      port=self.dicom_port, calling_ae=self.calling_ae,
                      receive_port=self.receive_port)
        return Server(**{**fields, **changes})

    def web_server(self, **changes):
        from medviewer.pacs.servers import Server

        fields = dict(name="orthanc-web", kind="dicomweb", base_url=self.base_url)
        return Server(**{**fields, **changes})


def pytest_configure(config: pytest.Config) -> None:
    """Enter the private network namespace when this folder is collected, before any test
    runs: a thread only follows the namespace of the thread that creates it, so worker
    threads (QThreadPool, pynetdicom) started by any later test must be created after it.
    The rest of the session then sees loopback only, which no test outside needs to leave."""
    _enter_private_network()


def _need_namespace() -> None:
    why = _enter_private_network()
    if why:
        pytest.skip(f"PACS tests need a real Orthanc in a private network namespace: {why}")


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory):
    _need_namespace()
    server = Orthanc(tmp_path_factory.mktemp("orthanc")).start()
    yield server
    server.kill()  # a temporary store: no need for Orthanc's slow graceful shutdown


@pytest.fixture
def orthanc_factory(tmp_path: Path):
    _need_namespace()
    started: list[Orthanc] = []

    def start(**kw) -> Orthanc:
        server = Orthanc(tmp_path / f"orthanc-{len(started)}", **kw).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


PACS_CT_SHAPE = (20, 64, 64)
PACS_CT_SPACING = (5.0, 5.5, 5.5)


@pytest.fixture(scope="session")
def pacs_ct(orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory):
    """A small synthetic CT uploaded to the session Orthanc (REST), and what it holds."""
    import pydicom

    from medviewer.core import synthetic

    folder = tmp_path_factory.mktemp("pacs-ct")
    voxels, _ = synthetic.ct_chest_phantom(PACS_CT_SHAPE, PACS_CT_SPACING)
    # a seed of its own: the synthetic UIDs follow the seed, and other tests' series (seed 0
    # by default) must not land in this study on the shared Orthanc
    paths = synthetic.write_series(folder, voxels, spacing=PACS_CT_SPACING, seed=1400,
                                   PatientName="PACS^TEST", PatientID="PACSCT01",
                                   StudyDate="20240315", AccessionNumber="ACC0001")
    orthanc.upload(paths)
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    return SimpleNamespace(study_uid=str(headers[0].StudyInstanceUID),
                           series_uid=str(headers[0].SeriesInstanceUID),
                           sop_uids=[str(h.SOPInstanceUID) for h in headers], paths=paths,
                           voxels=voxels, patient_name="PACS^TEST", patient_id="PACSCT01",
                           study_date="20240315", folder=folder)


@pytest.fixture
def unused_port(orthanc: Orthanc):
    """A function returning a free TCP port inside the private namespace (nothing listens)."""
    return free_port
