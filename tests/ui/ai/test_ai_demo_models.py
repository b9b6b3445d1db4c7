"""Every shipped demo model on the demo study, through the real window: the answer lands where
the phantom's ground truth says (ground_truth.json), drawn on the images."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from tests.ui.gui import _run as _gui_run

_run = functools.partial(_gui_run, timeout=120_000)  # a whole demo series


def test_lab1_reads_the_held_out_digits(demo_window, qtbot, truth):
    doc = demo_window.open_demo_series("DEMO-0004", "OT")
    _run(demo_window, qtbot, lambda: demo_window.ai.run_model("lab1-digits-mlp", "series"))
    result = doc.ai_result
    predicted = [int(result.labels[i]) for i in result.scores.argmax(axis=1)]
    expected = truth["digits"]["labels"]
    assert len(predicted) == len(expected)
    assert np.mean(np.equal(predicted, expected)) >= 0.9


def _centre_slice(nodule) -> int:
    return int(round(nodule["center_voxel"][0]))


def test_lab2_scores_the_nodule_slices_above_the_clear_ones(demo_window, qtbot, truth):
    doc = demo_window.open_demo_series("DEMO-0001", "CT")
    big = max(truth["chest_ct"]["nodules"], key=lambda n: n["diameter_mm"])
    doc.set_slice(_centre_slice(big))
    _run(demo_window, qtbot, lambda: demo_window.ai.run_model("lab2-nodule-slice", "slice"))
    assert doc.ai_result.predicted(0)[0] == "nodule"
    doc.set_slice(5)  # lung bases, far below every nodule
    _run(demo_window, qtbot, lambda: demo_window.ai.run_model("lab2-nodule-slice", "slice"))
    assert doc.ai_result.predicted(0)[0] == "no nodule"


def test_lab4_segments_lungs_and_the_nodules_on_the_overlay(demo_window, qtbot, truth):
    doc = demo_window.open_demo_series("DEMO-0001", "CT")
    _run(demo_window, qtbot, lambda: demo_window.ai.run_model("lab4-chest-unet", "series"))
    doc.set_ai_display(label_fill=True)  # whole areas (the default is outlines)
    result = doc.ai_result
    labels = result.labels
    assert result.label_map.shape == doc.volume.voxels.shape
    for nodule in truth["chest_ct"]["nodules"]:
        if nodule["diameter_mm"] < 15:
            continue
        k, row, col = (int(round(v)) for v in nodule["center_voxel"])
        assert labels[result.label_map[k, row, col]] == "nodule", nodule["label"]
        doc.set_slice(k)
        drawn = demo_window.viewer.single_view.layers["ai"].labels_item.rgba()
        assert drawn is not None and drawn[row, col, 3] > 0  # coloured, not transparent
    lung = result.label_map == labels.index("lung")
    assert lung.sum() > 0.05 * lung.size


@pytest.mark.parametrize("patient_id,key,label", [("DEMO-0002", "cardio_dx", "cardiomegaly"),
                                                  ("DEMO-0001", "chest_dx", "normal heart")])
def test_lab5_boxes_the_heart_with_the_right_finding(demo_window, qtbot, truth, patient_id,
                                                      key, label):
    doc = demo_window.open_demo_series(patient_id, "DX")
    _run(demo_window, qtbot, lambda: demo_window.ai.run_model("lab5-heart-frcnn", "slice"))
    boxes = sorted(doc.ai_result.boxes, key=lambda b: -b.score)
    assert boxes, "no box at all"
    top = boxes[0]
    x0, y0, x1, y1 = truth[key]["heart_box"]
    ix = max(0.0, min(top.x1, x1) - max(top.x0, x0))
    iy = max(0.0, min(top.y1, y1) - max(top.y0, y0))
    union = top.width * top.height + (x1 - x0) * (y1 - y0) - ix * iy
    assert ix * iy / union > 0.5
    assert top.label == label
    assert demo_window.viewer.single_view.layers["ai"].box_items  # drawn on the image


def test_lab3_compares_the_four_fusion_methods_on_the_nodule_ct(demo_window, qtbot):
    doc = demo_window.open_demo_series("DEMO-0001", "CT")
    output = _run(demo_window, qtbot, lambda: demo_window.ai.compare_fusion())
    verdicts = {r.model_id: r.predicted(0) for r in output.results}
    assert set(verdicts) == {"lab3-fusion-single", "lab3-fusion-early", "lab3-fusion-late",
                             "lab3-fusion-3d"}
    assert all(r.scores.shape == (1, len(r.labels)) for r in output.results)
    # the demo CT holds 10-20 mm nodules: the methods with a held-out ROC-AUC above 0.95 agree
    strong = [m for m in verdicts if m != "lab3-fusion-single"]
    positive = [m for m in strong if verdicts[m][0] != doc.ai_output.results[0].labels[0]]
    assert positive == strong


def test_grad_cam_of_the_slice_model_looks_at_the_nodule(demo_window, qtbot, truth):
    doc = demo_window.open_demo_series("DEMO-0001", "CT")
    big = max(truth["chest_ct"]["nodules"], key=lambda n: n["diameter_mm"])
    k, row, col = (int(round(v)) for v in big["center_voxel"])
    doc.set_slice(k)
    explanation = _run(demo_window, qtbot,
                       lambda: demo_window.ai.explain("lab2-nodule-slice", "Grad-CAM"))
    heat = explanation.heatmap
    assert heat.shape == doc.volume.voxels.shape[1:]
    radius = int(big["diameter_mm"] / 0.7)  # a nodule's width around its centre, in pixels
    near = heat[row - radius:row + radius, col - radius:col + radius].mean()
    assert near > 2 * heat.mean()
    assert demo_window.viewer.single_view.layers["ai"].heatmap_item.isVisible()


def test_eigencam_of_the_detector_is_hotter_inside_the_heart_box(demo_window, qtbot, truth):
    demo_window.open_demo_series("DEMO-0002", "DX")
    explanation = _run(demo_window, qtbot,
                       lambda: demo_window.ai.explain("lab5-heart-frcnn", "EigenCAM"))
    x0, y0, x1, y1 = truth["cardio_dx"]["heart_box"]
    heat = explanation.heatmap
    assert heat[y0:y1, x0:x1].mean() > 1.5 * heat.mean()


def test_lab4_against_the_ground_truth_mask_as_dicom_seg(demo_window, qtbot, tmp_path):
    from medviewer.core.annotations import write_seg
    from medviewer.core.synthetic import CHEST_LABELS, ct_chest_labels

    doc = demo_window.open_demo_series("DEMO-0001", "CT")
    truth = ct_chest_labels(doc.volume.voxels.shape, (2.5, 0.7, 0.7))
    names = sorted(CHEST_LABELS, key=CHEST_LABELS.get)
    seg = write_seg(truth, doc.volume, names, tmp_path / "truth.seg.dcm",
                    series_description="phantom truth", algorithm=("phantom", "1"))
    _run(demo_window, qtbot, lambda: demo_window.ai.run_model("lab4-chest-unet", "series"))
    scores = _run(demo_window, qtbot, lambda: demo_window.ai.compare_with_mask(seg))
    assert set(scores) == {"body", "lung", "nodule", "spine"}
    assert scores["lung"]["dice"] > 0.95 and scores["nodule"]["dice"] > 0.5
    text = demo_window.ai.panel.agreement_label.text()
    assert "lung" in text and f"{scores['lung']['dice']:.3f}" in text
