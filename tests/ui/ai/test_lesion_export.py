"""AI > Export Results with lesions: a CSV row and a JSON entry per lesion, and the lesions as
DICOM SR whose Tracking UIDs are those of the CSV and stay when the SR is saved again; the
lesion table's rows and its note for a result of a few slices."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from medviewer.core import synthetic
from medviewer.core.annotations.sr_lesions import read_lesions
from medviewer.core.dicom import load_series
from medviewer.core.lesions import find_lesions, keep_tracking
from medviewer.inference.results import Result
from medviewer.ui.ai.export import write_lesions_sr, write_results
from medviewer.ui.document.ai_state import AiOutput

LABELS = ["background", "lung", "nodule"]


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ct")
    voxels, _ = synthetic.ct_chest_phantom((8, 48, 48), (2.5, 2.0, 2.0), noise_hu=0)
    synthetic.write_series(folder, voxels, spacing=(2.5, 2.0, 2.0))
    return load_series(folder)


def _output(volume, shift: int = 0) -> AiOutput:
    label_map = np.ones((8, 48, 48), np.uint8)
    label_map[2:5, 10 + shift:16 + shift, 10:16] = 2
    label_map[4:7, 30:34, 30:36] = 2
    result = Result("lab4-chest-unet", "1.0.0", "segmentation", LABELS, ["#000", "#00f", "#f00"],
                    slice_indices=list(range(8)),
                    sop_instance_uids=[s.sop_instance_uid for s in volume.sources])
    lesions = keep_tracking(find_lesions(label_map, volume, LABELS), [])
    return AiOutput((result,), "series", lesions=tuple(lesions))


def test_csv_and_json_have_one_entry_per_lesion(volume, tmp_path):
    output = _output(volume)
    with open(write_results(output, tmp_path / "r.csv"), newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["finding"] == "lesion"]
    data = json.loads(write_results(output, tmp_path / "r.json").read_text())
    assert [r["lesion"] for r in rows] == [les.name for les in output.lesions]
    assert [e["tracking_uid"] for e in data["lesions"]] == \
        [les.tracking_uid for les in output.lesions]
    for row, lesion in zip(rows, output.lesions, strict=True):
        assert float(row["long_axis_mm"]) == pytest.approx(lesion.long_axis_mm, abs=0.01)
        assert float(row["volume_ml"]) == pytest.approx(lesion.volume_ml, abs=1e-4)
        assert float(row["centre_x_mm"]) == pytest.approx(lesion.centre_lps[0], abs=0.01)
        assert row["sop_instance_uid"] == volume.sources[lesion.slice_index].sop_instance_uid


def test_the_sr_keeps_the_tables_tracking_uids_and_keeps_them_on_a_new_save(volume, tmp_path):
    path = tmp_path / "lesions.dcm"
    first = _output(volume)
    write_lesions_sr(first, volume, path)
    assert {les.tracking_uid for les in read_lesions(path)} == \
        {les.tracking_uid for les in first.lesions}
    rerun = _output(volume, shift=1)  # a new run: fresh UIDs, one lesion moved by a pixel
    assert not {les.tracking_uid for les in rerun.lesions} & \
        {les.tracking_uid for les in first.lesions}
    write_lesions_sr(rerun, volume, path)
    assert {les.tracking_uid for les in read_lesions(path)} == \
        {les.tracking_uid for les in first.lesions}


def test_a_table_of_one_slice_says_its_volumes_are_partial(qtbot, volume):
    from dataclasses import replace

    from medviewer.ui.ai.lesions_table import LesionTable

    table = LesionTable()
    qtbot.add_widget(table)
    output = _output(volume)
    table.show_output(output, lambda k: k + 1, "CT")
    assert table.table.rowCount() == 2 and "whole series" not in table.note.text()
    assert table.table.item(0, 3).text() == str(output.lesions[0].slice_index + 1)
    table.show_output(replace(output, scope="slice"), lambda k: k + 1, "CT")
    assert "whole series" in table.note.text()
    table.show_output(None, lambda k: k + 1, "CT")
    assert table.isHidden()


def test_the_sr_never_replaces_a_json_that_is_not_its_sidecar(volume, tmp_path):
    from medviewer.core.annotations import AnnotationError

    output = _output(volume)
    results = write_results(output, tmp_path / "findings.json")
    before = results.read_text()
    with pytest.raises(AnnotationError, match="not its sidecar"):
        write_lesions_sr(output, volume, tmp_path / "findings.dcm")
    assert results.read_text() == before and not (tmp_path / "findings.dcm").exists()
    write_lesions_sr(output, volume, tmp_path / "other.dcm")
    write_lesions_sr(output, volume, tmp_path / "other.dcm")  # its own sidecar: replaced
