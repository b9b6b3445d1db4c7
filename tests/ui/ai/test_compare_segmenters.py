"""AI > Compare Segmentation Models (Lab 4) in the real window: every lab 4 segmenter on the
series, one table row per model (label volumes; Dice against the series' own mask when it
has one), one overlay at a time, chosen by clicking a row.

Two tiny ONNX segmenters label the phantom CT by windowed intensity x (tests/ui/ai_models.py):
"test-seg" soft tissue for 0.3 < x <= 0.7 and bone above; "test-seg-narrow" soft tissue for
0.45 < x <= 0.55 and bone above 0.55. Both answers follow from the voxels alone.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper

from tests.ui.ai_models import SEG_COLOURS, SIZE, WINDOW, _onnx, _write_model, write_test_models
from tests.ui.gui import _open, _run

VOXEL_ML = 5.0 * 5.5 * 5.5 / 1000  # the phantom CT's voxels (tests/conftest.py)
THRESHOLDS = {"test-seg": 0.3, "test-seg-narrow": 0.45}


def _seg_graph(t1: float) -> bytes:
    """Logits [0, x - t1, 2x - 1]: soft tissue for t1 < x <= 1 - t1, bone above."""
    nodes = [helper.make_node("Mul", ["image", "zero"], ["c0"]),
             helper.make_node("Sub", ["image", "t1"], ["c1"]),
             helper.make_node("Mul", ["image", "two"], ["x2"]),
             helper.make_node("Sub", ["x2", "one"], ["c2"]),
             helper.make_node("Concat", ["c0", "c1", "c2"], ["logits"], axis=1)]
    consts = {"zero": [0.0], "t1": [t1], "two": [2.0], "one": [1.0]}
    return _onnx(nodes, {"image": ["batch", 1, SIZE, SIZE]}, ["logits"], consts)


def expected_labels(hu: np.ndarray, t1: float) -> np.ndarray:
    x = np.clip((hu.astype(np.float32) - (WINDOW[0] - WINDOW[1] / 2)) / WINDOW[1], 0, 1)
    return np.where(x > 1 - t1, 2, np.where(x > t1, 1, 0)).astype(np.uint8)


@pytest.fixture
def window(make_main_window, tmp_path, monkeypatch, qtbot, ct_series_dir):
    root = write_test_models(tmp_path / "models")
    _write_model(root, "test-seg-narrow", _seg_graph(THRESHOLDS["test-seg-narrow"]), lab=4,
                 task="segmentation",
                 labels=list(zip(("background", "soft tissue", "bone"), SEG_COLOURS,
                                 strict=True)),
                 outputs=["logits"], image_shape=["batch", 1, SIZE, SIZE])
    monkeypatch.setenv("MEDVIEWER_MODELS_DIR", str(root))
    win = make_main_window()
    win.resize(1300, 850)
    _open(win, qtbot, ct_series_dir)
    return win


def _cells(table) -> list[list[str]]:
    return [[table.item(r, c).text() for c in range(table.columnCount())]
            for r in range(table.rowCount())]


def test_lab4_models_side_by_side_one_overlay_at_a_time(window, qtbot):
    doc, panel, menu = window.document, window.ai.panel, window.ai.menu
    assert menu.compare_segmenters_action.isEnabled()
    output = _run(window, qtbot, menu.compare_segmenters_action.trigger)
    assert output.scope == "compare"
    ids = [r.model_id for r in output.results]  # lab 4's segmenters (and the shipped ones)
    assert set(THRESHOLDS) <= set(ids) and "test-cls" not in ids and "test-det" not in ids
    assert all(doc.ai_results[i].task == "segmentation" for i in range(len(ids)))
    expected = {i: expected_labels(doc.volume.voxels, t) for i, t in THRESHOLDS.items()}
    for model_id, labels in expected.items():
        assert np.mean(output.results[ids.index(model_id)].label_map == labels) > 0.995

    table = panel.comparison.table
    assert panel.comparison.isVisibleTo(panel) and not panel.verdicts_group.isVisibleTo(panel)
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert headers[0] == "Model" and len(set(headers)) == len(headers)  # labels of all models
    col = headers.index("soft tissue (mL)")
    assert "bone (mL)" in headers and table.rowCount() == len(ids)
    for row, result in zip(_cells(table), output.results, strict=True):
        if result.model_id in THRESHOLDS:
            tissue = int((result.label_map == 1).sum())
            assert float(row[col]) == pytest.approx(tissue * VOXEL_ML, abs=0.06)
        else:  # a shipped chest model: no "soft tissue" label
            assert row[col] == "\u2013"
    a, b = (ids.index(i) for i in THRESHOLDS)
    assert _cells(table)[a][col] != _cells(table)[b][col]

    item = window.viewer.single_view.layers["ai"].labels_item
    doc.set_ai_display(label_fill=True)  # whole areas: the drawn pixels are the labels
    differ = (output.results[a].label_map != output.results[b].label_map).sum(axis=(1, 2))
    k = int(np.argmax(differ))
    doc.set_slice(k)
    rgba = np.array([(0, 0, 0, 0), (0, 255, 0, 255), (255, 0, 255, 255)], np.uint8)

    def drawn_is(result) -> bool:  # the label colours (tests/ui/ai_models.py) where its labels are
        if result.model_id not in THRESHOLDS:
            return bool(((item.rgba()[..., 3] > 0) == (result.label_map[k] > 0)).all())
        return bool((item.rgba() == rgba[result.label_map[k]]).all())

    assert doc.ai_result is output.results[0] and drawn_is(output.results[0])
    for row in (a, b):  # the reader clicks one model's row, then the other's
        panel.comparison.choose(row)
        chosen = output.results[row]
        assert doc.ai_result is chosen and drawn_is(chosen)
        assert table.currentRow() == row and table.rowCount() == len(ids)
        labels = panel.labels_table  # the label volumes follow the model on screen
        assert labels.item(0, 1).text() == "soft tissue"
        assert labels.item(0, 2).text() == str(int((chosen.label_map == 1).sum()))
    assert not drawn_is(output.results[a])
    assert "showing Test Seg Narrow" in panel.summary.text()


def test_with_a_mask_on_the_series_each_model_is_scored_against_it(window, qtbot, tmp_path):
    doc, panel = window.document, window.ai.panel
    truth = expected_labels(doc.volume.voxels, THRESHOLDS["test-seg"])
    labelmap = doc.ensure_annotation().labelmap
    tissue, bone = labelmap.table.add("Soft tissue"), labelmap.table.add("bone")
    labelmap.array[:] = np.where(truth == 1, tissue.value, np.where(truth == 2, bone.value, 0))
    output = _run(window, qtbot, lambda: window.ai.compare_segmenters(list(THRESHOLDS)))
    table = panel.comparison.table
    assert table.horizontalHeaderItem(1).text() == "soft tissue (mL · Dice)"
    by_model = {r.model_id: row for r, row in zip(output.results, _cells(table), strict=True)}
    narrow = expected_labels(doc.volume.voxels, THRESHOLDS["test-seg-narrow"])
    for col, value in ((1, 1), (2, 2)):
        a, b = narrow == value, truth == value
        dice = 2 * (a & b).sum() / (a.sum() + b.sum())
        assert float(by_model["test-seg-narrow"][col].split(" · ")[1]) == pytest.approx(
            dice, abs=2e-3)
        assert by_model["test-seg"][col].endswith(" · 1.000")
    assert "HD95" in table.item(0, 1).toolTip() and "pixel accuracy" in table.item(0, 0).toolTip()
    # AI > Export Results: each model's own volumes and its scores against the mask
    data = json.loads(window.ai.export_results(tmp_path / "compared.json").read_text())
    rows = {(f["model"], f["label"]): f["voxels"] for f in data["findings"] if "voxels" in f}
    assert rows[("test-seg-narrow", "soft tissue")] == int((narrow == 1).sum())
    assert rows[("test-seg", "soft tissue")] == int((truth == 1).sum())
    scored = {r["model"]: r["against_mask"]["labels"]["bone"]["dice"] for r in data["results"]}
    assert scored["test-seg"] == 1.0 and scored["test-seg-narrow"] < 1.0


def test_nothing_to_compare_says_so(make_main_window, models_dir, monkeypatch, qtbot, tmp_path):
    from medviewer.core import synthetic as syn

    monkeypatch.setenv("MEDVIEWER_MODELS_DIR", str(models_dir))
    win = make_main_window()
    syn.write_series(tmp_path / "mr", np.full((3, SIZE, SIZE), 100, np.int16), modality="MR")
    _open(win, qtbot, tmp_path / "mr")
    assert not win.ai.menu.compare_segmenters_action.isEnabled()  # test-seg reads CT only
    assert win.ai.compare_segmenters() is False
    assert "No lab 4 segmentation model can run" in win.status_label.text()
