"""DIMSE against a real Orthanc (tests/pacs/conftest.py): echo, find, get, move, send, faults."""

from __future__ import annotations

import socket
import threading
import time
from datetime import date

import numpy as np
import pydicom
import pytest

from medviewer.pacs import dimse, dimse_retrieve
from medviewer.pacs.dimse_retrieve import get as c_get
from medviewer.pacs.dimse_retrieve import move as c_move
from medviewer.pacs.errors import PacsCancelled, PacsError
from medviewer.pacs.receiver import Receiver
from medviewer.pacs.store import LocalStore


def _hu(path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _same_pixels(paths, pacs_ct) -> None:
    """Every retrieved slice equals the source slice of the same SOP instance, pixel for pixel."""
    by_uid = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in paths}
    assert sorted(by_uid) == sorted(pacs_ct.sop_uids)
    for k, uid in enumerate(pacs_ct.sop_uids):
        np.testing.assert_array_equal(_hu(by_uid[uid]), pacs_ct.voxels[k])


def test_echo_answers_with_the_round_trip_time(orthanc):
    answer = dimse.echo(orthanc.dimse_server())
    assert answer.startswith("ORTHANC at 127.0.0.1:") and answer.endswith(" ms.")


def test_find_studies_by_wildcard_name_id_and_date_range(orthanc, pacs_ct):
    server = orthanc.dimse_server()
    by_name = dimse.find_studies(server, patient_name="PACS^T*")
    assert [h.study_uid for h in by_name] == [pacs_ct.study_uid]
    hit = by_name[0]
    assert (hit.patient_id, hit.study_date, hit.accession) == ("PACSCT01", "20240315", "ACC0001")
    assert hit.modalities == ("CT",) and hit.series_count == 1 and hit.instance_count == 20
    assert [h.study_uid for h in dimse.find_studies(server, patient_id="PACSCT01")] == [
        pacs_ct.study_uid]
    assert dimse.find_studies(server, patient_name="NOBODY*") == []
    inside = dimse.find_studies(server, patient_id="PACSCT01", date_from=date(2024, 3, 1),
                                date_to="2024-03-31")
    assert len(inside) == 1
    assert dimse.find_studies(server, patient_id="PACSCT01", date_from="20240401") == []
    assert len(dimse.find_studies(server, patient_id="PACSCT01", date_to="20240315")) == 1
    assert len(dimse.find_studies(server, patient_id="PACSCT01", modality="CT")) == 1
    assert dimse.find_studies(server, patient_id="PACSCT01", modality="MR") == []


def test_find_series_of_a_study(orthanc, pacs_ct):
    hits = dimse.find_series(orthanc.dimse_server(), pacs_ct.study_uid)
    assert len(hits) == 1
    assert (hits[0].series_uid, hits[0].modality, hits[0].instance_count) == (
        pacs_ct.series_uid, "CT", 20)


def test_get_a_series_then_a_retry_fetches_nothing(orthanc, pacs_ct, tmp_path):
    store = LocalStore(tmp_path / "store")
    seen = []
    result = c_get(orthanc.dimse_server(), pacs_ct.study_uid, pacs_ct.series_uid,
                       store=store, progress=lambda done, total: seen.append((done, total)))
    assert len(result.stored) == 20 and result.skipped == 0 and result.failed == []
    assert seen[-1] == (20, 20)
    assert all(p.parent == store.series_folder(pacs_ct.study_uid, pacs_ct.series_uid)
               for p in result.stored)
    _same_pixels(result.stored, pacs_ct)
    again = c_get(orthanc.dimse_server(), pacs_ct.study_uid, store=store)
    assert (again.stored, again.skipped) == ([], 20)


