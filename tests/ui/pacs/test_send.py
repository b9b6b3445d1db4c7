"""Annotate ▸ Send to PACS… and AI ▸ Send Results to PACS… in the real window, on the fake
client: the saved SEG and SR of the open series are sent and the status says what the server
accepted; a refusal keeps the local files and says why; the AI's segmentation goes as a real
DICOM SEG."""

from __future__ import annotations

import numpy as np
import pydicom

from medviewer.core.annotations.sr_read import read_sr
from medviewer.core.annotations.workspace import Workspace
from medviewer.inference.results import Box, Measurement, Result
from medviewer.pacs import servers
from medviewer.ui.document.ai_state import AiOutput
from tests.ui.gui import _open
from tests.ui.pacs.conftest import dimse_server


def _window(pacs_window, qtbot, ct_series_dir):
    servers.save_servers([dimse_server()])
    _open(pacs_window, qtbot, ct_series_dir)
    return pacs_window


def _send(dialog, qtbot):
    with qtbot.waitSignal(dialog.sigSent, timeout=10_000) as blocker:
        dialog.send_button.click()
    return blocker.args


def test_send_annotations_sends_the_saved_seg_and_sr(pacs_window, pacs_env, qtbot,
                                                      ct_series_dir):
    win = _window(pacs_window, qtbot, ct_series_dir)
    volume = win.document.volume
    win.document.volume = type("Unsaved", (), {"series": None, "sources": []})()
    win.pacs.send_annotations_action.trigger()  # not read from files: the core's sentence
    assert win.last_error.startswith("This series was not loaded from files")
    win.document.volume = volume
    win.pacs.send_annotations_action.trigger()  # nothing saved yet: a sentence, no dialog
    assert "no saved annotations yet" in win.last_error and "send" not in win.pacs.dialogs
    workspace = Workspace.for_series(win.document.volume)
    workspace.folder.mkdir(parents=True)
    workspace.seg_path.write_bytes(b"seg")
    workspace.sr_path.write_bytes(b"sr")
    win.document.ensure_annotation().dirty = True  # edited since the save
    win.pacs.send_annotations_action.trigger()
    dialog = win.pacs.dialogs["send"]
    assert dialog.isVisible() and dialog.list.count() == 2
    assert "unsaved changes" in dialog.status.text()
    assert dialog.list.item(0).toolTip() == str(workspace.seg_path)
    text, ok = _send(dialog, qtbot)
    assert pacs_env.client.sent == [[str(workspace.seg_path), str(workspace.sr_path)]]
    assert ok and text == ("'Orthanc' accepted 2 of 2 file(s): segmentation.dcm, "
                           "annotations.dcm.")
    assert win.status_label.text() == text

    pacs_env.client.fail["send"] = "ORTHANC at 127.0.0.1:4242 refused the association."
    text, ok = _send(dialog, qtbot)
    assert not ok
    assert text == ("Nothing was sent: ORTHANC at 127.0.0.1:4242 refused the association. "
                    "The local files are kept.")
    assert workspace.seg_path.read_bytes() == b"seg" and workspace.sr_path.is_file()


def test_send_ai_results_writes_the_segmentation_as_dicom_seg(pacs_window, pacs_env, qtbot,
                                                              ct_series_dir):
    win = _window(pacs_window, qtbot, ct_series_dir)
    win.pacs.send_ai_action.trigger()
    assert "no AI result" in win.last_error
    volume = win.document.volume
    label_map = np.zeros(volume.voxels.shape, np.uint8)
    label_map[8:12, 20:40, 20:40] = 1
    result = Result("lab4-test", "1.0", "segmentation", ["background", "lung"],
                    ["#000000", "#ff0000"], label_map=label_map, title="Test lungs")
    win.document.set_ai_output(AiOutput((result,), "series"))
    win.pacs.send_ai_action.trigger()
    dialog = win.pacs.dialogs["send"]
    text, ok = _send(dialog, qtbot)
    assert ok, text
    [[path]] = pacs_env.client.sent
    assert text == f"'Orthanc' accepted 1 of 1 file(s): {path.rsplit('/', 1)[1]}."
    assert not dialog.keep.exists()  # written only to be sent: gone once accepted

    pacs_env.client.fail["send"] = "STOW-RS answered 503 Service Unavailable."
    text, ok = _send(dialog, qtbot)
    assert not ok and f"They are in {dialog.keep}." in text
    [kept] = dialog.keep.glob("*.dcm")
    seg = pydicom.dcmread(kept)
    assert seg.Modality == "SEG"
    assert seg.SeriesDescription == "AI Test lungs"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == \
        volume.series.series_instance_uid


