"""The PACS dialogs in a real main window against the real Orthanc (no fake): File ▸
Query/Retrieve… finds the test CT by a wildcard name, lists its series, retrieves it with C-GET
into the local store and the window shows it pixel for pixel; WADO-RS through the DICOMweb
entry fetches only what the store lacks; Annotate ▸ Send to PACS… stores a saved SEG by
C-STORE and a private Orthanc lists it (the session one's CT study keeps its one series).
The dialog's worker (ui/pacs/retrieve.py) against real servers: an Orthanc killed mid C-GET is
a transient failure, retried once it is back, fetching only the rest; a wrong AE title is not
retried; an unreachable DICOMweb server is transient too."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import QSettings

from medviewer.core.annotations import write_seg
from medviewer.core.annotations.workspace import Workspace
from medviewer.pacs import client, servers
from medviewer.pacs.errors import PacsTransient
from medviewer.pacs.store import LocalStore
from medviewer.ui.pacs import retrieve


@pytest.fixture
def window(orthanc, qtbot, tmp_path, monkeypatch):
    from medviewer.ui.shell.app import configure_pyqtgraph
    from medviewer.ui.shell.main_window import MainWindow

    configure_pyqtgraph()
    monkeypatch.setenv("MEDVIEWER_DATA_DIR", str(tmp_path / "data"))  # servers and store
    servers.save_servers([orthanc.dimse_server(), orthanc.web_server()])
    win = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat),
                     scan_cache=tmp_path / "index.sqlite")
    qtbot.add_widget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()


def _retrieve(dialog, qtbot, item):
    dialog.tree.clearSelection()
    item.setSelected(True)
    with qtbot.waitSignal(dialog.sigRetrieved, timeout=30_000) as blocker:
        dialog.retrieve_button.click()
    return blocker.args[0]


def test_find_retrieve_show_and_send_back(window, orthanc, orthanc_factory, pacs_ct, qtbot):
    window.pacs.query_action.trigger()
    dialog = window.pacs.dialogs["query"]
    assert dialog.server.server().name == "orthanc" and dialog.method.currentData() == "get"
    dialog.patient_name.setText("PACS^T*")
    dialog.patient_id.setText(pacs_ct.patient_id)
    with qtbot.waitSignal(dialog.sigSearched, timeout=15_000) as blocker:
        dialog.search_button.click()
    assert [h.study_uid for h in blocker.args[0]] == [pacs_ct.study_uid], blocker.args[0]
    study = dialog.tree.topLevelItem(0)
    with qtbot.waitSignal(dialog.sigSeriesListed, timeout=15_000):
        study.setExpanded(True)
    series = study.child(0)
    assert study.childCount() == 1 and series.text(6) == "20"

    with qtbot.waitSignal(window.volume_loaded, timeout=30_000) as loaded:
        text = _retrieve(dialog, qtbot, series)
    assert text == "1 item retrieved into the local store and opened.", text
    assert series.text(7) == "20 new"
    volume = loaded.args[0]
    assert volume.series.series_instance_uid == pacs_ct.series_uid
    np.testing.assert_array_equal(np.asarray(volume.voxels), pacs_ct.voxels)

    dialog.server.setCurrentIndex(dialog.server.findText("orthanc-web"))
    assert dialog.method.currentData() == "wado"
    with qtbot.waitSignal(dialog.sigSearched, timeout=15_000):
        dialog.search_button.click()
    assert _retrieve(dialog, qtbot, dialog.tree.topLevelItem(0)).startswith("1 item retrieved")
    assert dialog.tree.topLevelItem(0).text(7) == "0 new, 20 already here"  # WADO-RS, nothing again
    assert len(list(LocalStore().study_folder(pacs_ct.study_uid).glob("*/*.dcm"))) == 20

    label_map = np.zeros(volume.voxels.shape, np.uint8)
    label_map[8:12, 20:40, 20:40] = 1
    workspace = Workspace.for_series(volume)
    workspace.folder.mkdir(parents=True)
    write_seg(label_map, volume, ["background", "lesion"], workspace.seg_path)
    private = orthanc_factory()  # the session Orthanc's CT study keeps its one series
    servers.save_servers([*servers.load_servers(), private.dimse_server(name="private")])
    window.pacs.send_annotations_action.trigger()
    send = window.pacs.dialogs["send"]
    send.server.setCurrentIndex(send.server.findText("private"))
    with qtbot.waitSignal(send.sigSent, timeout=30_000) as blocker:
        send.send_button.click()
    text, ok = blocker.args
    assert ok and text == "'private' accepted 1 of 1 file(s): segmentation.dcm.", text
    [seg] = client.find_series(private.dimse_server(), pacs_ct.study_uid)
    assert (seg.modality, seg.instance_count) == ("SEG", 1)


class _Ctx:
    """The worker's context; `on_event(event)` may act on the servers as events come."""

    def __init__(self, on_event) -> None:
        self.events: list[tuple] = []
        self.on_event = on_event

    def partial(self, event: tuple) -> None:
        self.events.append(event)
        self.on_event(event)

    def is_cancelled(self) -> bool:
        return False


