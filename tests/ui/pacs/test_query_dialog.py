"""File ▸ Query/Retrieve… in the real window, on the fake client: search with the fields'
query, series listed on expand, retrieve into the store with each row's progress and the study
opened in the study browser, a retry that fetches nothing again, Cancel, and a failure's
sentence."""

from __future__ import annotations

import datetime
import threading

from PySide6.QtCore import QDate

from medviewer.pacs import servers
from tests.ui.pacs.conftest import dimse_server


def _dialog(win, qtbot, client):
    servers.save_servers([dimse_server(), servers.Server(
        name="Web", kind="dicomweb", base_url="http://127.0.0.1:8042/dicom-web")])
    win.pacs.query_action.trigger()
    dialog = win.pacs.dialogs["query"]
    assert dialog.isVisible() and dialog.server.count() == 2
    assert dialog.method.currentData() == "get"  # DIMSE: C-GET first
    dialog.server.setCurrentIndex(1)
    assert dialog.method.currentData() == "wado"
    assert not dialog.method.model().item(0).isEnabled()  # no C-GET on DICOMweb
    dialog.server.setCurrentIndex(0)
    return dialog


def _search(dialog, qtbot):
    with qtbot.waitSignal(dialog.sigSearched, timeout=5000) as blocker:
        dialog.search_button.click()
    return blocker.args[0]


def test_search_sends_the_fields_and_lists_studies_then_series(pacs_window, pacs_env, qtbot):
    dialog = _dialog(pacs_window, qtbot, pacs_env.client)
    dialog.patient_name.setText("PHANTOM*")
    dialog.accession.setText("ACC7")
    dialog.modality.setCurrentText("ct")
    dialog.use_dates.setChecked(True)
    dialog.date_from.setDate(QDate(2024, 3, 1))
    dialog.date_to.setDate(QDate(2024, 3, 31))
    hits = _search(dialog, qtbot)
    assert hits == [pacs_env.client.study]
    _name, server, query = pacs_env.client.calls[-1]
    assert server == "Orthanc"
    assert query == {"patient_name": "PHANTOM*", "patient_id": "", "accession": "ACC7",
                     "modality": "CT", "date_from": datetime.date(2024, 3, 1),
                     "date_to": datetime.date(2024, 3, 31)}
    assert dialog.tree.topLevelItemCount() == 1
    study = dialog.tree.topLevelItem(0)
    assert study.text(2) == "2024-03-15" and study.text(3) == "ACC7"
    assert dialog.status.text() == "1 study found."
    with qtbot.waitSignal(dialog.sigSeriesListed, timeout=5000):
        study.setExpanded(True)
    assert study.childCount() == 1
    assert study.child(0).text(0) == "#3 Axial 2.5" and study.child(0).text(6) == "20"


def test_retrieve_fills_the_store_opens_the_study_and_a_retry_fetches_nothing(
        pacs_window, pacs_env, qtbot):
    dialog = _dialog(pacs_window, qtbot, pacs_env.client)
    _search(dialog, qtbot)
    study = dialog.tree.topLevelItem(0)
    study.setSelected(True)
    gate = pacs_env.client.gate = threading.Event()
    with qtbot.waitSignal(dialog.sigRetrieved, timeout=10_000) as blocker:
        dialog.retrieve_button.click()
        assert not dialog.retrieve_button.isEnabled() and dialog.cancel_button.isEnabled()
        # listed in the browser from its first instance, while the rest still comes
        qtbot.waitUntil(lambda: pacs_window.scan_result is not None, timeout=5000)
        assert [s.image_count for s in pacs_window.scan_result.all_series()] == [1]
        assert pacs_window.document.volume is None  # nothing put on screen by itself yet
        assert study.text(7) == "#3 Axial 2.5: 1 / 20"  # each series' own progress
        assert study.child(0).text(7) == "1 / 20"
        with qtbot.waitSignal(pacs_window.volume_loaded, timeout=5000) as loaded:
            pacs_window.open_series(pacs_window.scan_result.all_series()[0])
        assert loaded.args[0].voxels.shape[0] == 1  # what has arrived can be read already
        gate.set()
    assert blocker.args[0] == "1 item retrieved into the local store and opened."
    assert study.text(7) == "20 new"
    folder = pacs_env.store.study_folder(pacs_env.client.study.study_uid)
    assert len(list(folder.glob("*/*.dcm"))) == 20
    # the whole series, on screen: the window shows the rescan's series, not the partial one
    def whole() -> bool:  # None while the preview shows, before the volume is decoded
        volume = pacs_window.document.volume
        return volume is not None and volume.voxels.shape[0] == 20

    qtbot.waitUntil(whole, timeout=10_000)
    [series] = pacs_window.scan_result.all_series()
    assert series.image_count == 20
    assert series.series_instance_uid == pacs_env.client.series.series_uid
    assert study.child(0).text(7) == "20 new"  # the study went series by series
    assert ("retrieve", "Orthanc", pacs_env.client.study.study_uid, series.series_instance_uid,
            "get") in pacs_env.client.calls
    with qtbot.waitSignal(dialog.sigRetrieved, timeout=10_000):
        dialog.retrieve_button.click()
    assert study.text(7) == "0 new, 20 already here"


