"""Through the real window on the demo study: lab 5's cardiothoracic ratio with its verdict in
the AI dock, in the exported CSV and in the SR; lab 1's MedicalCNN reading the digits."""

from __future__ import annotations

import csv
import functools

import numpy as np
import pytest

from tests.ui.gui import _run as _gui_run

_run = functools.partial(_gui_run, timeout=120_000)  # a whole demo series


@pytest.mark.parametrize("patient_id,key,verdict", [
    ("DEMO-0002", "cardio_dx", "suggests cardiomegaly"),
    ("DEMO-0001", "chest_dx", "within normal limits")])
def test_the_dock_shows_the_ctr_with_its_verdict(demo_window, qtbot, truth, patient_id, key,
                                                  verdict):
    doc = demo_window.open_demo_series(patient_id, "DX")
    _run(demo_window, qtbot, lambda: demo_window.ai.run_model("lab5-heart-frcnn", "slice"))
    (ctr,) = doc.ai_result.measurements
    assert ctr.value == pytest.approx(truth[key]["ctr"], abs=0.03)
    label = demo_window.ai.panel.measurements_label
    assert label.isVisibleTo(demo_window) and verdict in label.text()
    assert f"Cardiothoracic ratio {ctr.value:.2f}" in label.text()
    assert "thoracic width" in label.toolTip()
    # the two widths drawn on the film: heart over thorax is the ratio shown
    heart, thorax = sorted(line.line().length()
                           for line in demo_window.viewer.single_view.layers["ai"].line_items)
    assert heart / thorax == pytest.approx(ctr.value, abs=1e-3)
    demo_window.grab().save(f"/tmp/s21/ctr_dock_{patient_id}.png")


def test_the_ctr_goes_out_in_the_csv_and_the_sr(demo_window, qtbot, truth, tmp_path):
    import highdicom as hd

    doc = demo_window.open_demo_series("DEMO-0002", "DX")
    _run(demo_window, qtbot, lambda: demo_window.ai.run_model("lab5-heart-frcnn", "slice"))
    (ctr,) = doc.ai_result.measurements
    path = demo_window.ai.export_results(tmp_path / "results.csv")
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    (row,) = [r for r in rows if r.get("measurement") == "Cardiothoracic ratio"]
    assert float(row["value"]) == pytest.approx(ctr.value) and row["unit"] == "ratio"
    assert "cardiomegaly" in row["verdict"]
    assert row["sop_instance_uid"] == truth["cardio_dx"]["sop_instance_uid"]
    sr = hd.sr.srread(demo_window.ai.export_results(tmp_path / "findings.dcm"))
    (group,) = sr.content.get_image_measurement_groups()
    (measurement,) = group.get_measurements()
    assert measurement.name.meaning == "Cardiothoracic ratio"
    assert measurement.value == pytest.approx(ctr.value, abs=1e-4)


def test_lab1_medical_cnn_reads_the_held_out_digits(demo_window, qtbot, truth):
    doc = demo_window.open_demo_series("DEMO-0004", "OT")
    _run(demo_window, qtbot, lambda: demo_window.ai.run_model("lab1-digits-cnn", "series"))
    result = doc.ai_result
    assert result.model_id == "lab1-digits-cnn"
    predicted = [int(result.labels[i]) for i in result.scores.argmax(axis=1)]
    assert np.mean(np.equal(predicted, truth["digits"]["labels"])) >= 0.9