def test_a_server_killed_mid_get_is_retried_and_completes(orthanc_factory, pacs_ct, tmp_path,
                                                          monkeypatch):
    monkeypatch.setattr(retrieve, "RETRY_PAUSE", 0.0)  # Orthanc restarts at the retry event
    private = orthanc_factory()
    private.upload(pacs_ct.paths)
    store = LocalStore(tmp_path / "store")

    def on_event(event):
        what, _k, value = event
        if what == "progress" and value[1] >= 5 and not any(e[0] == "retry" for e in ctx.events):
            private.kill()  # the connection drops mid-transfer
        elif what == "retry":
            private.start()  # back before the retry

    ctx = _Ctx(on_event)
    retrieve.retrieve_rows(ctx, client, private.dimse_server(),
                           [(pacs_ct.study_uid, pacs_ct.series_uid)], method="get", store=store)
    [retry] = [e for e in ctx.events if e[0] == "retry"]
    assert retry[2][:3] == (pacs_ct.series_uid, 1, 2) and "stopped answering" in retry[2][3]
    what, _k, result = ctx.events[-1]
    assert what == "done" and not result.failed
    assert 5 <= result.skipped < 20 and result.skipped + len(result.stored) == 20  # the rest only
    folder = store.series_folder(pacs_ct.study_uid, pacs_ct.series_uid)
    slices = [pydicom.dcmread(p) for p in folder.glob("*.dcm")]
    slices.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    voxels = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
                       for ds in slices])
    np.testing.assert_array_equal(voxels, pacs_ct.voxels)


def test_a_wrong_ae_title_is_not_retried(orthanc, pacs_ct, tmp_path, monkeypatch):
    monkeypatch.setattr(retrieve, "RETRY_PAUSE", 5.0)  # a retry would show in the time taken
    calls = []
    real = client.retrieve
    monkeypatch.setattr(client, "retrieve", lambda *a, **kw: calls.append(a) or real(*a, **kw))
    ctx = _Ctx(lambda _event: None)
    retrieve.retrieve_rows(ctx, client, orthanc.dimse_server(ae_title="NOTORTHANC"),
                           [(pacs_ct.study_uid, pacs_ct.series_uid)], method="get",
                           store=LocalStore(tmp_path / "store"))
    [failed] = [e for e in ctx.events if e[0] != "start"]
    assert failed[0] == "failed" and "is not called 'NOTORTHANC'" in failed[2], failed
    assert len(calls) == 1


def test_an_unreachable_dicomweb_server_is_transient(orthanc, unused_port):
    down = orthanc.web_server(base_url=f"http://127.0.0.1:{unused_port()}/dicom-web")
    with pytest.raises(PacsTransient, match="cannot be reached or dropped the connection"):
        client.find_studies(down, patient_id="X")