def test_a_fresh_get_lists_no_instances_and_a_retry_does(orthanc, pacs_ct, tmp_path,
                                                        monkeypatch):
    listings = []
    real = dimse._instances
    monkeypatch.setattr(dimse_retrieve, "_instances", lambda *a: listings.append(a) or real(*a))
    store = LocalStore(tmp_path / "store")
    seen = []
    for retrieve in (c_get, c_move):
        folder = store.series_folder(pacs_ct.study_uid, pacs_ct.series_uid)
        for p in folder.glob("*.dcm"):
            p.unlink()
        store = LocalStore(store.root)
        got = retrieve(orthanc.dimse_server(), pacs_ct.study_uid, pacs_ct.series_uid,
                       store=store, progress=lambda done, total: seen.append((done, total)))
        assert listings == [] and len(got.stored) == 20 and got.skipped == 0
        assert seen[-1] == (20, 20) and {total for _, total in seen} == {20}
        _same_pixels(got.stored, pacs_ct)
        seen.clear()
    sorted(folder.glob("*.dcm"))[0].unlink()
    retry = c_get(orthanc.dimse_server(), pacs_ct.study_uid, pacs_ct.series_uid,
                      store=LocalStore(store.root), progress=lambda *a: seen.append(a))
    assert len(listings) == 1 and (len(retry.stored), retry.skipped) == (1, 19)
    assert seen[-1] == (20, 20)


class _SlowDisk(LocalStore):
    """A store whose writes take a while, noting the thread each runs on; the fourth write
    and later ones fail when `full_after` is set."""

    def __init__(self, root, full_after=None):
        super().__init__(root)
        self.threads, self.full_after = [], full_after

    def add(self, data):
        self.threads.append(threading.current_thread().name)
        if self.full_after is not None and len(self.threads) > self.full_after:
            raise PacsError("Could not write it (No space left on device).")
        time.sleep(0.02)
        return super().add(data)


def test_writes_run_beside_the_network_and_are_done_when_get_returns(
        orthanc, pacs_ct, tmp_path):
    store = _SlowDisk(tmp_path / "store")
    got = c_get(orthanc.dimse_server(), pacs_ct.study_uid, pacs_ct.series_uid, store=store)
    assert len(got.stored) == 20 and got.failed == []
    assert threading.current_thread().name not in store.threads  # the writer thread wrote
    assert not any(t.name.startswith("medviewer-store") for t in threading.enumerate())
    _same_pixels(sorted(got.stored[0].parent.iterdir()), pacs_ct)  # whole files, no temporary


def test_a_disk_failure_mid_get_is_a_sentence_and_a_retry_fetches_the_rest(
        orthanc, pacs_ct, tmp_path, monkeypatch):
    monkeypatch.setattr(dimse_retrieve._Retrieval, "WRITE_AHEAD", 1)  # each write before the next
    store = _SlowDisk(tmp_path / "store", full_after=3)
    got = c_get(orthanc.dimse_server(), pacs_ct.study_uid, pacs_ct.series_uid, store=store)
    assert len(got.stored) == 3 and "No space left" in got.failed[0]
    assert len(store.threads) == 4  # the rest was refused, not written
    folder = got.stored[0].parent
    assert sorted(folder.iterdir()) == sorted(got.stored)
    retry = c_get(orthanc.dimse_server(), pacs_ct.study_uid, pacs_ct.series_uid,
                      store=LocalStore(store.root))
    assert (len(retry.stored), retry.skipped, retry.failed) == (17, 3, [])


def test_a_server_without_instance_listing_still_retrieves_and_skips_what_is_here(
        orthanc, pacs_ct, tmp_path, monkeypatch):
    monkeypatch.setattr(dimse_retrieve, "_instances", lambda *_a: [])  # no IMAGE-level C-FIND
    store = LocalStore(tmp_path / "store")
    got = c_get(orthanc.dimse_server(), pacs_ct.study_uid, pacs_ct.series_uid, store=store)
    assert len(got.stored) == 20
    _same_pixels(got.stored, pacs_ct)
    again = c_get(orthanc.dimse_server(), pacs_ct.study_uid, store=store)
    assert (again.stored, again.skipped) == ([], 20)


