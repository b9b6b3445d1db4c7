"""A fake PACS client (the functions of medviewer.pacs.client) and a window whose PACS feature
uses it, with the server list and local store in this test's folder.

The fake serves one study built from the small CT folder: retrieve copies its files into the
LocalStore through `store.add` (as the real clients do), reporting progress and honouring
`cancelled` between instances, so what the window opens afterwards is real DICOM.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest

from medviewer.pacs import servers
from medviewer.pacs.errors import PacsCancelled, PacsError
from medviewer.pacs.models import RetrieveResult, SendResult, SeriesHit, StudyHit
from medviewer.pacs.store import LocalStore


class FakeClient:
    """medviewer.pacs.client's functions over the files of `folder` (one study, one series)."""

    def __init__(self, folder: Path) -> None:
        self.files = sorted(folder.glob("*.dcm"))
        first = pydicom.dcmread(self.files[0], stop_before_pixels=True)
        self.study = StudyHit(first.StudyInstanceUID, str(first.PatientName), first.PatientID,
                              "20240315", "ACC7", ("CT",), "Chest", 1, len(self.files))
        self.series = SeriesHit(first.SeriesInstanceUID, "CT", 3, "Axial 2.5",
                                len(self.files))
        self.calls: list[tuple] = []
        self.fail: dict[str, str] = {}  # function name -> PacsError sentence to raise
        self.gate: threading.Event | None = None  # retrieve waits on it after one instance
        self.series_gate: threading.Event | None = None  # find_series waits on it
        self.sent: list[list[str]] = []
        # (after how many new instances, error): each retrieve call takes the first, stores
        # that many instances, then raises the error (a connection dropped mid-transfer)
        self.breaks: list[tuple[int, Exception]] = []
        self.receivers: list = []  # the `receiver` each retrieve was given

    def _maybe_fail(self, name: str) -> None:
        if name in self.fail:
            raise PacsError(self.fail[name])

    def echo(self, server):
        self.calls.append(("echo", server))
        self._maybe_fail("echo")
        return f"{server.ae_title or server.base_url} answered the echo in 2 ms."

    def find_studies(self, server, **query):
        self.calls.append(("find_studies", server.name, query))
        self._maybe_fail("find_studies")
        return [self.study]

    def find_series(self, server, study_uid):
        self.calls.append(("find_series", server.name, study_uid))
        self._maybe_fail("find_series")
        if self.series_gate is not None:
            self.series_gate.wait(10)
        return [self.series] if study_uid == self.study.study_uid else []

    def retrieve(self, server, study_uid, series_uid=None, *, method="get", store=None,
                 progress=None, cancelled=None, receiver=None):
        self.calls.append(("retrieve", server.name, study_uid, series_uid, method))
        self.receivers.append(receiver)
        self._maybe_fail("retrieve")
        after, error = self.breaks.pop(0) if self.breaks else (None, None)
        result = RetrieveResult()
        for k, path in enumerate(self.files):
            if cancelled is not None and cancelled():
                raise PacsCancelled()
            if after is not None and len(result.stored) >= after:
                raise error
            ds = pydicom.dcmread(path)
            if store.has(ds.SOPInstanceUID):
                result.skipped += 1
            else:
                result.stored.append(store.add(ds))
            if progress is not None:
                progress(k + 1, len(self.files))
            if self.gate is not None:
                self.gate.wait(10)
        return result

    def send(self, server, paths):
        self.sent.append([str(p) for p in paths])
        self._maybe_fail("send")
        return SendResult(accepted=[Path(p).stem for p in paths])


@pytest.fixture
def pacs_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ct_series_dir: Path):
    """This test's data folder (server list, store), servers without a keyring, the fake."""
    monkeypatch.setenv("MEDVIEWER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(servers, "_keyring", lambda: None)  # secrets in memory only
    monkeypatch.setattr(servers, "_memory_secrets", {})
    return SimpleNamespace(client=FakeClient(ct_series_dir),
                           store=LocalStore(tmp_path / "store"), data=tmp_path / "data")


@pytest.fixture
def pacs_window(make_main_window, qtbot, pacs_env):
    """A shown main window whose PACS feature uses the fake client and this test's store."""
    from medviewer.ui.pacs.feature import PacsFeature

    win = make_main_window()
    win.pacs.backends["client"] = pacs_env.client
    win.pacs.store = pacs_env.store
    assert isinstance(win.pacs, PacsFeature)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    return win


def dimse_server(name: str = "Orthanc") -> servers.Server:
    return servers.Server(name=name, ae_title="ORTHANC", host="127.0.0.1", port=4242)