def test_cancel_stops_the_retrieve_and_says_a_retry_fetches_the_rest(pacs_window, pacs_env,
                                                                     qtbot):
    dialog = _dialog(pacs_window, qtbot, pacs_env.client)
    _search(dialog, qtbot)
    with qtbot.waitSignal(dialog.sigSeriesListed, timeout=5000):
        dialog.tree.topLevelItem(0).setExpanded(True)
    series = dialog.tree.topLevelItem(0).child(0)
    series.setSelected(True)
    gate = pacs_env.client.gate = threading.Event()
    dialog.method.setCurrentIndex(dialog.method.findData("move"))
    with qtbot.waitSignal(dialog.sigRetrieved, timeout=10_000) as blocker:
        dialog.retrieve_button.click()
        qtbot.waitUntil(lambda: series.text(7) == "1 / 20", timeout=5000)
        assert not dialog.server.isEnabled() and not dialog.search_button.isEnabled()
        dialog.cancel_button.click()
        gate.set()
    assert blocker.args[0].startswith("Retrieve cancelled")
    assert "only what is missing" in blocker.args[0]
    call = pacs_env.client.calls[-1]
    assert call[3] == pacs_env.client.series.series_uid and call[4] == "move"
    stored = list(pacs_env.store.study_folder(pacs_env.client.study.study_uid).glob("*/*.dcm"))
    assert 1 <= len(stored) < 20
    assert dialog.retrieve_button.isEnabled() and not dialog.cancel_button.isEnabled()


def test_a_failing_server_gives_its_sentence(pacs_window, pacs_env, qtbot):
    dialog = _dialog(pacs_window, qtbot, pacs_env.client)
    pacs_env.client.fail["find_studies"] = "ORTHANC at 127.0.0.1:4242 did not answer in 10 s."
    assert _search(dialog, qtbot) == "ORTHANC at 127.0.0.1:4242 did not answer in 10 s."
    assert dialog.status.text() == "ORTHANC at 127.0.0.1:4242 did not answer in 10 s."
    del pacs_env.client.fail["find_studies"]
    _search(dialog, qtbot)
    dialog.tree.topLevelItem(0).setSelected(True)
    pacs_env.client.fail["retrieve"] = "The association was dropped mid-transfer."
    with qtbot.waitSignal(dialog.sigRetrieved, timeout=10_000) as blocker:
        dialog.retrieve_button.click()
    assert "0 items retrieved, 1 failed" in blocker.args[0]
    row = dialog.tree.topLevelItem(0)
    assert row.text(7) == "failed"
    assert row.toolTip(7) == "The association was dropped mid-transfer."


def test_a_password_is_asked_once_per_run_without_a_keyring(pacs_window, pacs_env, qtbot,
                                                            monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    servers.save_servers([servers.Server(name="Web", kind="dicomweb", auth="basic",
                                         username="reader",
                                         base_url="https://pacs.example.org/dicom-web")])
    answers = [("", False), ("pw1", True)]
    asked = []
    monkeypatch.setattr(QInputDialog, "getText",
                        lambda *args, **kw: asked.append(args[2]) or answers.pop(0))
    pacs_window.pacs.query_action.trigger()
    dialog = pacs_window.pacs.dialogs["query"]
    dialog.search_button.click()  # cancelled: nothing asked of the server
    assert dialog.status.text().startswith("'Web' needs a password")
    assert not any(c[0] == "find_studies" for c in pacs_env.client.calls)
    _search(dialog, qtbot)
    assert asked == ["The password of 'reader' for 'Web':"] * 2
    assert servers.get_secret(servers.get_server("Web")) == "pw1"
    assert "pw1" not in servers.servers_path().read_text()
    _search(dialog, qtbot)  # known for this run now: not asked again
    assert len(asked) == 2


def test_rows_of_an_older_search_or_another_server_are_dropped(pacs_window, pacs_env, qtbot):
    dialog = _dialog(pacs_window, qtbot, pacs_env.client)
    _search(dialog, qtbot)
    gate = pacs_env.client.series_gate = threading.Event()
    dialog.tree.topLevelItem(0).setExpanded(True)  # its series are still being listed...
    _search(dialog, qtbot)  # ...when a new search replaces the rows
    with qtbot.waitSignal(dialog.sigSeriesListed, timeout=1000, raising=False) as late:
        gate.set()
    assert not late.signal_triggered  # the old row's answer goes nowhere, and no error
    assert dialog.tree.topLevelItem(0).childCount() == 0
    dialog.server.setCurrentIndex(1)  # another server: these results are not its own
    assert dialog.tree.topLevelItemCount() == 0