def test_send_ai_results_writes_detections_and_verdicts_as_dicom_sr(pacs_window, pacs_env,
                                                                   qtbot, ct_series_dir):
    import highdicom as hd

    win = _window(pacs_window, qtbot, ct_series_dir)
    volume = win.document.volume
    ctr = Measurement("Cardiothoracic ratio", 0.55, "ratio", 3, "suggests cardiomegaly",
                      (((10.0, 20.0), (30.0, 20.0)), ((5.0, 22.0), (41.0, 22.0))))
    detector = Result("lab5-test", "2.0", "detection", ["heart"], ["#ff0000"],
                      boxes=[Box(10, 12, 30, 40, "heart", 0.9, 3)], slice_indices=[3],
                      measurements=[ctr])
    classifier = Result("lab2-test", "1.1", "classification", ["normal", "nodule"],
                        ["#00ff00", "#ff0000"], slice_indices=[3, 4],
                        scores=np.array([[0.2, 0.8], [0.7, 0.3]], np.float32))
    win.document.set_ai_output(AiOutput((detector, classifier), "series"))
    win.pacs.send_ai_action.trigger()
    dialog = win.pacs.dialogs["send"]
    pacs_env.client.fail["send"] = "STOW-RS answered 503 Service Unavailable."
    text, ok = _send(dialog, qtbot)  # refused: the files stay for us to read
    assert not ok and "They are in" in text
    box_sr, class_sr = sorted(dialog.keep.glob("*.sr.dcm"))
    assert [p.name for p in (box_sr, class_sr)] == ["0-lab5-test.sr.dcm",
                                                    "1-lab2-test.sr.dcm"]
    sr = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(box_sr))
    [group] = sr.content.get_planar_roi_measurement_groups()
    assert group.finding_type is not None
    assert str(volume.series.series_instance_uid) in str(pydicom.dcmread(box_sr))
    # read back as the viewer reads an SR (the sidecar beside it is not sent: read without)
    for sidecar in dialog.keep.glob("*.json"):
        sidecar.unlink()
    [box] = read_sr(box_sr, volume).boxes
    assert (box.x0, box.y0, box.x1, box.y1, box.slice_index, box.label) == \
        (10, 12, 30, 40, 3, "heart")
    assert box.source == "model:lab5-test@2.0"
    verdicts = read_sr(class_sr, volume).class_labels
    assert sorted((c.slice_index, c.label) for c in verdicts) == [(3, "nodule"), (4, "normal")]
    [ratio] = [item for item in pydicom.dcmread(box_sr).ContentSequence
               if item.ValueType == "CONTAINER" and "ratio" in str(item).lower()] or [None]
    assert ratio is not None and "0.55" in str(ratio)  # lab 5's CTR went with the boxes


def test_send_ai_results_adds_the_lesions_as_an_sr(pacs_window, pacs_env, qtbot,
                                                   ct_series_dir):
    from medviewer.core.annotations.sr_lesions import read_lesions
    from medviewer.core.lesions import find_lesions, keep_tracking

    win = _window(pacs_window, qtbot, ct_series_dir)
    volume = win.document.volume
    label_map = np.zeros(volume.voxels.shape, np.uint8)
    label_map[8:11, 20:26, 20:26] = 1
    label_map[12:14, 40:44, 40:44] = 1
    labels = ["background", "nodule"]
    lesions = tuple(keep_tracking(find_lesions(label_map, volume, labels), ()))  # as the worker
    result = Result("lab4-test", "1.0", "segmentation", labels, ["#000000", "#ff0000"],
                    label_map=label_map)
    win.document.set_ai_output(AiOutput((result,), "series", lesions=lesions))
    win.pacs.send_ai_action.trigger()
    dialog = win.pacs.dialogs["send"]
    pacs_env.client.fail["send"] = "STOW-RS answered 503 Service Unavailable."
    _send(dialog, qtbot)
    names = sorted(p.name for p in dialog.keep.glob("*.dcm"))
    assert names == ["0-lab4-test.lesions.sr.dcm", "0-lab4-test.seg.dcm"]
    back = read_lesions(dialog.keep / names[0])
    assert len(back) == 2 == len(lesions)
    assert {b.tracking_uid for b in back} == {lesion.tracking_uid for lesion in lesions}
