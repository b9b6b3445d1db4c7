"""`medviewer pacs echo|find|get|send` against the real Orthanc, in process (same namespace)."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from medviewer.cli import main
from medviewer.pacs import servers as srv


@pytest.fixture(autouse=True)
def _own_server_list(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDVIEWER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(srv, "_memory_secrets", {})
    monkeypatch.setattr(srv, "_keyring", lambda: None)
    monkeypatch.delenv("MEDVIEWER_PACS_SECRET", raising=False)


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["pacs", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _pixels(paths) -> np.ndarray:
    slices = sorted((pydicom.dcmread(p) for p in paths), key=lambda d: int(d.InstanceNumber))
    return np.stack([d.pixel_array for d in slices])


def test_send_find_get_round_trip_over_dicomweb(orthanc, tmp_path, capsys):
    from medviewer.core import synthetic

    voxels = (np.arange(3 * 16 * 16, dtype=np.int16).reshape(3, 16, 16) * 3) - 500
    paths = synthetic.write_series(tmp_path / "src", voxels, seed=1403, PatientName="CLI^WEB",
                                   PatientID="CLIWEB01", StudyDate="20220707")
    srv.save_servers([orthanc.web_server(name="web")])

    code, out, _ = _run(capsys, "echo", "web")
    assert code == 0 and out.startswith("The DICOMweb server 'web' answered")

    code, out, err = _run(capsys, "send", "--url", orthanc.base_url, tmp_path / "src")
    assert (code, out.strip(), err) == (0, "command line accepted 3 of 3 instance(s).", "")

    code, out, _ = _run(capsys, "find", "web", "--name", "CLI^W*", "--json")
    [study] = json.loads(out)
    assert code == 0 and (study["patient_id"], study["study_date"]) == ("CLIWEB01", "20220707")
    assert study["study_uid"] == str(pydicom.dcmread(paths[0]).StudyInstanceUID)
    code, out, _ = _run(capsys, "find", "web", "--id", "CLIWEB01")
    assert code == 0 and "CLI^WEB [CLIWEB01]" in out and out.rstrip().endswith("1 study")
    code, out, _ = _run(capsys, "find", "web", "--study", study["study_uid"], "--json")
    [series] = json.loads(out)
    assert series["instance_count"] == 3

    store = tmp_path / "store"
    code, out, _ = _run(capsys, "get", "web", study["study_uid"], "--store", store)
    assert code == 0 and out.startswith("Stored 3 instance(s), 0 already there")
    assert np.array_equal(_pixels(store.rglob("*.dcm")), _pixels(paths))
    code, out, _ = _run(capsys, "get", "web", study["study_uid"], "--series",
                        series["series_uid"], "--store", store)
    assert code == 0 and out.startswith("Stored 0 instance(s), 3 already there")


def test_failures_exit_2_with_a_sentence(orthanc, tmp_path, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nobody = s.getsockname()[1]
    code, out, err = _run(capsys, "echo", "nowhere")
    assert code == 2 and out == "" and "no PACS server called 'nowhere'" in err
    code, _, err = _run(capsys, "find")
    assert code == 2 and "Say which PACS" in err
    code, _, err = _run(capsys, "echo", "--url", f"http://127.0.0.1:{nobody}/dicom-web")
    assert code == 2 and "cannot be reached" in err and "Traceback" not in err
    code, _, err = _run(capsys, "get", "--url", orthanc.base_url, "1.2.3", "--method", "move")
    assert code == 2 and "has no C-MOVE" in err
    code, _, err = _run(capsys, "get", "--host", orthanc.host, "--ae", "X", "1.2", "--method",
                        "wado")
    assert code == 2 and "WADO-RS needs a DICOMweb server" in err
    code, _, err = _run(capsys, "echo", "--url", orthanc.base_url, "--user", "alice")
    assert code == 2 and "MEDVIEWER_PACS_SECRET" in err
    code, _, err = _run(capsys, "send", "--url", orthanc.base_url, tmp_path / "missing")
    assert code == 2 and "is not a file or folder" in err
    (tmp_path / "junk.dcm").write_text("no")
    code, out, err = _run(capsys, "send", "--url", orthanc.base_url, tmp_path / "junk.dcm")
    assert code == 2 and "accepted 0 of 1" in out and "not a readable DICOM" in err


def test_dimse_one_off_server_sends_a_saved_seg_finds_and_gets_it_back(orthanc, tmp_path,
                                                                        capsys):
    """C-STORE a CT and its saved SEG, C-FIND by wildcard, C-GET the SEG and C-MOVE the CT."""
    from medviewer.core import synthetic
    from medviewer.core.annotations import read_seg, write_seg
    from medviewer.core.dicom import load_series, scan

    voxels, _ = synthetic.ct_chest_phantom((6, 32, 32), (5.0, 8.0, 8.0))
    paths = synthetic.write_series(tmp_path / "ct", voxels, spacing=(5.0, 8.0, 8.0), seed=1404,
                                   PatientName="CLI^DIMSE", PatientID="CLIDIMSE1",
                                   StudyDate="20210304")
    volume = load_series(scan(tmp_path / "ct", cache=False).all_series()[0])
    labels = np.zeros(volume.voxels.shape, np.uint8)
    labels[1:4, 8:20, 10:22] = 1
    seg = write_seg(labels, volume, ["background", "lesion"], tmp_path / "seg" / "seg.dcm")
    peer = ["--host", orthanc.host, "--port", orthanc.dicom_port, "--ae", orthanc.ae_title,
            "--receive-port", orthanc.receive_port]

    code, out, _ = _run(capsys, "echo", *peer)
    assert code == 0 and "ms" in out
    code, out, err = _run(capsys, "send", *peer, tmp_path / "ct", seg)
    assert (code, out.strip(), err) == (0, "command line accepted 7 of 7 instance(s).", "")
    code, out, _ = _run(capsys, "find", *peer, "--name", "CLI^DI*", "--json")
    [study] = json.loads(out)
    assert code == 0 and study["patient_id"] == "CLIDIMSE1"
    code, out, _ = _run(capsys, "find", *peer, "--study", study["study_uid"], "--json")
    by_modality = {s["modality"]: s for s in json.loads(out)}
    assert code == 0 and by_modality["SEG"]["instance_count"] == 1

    store = tmp_path / "store"
    code, out, _ = _run(capsys, "get", *peer, study["study_uid"], "--series",
                        by_modality["SEG"]["series_uid"], "--store", store)
    assert code == 0 and out.startswith("Stored 1 instance(s)")
    [seg_back] = store.rglob("*.dcm")
    back, names = read_seg(seg_back, volume)
    assert names[1] == "lesion" and np.array_equal(back, labels)
    code, out, err = _run(capsys, "get", *peer, study["study_uid"], "--series",
                          by_modality["CT"]["series_uid"], "--method", "move", "--store", store)
    assert code == 0 and out.startswith("Stored 6 instance(s), 0 already there"), err
    ct_back = [p for p in store.rglob("*.dcm") if p != seg_back]
    assert np.array_equal(_pixels(ct_back), _pixels(paths))


def test_a_secret_from_the_environment_is_held_for_this_run_only(orthanc, capsys, monkeypatch):
    monkeypatch.setenv("MEDVIEWER_PACS_SECRET", "from-env")
    code, out, _ = _run(capsys, "echo", "--url", orthanc.base_url, "--user", "alice")
    assert code == 0 and "answered" in out
    assert srv._memory_secrets == {"command line/alice": "from-env"}
    assert not srv.servers_path().exists()  # nothing written anywhere