def test_an_unknown_study_is_a_sentence(orthanc, tmp_path):
    for retrieve in (c_get, c_move):
        with pytest.raises(PacsError, match="has no images of that study .*search again"):
            retrieve(orthanc.dimse_server(), "1.2.3.4.5.6.7.8.9", store=LocalStore(tmp_path))


def test_cancel_mid_get_leaves_whole_files_and_a_retry_fetches_only_the_rest(
        orthanc, pacs_ct, tmp_path):
    store = LocalStore(tmp_path / "store")
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return len(calls) > 6

    with pytest.raises(PacsCancelled) as info:
        c_get(orthanc.dimse_server(), pacs_ct.study_uid, pacs_ct.series_uid, store=store,
                  cancelled=cancelled)
    assert "cancelled" in str(info.value)
    folder = store.series_folder(pacs_ct.study_uid, pacs_ct.series_uid)
    kept = sorted(folder.glob("*"))
    assert 0 < len(kept) < 20
    assert all(p.suffix == ".dcm" for p in kept)  # no temporary left behind
    for p in kept:
        assert pydicom.dcmread(p).pixel_array.shape == (64, 64)  # each kept file is whole
    retry = c_get(orthanc.dimse_server(), pacs_ct.study_uid, pacs_ct.series_uid,
                      store=LocalStore(store.root))
    assert retry.skipped == len(kept) and len(retry.stored) == 20 - len(kept)
    _same_pixels(sorted(folder.glob("*.dcm")), pacs_ct)


def test_move_to_medviewers_own_receiver(orthanc, pacs_ct, tmp_path):
    store = LocalStore(tmp_path / "moved")
    result = c_move(orthanc.dimse_server(), pacs_ct.study_uid, store=store)
    assert len(result.stored) == 20 and result.failed == []
    _same_pixels(result.stored, pacs_ct)


def test_cancel_mid_move_keeps_whole_files_and_a_retry_completes(orthanc, pacs_ct, tmp_path):
    store = LocalStore(tmp_path / "moved")
    done = []
    with pytest.raises(PacsCancelled):
        c_move(orthanc.dimse_server(), pacs_ct.study_uid, store=store,
                   progress=lambda n, total: done.append(n), cancelled=lambda: len(done) >= 4)
    folder = store.series_folder(pacs_ct.study_uid, pacs_ct.series_uid)
    kept = sorted(folder.glob("*"))
    assert 0 < len(kept) < 20 and all(p.suffix == ".dcm" for p in kept)
    retry = c_move(orthanc.dimse_server(), pacs_ct.study_uid, store=LocalStore(store.root))
    assert retry.skipped == len(kept) and len(retry.stored) == 20 - len(kept)
    _same_pixels(sorted(folder.glob("*.dcm")), pacs_ct)


def test_receiver_stores_a_push_and_refuses_what_it_cannot_place(orthanc, pacs_ct, tmp_path):
    store = LocalStore(tmp_path / "pushed")
    port = orthanc.receive_port
    with Receiver(store, "MEDVIEWER", port, host="127.0.0.1") as receiver:
        me = orthanc.dimse_server(ae_title="MEDVIEWER", port=port, calling_ae="ORTHANC")
        sent = dimse.send(me, pacs_ct.paths[:3])
        assert sent.accepted == pacs_ct.sop_uids[:3] and sent.failed == []
        assert len(receiver.received) == 3 and all(store.has(u) for u in sent.accepted)
        broken = tmp_path / "no-series.dcm"
        ds = pydicom.dcmread(pacs_ct.paths[3])
        del ds.SeriesInstanceUID
        ds.save_as(broken)
        refused = dimse.send(me, [broken])
        assert refused.accepted == [] and "0xC000" in refused.failed[0][1]
        assert "kept" in refused.failed[0][1]

        def full_disk(_data):
            raise PacsError("No space left on device.")

        store.add = full_disk
        full = dimse.send(me, [pacs_ct.paths[4]])
        assert full.accepted == [] and "0xA700" in full.failed[0][1]
        assert not store.has(pacs_ct.sop_uids[4])


