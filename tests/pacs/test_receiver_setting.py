"""MedViewer's own C-STORE receiver in a real window (issue 14 item 4), on loopback inside the
PACS tests' private network namespace: off by default; File ▸ PACS Servers… turns it on with
an AE title and port (the window's settings); instances a pynetdicom SCU pushes appear in the
study browser as they arrive; turned off it refuses connections; a port in use is a sentence;
a window whose settings say "on" starts it; closing the window stops it with no thread left;
and a C-MOVE from Query/Retrieve goes through the running receiver instead of a second one
on its port."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import QSettings

from medviewer.core import synthetic
from medviewer.pacs import servers
from medviewer.pacs.store import LocalStore
from medviewer.ui.pacs import receiving


def _receiver_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("Acceptor")]


@pytest.fixture
def make_window(qtbot, tmp_path, monkeypatch):
    from medviewer.ui.shell.app import configure_pyqtgraph
    from medviewer.ui.shell.main_window import MainWindow

    configure_pyqtgraph()
    monkeypatch.setenv("MEDVIEWER_DATA_DIR", str(tmp_path / "data"))  # servers and store
    windows = []

    def make(**settings):
        ini = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
        for key, value in settings.items():
            ini.setValue(key, value)
        win = MainWindow(ini, scan_cache=tmp_path / "index.sqlite")
        qtbot.add_widget(win)
        win.resize(1000, 700)
        win.show()
        qtbot.waitExposed(win)
        windows.append(win)
        return win

    yield make
    for win in windows:
        win.close()
    assert not _receiver_threads()  # no test leaves a receiver running


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """Three CT slices of a study of their own (seed: UIDs not shared with other tests)."""
    voxels, _ = synthetic.ct_chest_phantom((3, 32, 32), (5.0, 8.0, 8.0))
    paths = synthetic.write_series(tmp_path_factory.mktemp("push"), voxels,
                                   spacing=(5.0, 8.0, 8.0), seed=1477,
                                   PatientName="PUSH^TEST", PatientID="PUSH01")
    return [pydicom.dcmread(p) for p in paths], voxels


def _push(port: int, datasets, called: str = "MVRECV") -> list[int]:
    """C-STORE from a pynetdicom SCU on loopback; the statuses, or [] when refused."""
    from pynetdicom import AE

    ae = AE(ae_title="PUSHER")
    ae.add_requested_context(datasets[0].SOPClassUID, datasets[0].file_meta.TransferSyntaxUID)
    ae.connection_timeout = 2
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        return []
    try:
        return [assoc.send_c_store(ds).Status for ds in datasets]
    finally:
        assoc.release()


def _servers_dialog(win):
    win.pacs.servers_action.trigger()
    return win.pacs.dialogs["servers"]


def test_off_by_default_then_on_pushes_listed_as_they_arrive_then_off(
        make_window, unused_port, pushed, qtbot):
    datasets, voxels = pushed
    win = make_window()
    assert win.pacs.receiver.running() is None and not _receiver_threads()
    dialog = _servers_dialog(win)
    assert not dialog.receiver_enabled.isChecked()
    assert dialog.receiver_state.text() == "MedViewer's receiver is off."
    port = unused_port()
    dialog.receiver_enabled.setChecked(True)
    dialog.receiver_ae.setText("MVRECV")
    dialog.receiver_port.setValue(port)
    text = dialog.apply_receiver()
    assert text == (f"MedViewer's receiver is listening as MVRECV on port {port}; studies a "
                    "PACS sends there appear in the study browser.")
    assert dialog.receiver_state.text() == text and win.status_label.text() == text
    assert win.pacs.receiver.settings() == (True, "MVRECV", port)  # in the window's settings

    assert _push(port, datasets[:1]) == [0x0000]
    qtbot.waitUntil(lambda: win.scan_result is not None, timeout=5000)
    assert [s.image_count for s in win.scan_result.all_series()] == [1]  # listed on arrival
    assert _push(port, datasets[1:]) == [0x0000, 0x0000]
    qtbot.waitUntil(lambda: [s.image_count for s in win.scan_result.all_series()] == [3],
                    timeout=5000)
    [series] = win.scan_result.all_series()
    assert series.series_instance_uid == datasets[0].SeriesInstanceUID
    with qtbot.waitSignal(win.volume_loaded, timeout=10_000) as loaded:
        win.open_series(series)
    np.testing.assert_array_equal(np.asarray(loaded.args[0].voxels), voxels)
    store = LocalStore()  # the user data folder's store (this test's)
    assert all(store.has(ds.SOPInstanceUID) for ds in datasets)

    dialog.receiver_enabled.setChecked(False)
    assert dialog.apply_receiver() == "MedViewer's receiver is off."
    assert win.pacs.receiver.running() is None
    qtbot.waitUntil(lambda: not _receiver_threads(), timeout=5000)
    assert _push(port, datasets[:1]) == []  # nobody listens any more
    assert win.pacs.receiver.settings() == (False, "MVRECV", port)


def test_a_port_in_use_is_a_sentence_not_a_crash(make_window, unused_port):
    win = make_window()
    dialog = _servers_dialog(win)
    with socket.socket() as taken:
        taken.bind(("", unused_port()))
        taken.listen()
        port = taken.getsockname()[1]
        dialog.receiver_enabled.setChecked(True)
        dialog.receiver_port.setValue(port)
        text = dialog.apply_receiver()
    assert text.startswith(f"MedViewer's receiver cannot listen on port {port} "), text
    assert "choose another receive port" in text
    assert dialog.receiver_state.text() == text and win.status_label.text() == text
    assert win.pacs.receiver.running() is None and not _receiver_threads()


def test_a_window_whose_settings_say_on_starts_it_and_closing_stops_it(
        make_window, unused_port, pushed, qtbot):
    port = unused_port()
    win = make_window(**{receiving.ENABLED_KEY: True, receiving.AE_KEY: "MVRECV",
                         receiving.PORT_KEY: port})
    assert win.pacs.receiver.running() is not None and _receiver_threads()
    assert win.status_label.text().startswith("MedViewer's receiver is listening as MVRECV")
    # an association in progress when the window closes is ended too
    from pynetdicom import AE

    ae = AE(ae_title="PUSHER")
    ae.add_requested_context(pushed[0][0].SOPClassUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="MVRECV")
    assert assoc.is_established
    win.close()
    assert win.pacs.receiver.running() is None
    qtbot.waitUntil(lambda: not _receiver_threads(), timeout=5000)
    qtbot.waitUntil(lambda: not assoc.is_alive(), timeout=5000)
    with socket.socket() as again:  # nothing listens there any more (as a receiver binds)
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("", port))
        again.listen()


def test_query_retrieve_by_c_move_uses_the_running_receiver(make_window, orthanc, pacs_ct,
                                                            qtbot):
    servers.save_servers([orthanc.dimse_server()])
    win = make_window(**{receiving.ENABLED_KEY: True, receiving.AE_KEY: orthanc.calling_ae,
                         receiving.PORT_KEY: orthanc.receive_port})
    receiver = win.pacs.receiver.running()
    assert receiver is not None
    win.pacs.query_action.trigger()
    dialog = win.pacs.dialogs["query"]
    dialog.patient_id.setText(pacs_ct.patient_id)
    with qtbot.waitSignal(dialog.sigSearched, timeout=15_000):
        dialog.search_button.click()
    dialog.method.setCurrentIndex(dialog.method.findData("move"))
    dialog.tree.topLevelItem(0).setSelected(True)
    with qtbot.waitSignal(dialog.sigRetrieved, timeout=30_000) as blocker:
        dialog.retrieve_button.click()
    # a second receiver on the same port could not have listened: the move used this one
    assert blocker.args[0] == "1 item retrieved into the local store and opened.", blocker.args
    assert dialog.tree.topLevelItem(0).text(7) == "20 new"
    assert win.pacs.receiver.running() is receiver and not receiver.listeners
    assert not receiver.received  # the move's instances went to the move, not "pushed"
    qtbot.waitUntil(lambda: win.document.volume is not None
                    and win.document.volume.voxels.shape[0] == 20, timeout=15_000)
    np.testing.assert_array_equal(np.asarray(win.document.volume.voxels), pacs_ct.voxels)