def test_send_stores_into_orthanc(orthanc, pacs_ct, tmp_path):
    from medviewer.core import synthetic

    voxels = np.zeros((2, 16, 16), np.int16)
    paths = synthetic.write_series(tmp_path / "s", voxels, seed=1401, PatientID="PACSSEND1",
                                   PatientName="SEND^ME")
    bad = tmp_path / "not-dicom.dcm"
    bad.write_text("hello")
    result = dimse.send(orthanc.dimse_server(), [*paths, bad])
    assert len(result.accepted) == 2
    assert result.failed[0][0] == str(bad) and "not a readable DICOM file" in result.failed[0][1]
    assert len(dimse.find_studies(orthanc.dimse_server(), patient_id="PACSSEND1")) == 1


def test_wrong_called_ae_title_is_a_sentence(orthanc):
    with pytest.raises(PacsError, match="is not called 'NOTORTHANC': check the PACS's AE title"):
        dimse.echo(orthanc.dimse_server(ae_title="NOTORTHANC"))


def test_server_down_is_a_sentence(orthanc, unused_port):
    with pytest.raises(PacsError, match="nothing accepts connections there"):
        dimse.echo(orthanc.dimse_server(port=unused_port()))


def test_refused_association_is_a_sentence(orthanc, unused_port):
    """A peer that refuses every association (pynetdicom's own SCP with a full house)."""
    from pynetdicom import AE

    port = unused_port()
    ae = AE(ae_title="BUSY")
    ae.add_supported_context(dimse.VERIFICATION)
    ae.require_calling_aet = ["SOMEONE"]  # refuses MEDVIEWER: calling AE not recognised
    scp = ae.start_server(("127.0.0.1", port), block=False)
    try:
        with pytest.raises(PacsError, match="does not know MedViewer's AE title 'MEDVIEWER'"):
            dimse.echo(orthanc.dimse_server(ae_title="BUSY", port=port))
    finally:
        scp.shutdown()


def test_a_silent_peer_times_out_with_a_sentence(orthanc, unused_port, monkeypatch):
    monkeypatch.setattr(dimse, "ACSE_TIMEOUT", 1.0)
    port = unused_port()
    with socket.socket() as silent:  # accepts TCP (backlog) but never speaks DICOM
        silent.bind(("127.0.0.1", port))
        silent.listen(1)
        with pytest.raises(PacsError, match="did not answer the association request within 1 s"):
            dimse.echo(orthanc.dimse_server(port=port))


def test_server_killed_mid_get_is_a_sentence_and_a_retry_completes(orthanc_factory, pacs_ct,
                                                                   tmp_path):
    private = orthanc_factory()
    private.upload(pacs_ct.paths)
    store = LocalStore(tmp_path / "store")
    arrived = threading.Event()
    count = []

    def progress(done, total):
        count.append(done)
        if len(count) == 5:
            arrived.set()
            private.kill()

    with pytest.raises(PacsError) as info:
        c_get(private.dimse_server(), pacs_ct.study_uid, store=store, progress=progress)
    assert not isinstance(info.value, PacsCancelled)
    assert "stopped answering" in str(info.value) or "could not send" in str(info.value)
    folder = store.series_folder(pacs_ct.study_uid, pacs_ct.series_uid)
    kept = sorted(folder.glob("*"))
    assert all(p.suffix == ".dcm" for p in kept) and len(kept) < 20
    private.start()
    retry = c_get(private.dimse_server(), pacs_ct.study_uid, store=LocalStore(store.root))
    assert retry.skipped == len(kept) and retry.skipped + len(retry.stored) == 20
    _same_pixels(sorted(folder.glob("*.dcm")), pacs_ct)


def test_a_receive_port_in_use_is_a_sentence(orthanc, unused_port, tmp_path):
    port = unused_port()
    with Receiver(LocalStore(tmp_path), "MEDVIEWER", port, host="127.0.0.1"):
        with pytest.raises(PacsError, match=f"cannot listen on port {port} .*choose another"):
            Receiver(LocalStore(tmp_path), "OTHER", port, host="127.0.0.1").start()
