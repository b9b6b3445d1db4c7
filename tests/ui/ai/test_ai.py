"""The AI in the real window: menu, worker runs, results dock, overlays, boxes, heatmaps.

The models are tiny ONNX graphs written here with onnx.helper (no torch: fast and exact), in
a temporary MEDVIEWER_MODELS_DIR, run by a test plugin registered in-process. Their answers
are predictable from the voxels, so the tests can check what is drawn where:
- "test-seg" labels the HU of the chest phantom: background below -520 HU, "soft tissue"
  up to 120 HU, "bone" above (window -200/1600 -> x in 0..1; thresholds 0.3 and 0.7);
- "test-cls" says "brighter" when a slice's mean (windowed) is above 0.5;
- "test-det" returns two fixed boxes (scores 0.9 and 0.3);
- "test-fusion-a/-b" are series-level verdicts with opposite thresholds.
"""

from __future__ import annotations

import csv
import json
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from medviewer.core import synthetic as syn
from medviewer.inference import (
    Explanation,
    InferenceCancelled,
    provider_status,
)
from medviewer.inference import preprocess as pp
from medviewer.ui.ai.layers import JET
from tests.ui.ai_models import (
    BOXES,
    SIZE,
    WINDOW,
    _seg_graph,
    _write_model,
)
from tests.ui.gui import _open, _run


@pytest.fixture
def ai_window(make_main_window, models_dir, monkeypatch, qtbot, ct_series_dir):
    """The main window with the test models installed and the phantom CT open."""
    monkeypatch.setenv("MEDVIEWER_MODELS_DIR", str(models_dir))
    window = make_main_window()
    window.resize(1300, 850)
    _open(window, qtbot, ct_series_dir)
    return window


def _expected_labels(hu: np.ndarray) -> np.ndarray:
    x = np.clip((hu.astype(np.float32) - (WINDOW[0] - WINDOW[1] / 2)) / WINDOW[1], 0, 1)
    return np.where(x > 0.7, 2, np.where(x > 0.3, 1, 0)).astype(np.uint8)


# ----------------------------------------------------------------------- the menu
def test_menu_groups_models_by_lab_and_greys_out_what_cannot_read_the_series(
        make_main_window, models_dir, monkeypatch, qtbot, tmp_path):
    (models_dir.parent / "broken-model").mkdir(exist_ok=True)
    (models_dir.parent / "broken-model" / "manifest.json").write_text("{not json")
    monkeypatch.setenv("MEDVIEWER_MODELS_DIR", f"{models_dir}:{models_dir.parent}")
    window = make_main_window()
    assert window.ai.provider_label.text() == "AI: idle"  # no provider probe at start-up
    menu = window.ai.menu
    texts = [a.text() for a in menu.actions()]
    assert "Lab 4: segmentation" in texts and "Lab 3: fusion" in texts
    assert texts.index("Lab 2: classification") < texts.index("Lab 4: segmentation")
    seg = menu.model_actions["test-seg"]
    assert "Test Seg" in seg.text() and "v1.0.0" in seg.text()
    assert "A tiny test segmentation graph." in seg.toolTip()
    assert ("Held-out metrics: accuracy 0.9; dice: bone 0.8, soft tissue 0.8 "
            "(n: 12; split: held-out test phantoms)") in " ".join(seg.toolTip().split())
    assert any("broken-model" in t for t in texts)  # a bad folder is listed, not a crash
    assert not menu.run_slice_action.isEnabled()  # nothing open yet
    assert window.ai.run_model("test-seg") is False
    assert "Open a series first" in window.status_label.text()
    voxels = np.full((3, SIZE, SIZE), 100, np.int16)
    syn.write_series(tmp_path / "mr", voxels, modality="MR", seed=3)
    _open(window, qtbot, tmp_path / "mr")
    assert not menu.model_actions["test-seg"].isEnabled()
    assert "reads CT images; this series is MR" in menu.model_actions["test-seg"].toolTip()
    assert menu.model_actions["test-det"].isEnabled()  # reads any modality
    menu.model_actions["test-det"].trigger()
    assert window.ai.chosen_id == "test-det" and menu.run_slice_action.isEnabled()
    assert window.ai.run_model("test-cls", scope="series") is False
    assert "reads CT images; this series is MR" in window.status_label.text()


# ----------------------------------------------------------------------- segmentation
def test_segmentation_of_a_slice_colours_the_overlay_where_the_labels_are(ai_window, qtbot):
    window, doc = ai_window, ai_window.document
    window.ai.panel.fill_check.setChecked(True)  # whole areas (the default is outlines)
    window.ai.menu.model_actions["test-seg"].trigger()
    output = _run(window, qtbot, window.ai.menu.run_slice_action.trigger)
    k = doc.slice_index
    result = doc.ai_result
    expected = _expected_labels(doc.volume.voxels[k])
    assert np.mean(result.label_map[k] == expected) > 0.995
    assert not np.delete(result.label_map, k, axis=0).any()  # other slices not run
    assert (expected == 1).any() and (expected == 2).any() and (expected == 0).any()
    item = window.viewer.single_view.layers["ai"].labels_item
    assert item.isVisible() and item.opacity() == pytest.approx(0.5)
    rgba = item.rgba()
    labels = result.label_map[k]
    assert (rgba[labels == 1] == (0, 255, 0, 255)).all()
    assert (rgba[labels == 2] == (255, 0, 255, 255)).all()
    assert (rgba[labels == 0][:, 3] == 0).all()
    assert window.ai.provider_label.text() == (provider_status(result.provider)
                                               + " \u00b7 ONNX Runtime fp32")
    assert window.ai.provider_label.text().startswith("AI: ")
    # the dock: voxel counts and volumes in mL (5.5 x 5.5 x 5 mm voxels)
    panel = window.ai.panel
    table = panel.labels_table
    rows = {table.item(r, 1).text(): r for r in range(table.rowCount())}
    assert set(rows) == {"soft tissue", "bone"}
    tissue = int((labels == 1).sum())
    assert output.label_stats[0]["name"] == "soft tissue"
    assert output.label_stats[0]["voxels"] == tissue
    assert table.item(rows["soft tissue"], 2).text() == str(tissue)
    assert float(table.item(rows["soft tissue"], 3).text()) == pytest.approx(
        tissue * 5.5 * 5.5 * 5.0 / 1000, abs=0.01)
    # the reader hides bone and turns the opacity up: every view follows the document
    panel.set_label_checked("bone", False)
    assert (item.rgba()[labels == 2][:, 3] == 0).all()
    assert (item.rgba()[labels == 1][:, 3] == 255).all()
    panel.opacity_slider.setValue(80)
    assert item.opacity() == pytest.approx(0.8)
    doc.step(1)  # a slice the model did not see: nothing drawn
    assert not item.isVisible()
    assert "labels on 1 slice" in window.status_label.text()


def test_the_cpu_runtime_is_the_readers_choice_and_remembered(ai_window, qtbot,
                                                              make_main_window, monkeypatch):
    from medviewer.inference.backends import openvino_installed

    monkeypatch.delenv("MEDVIEWER_BACKEND", raising=False)
    window, doc = ai_window, ai_window.document
    runtime = window.ai.menu.runtime_menu
    assert runtime.menuAction() in window.ai.menu.actions()
    assert runtime.runtime_actions[""].isChecked()  # each model's default to start with
    window.ai.menu.model_actions["test-seg"].trigger()
    _run(window, qtbot, window.ai.menu.run_slice_action.trigger)
    fp32 = doc.ai_result.label_map.copy()
    runtime.runtime_actions["onnxruntime,int8"].trigger()  # the test model has no int8 file
    assert "ONNX Runtime int8" in window.status_label.text()
    _run(window, qtbot, window.ai.menu.run_slice_action.trigger)
    assert window.ai.provider_label.text().endswith("ONNX Runtime fp32")
    assert "has no int8 version" in window.status_label.text()  # why it is not int8
    assert "CPU, ONNX Runtime fp32 · " in window.ai.panel.summary.text()  # beside its result
    if openvino_installed():
        runtime.runtime_actions["openvino,fp32"].trigger()
        _run(window, qtbot, window.ai.menu.run_slice_action.trigger)
        assert window.ai.provider_label.text().endswith("OpenVINO fp32")
        assert "CPU, OpenVINO fp32 · " in window.ai.panel.summary.text()
        assert np.array_equal(doc.ai_result.label_map, fp32)  # same labels, other runtime
    else:
        runtime.runtime_actions["onnxruntime,fp32"].trigger()
    chosen = next(b for b, a in runtime.runtime_actions.items() if a.isChecked())
    again = make_main_window(settings=window.settings)  # the next session starts with it
    assert again.ai.menu.runtime_menu.runtime_actions[chosen].isChecked()
    assert again.ai.cache.backend == chosen


def test_without_openvino_its_runtimes_are_greyed_out_and_say_why(qtbot, monkeypatch):
    from medviewer.ui.ai import runtime_menu

    monkeypatch.setattr(runtime_menu, "openvino_installed", lambda: False)
    menu = runtime_menu.RuntimeMenu(None, chosen="openvino,fp32")
    for backend, action in menu.runtime_actions.items():
        assert action.isEnabled() == (not backend.startswith("openvino"))
        if backend.startswith("openvino"):
            assert "not installed" in action.toolTip()
    monkeypatch.setattr(runtime_menu, "openvino_installed", lambda: True)
    assert runtime_menu.RuntimeMenu(None).runtime_actions["openvino,int8"].isEnabled()


def test_whole_series_segmentation_shows_on_the_mpr_planes_too(ai_window, qtbot):
    window, doc = ai_window, ai_window.document
    window.ai.choose("test-seg")
    output = _run(window, qtbot, lambda: window.ai.run_model(scope="series"))
    result = doc.ai_result
    assert result.slice_indices == list(range(doc.slice_count))
    assert np.mean(result.label_map == _expected_labels(doc.volume.voxels)) > 0.995
    assert sum(s["voxels"] for s in output.label_stats) == np.count_nonzero(result.label_map)
    assert "over the series" in window.ai.panel.labels_note.text()
    doc.set_ai_display(label_fill=True)  # whole areas (the default is outlines)
    window.set_layout("mpr")
    for name, view in window.viewer.mpr_view.views.items():
        labels = doc.plane(name).image(result.label_map, view.slice_index)
        drawn = view.layers["ai"].labels_item.rgba()
        assert drawn.shape[:2] == labels.shape, name
        assert ((drawn[..., 3] > 0) == (labels > 0)).all(), name


def test_a_new_series_clears_the_ai_layers(ai_window, qtbot, tmp_path):
    window = ai_window
    _run(window, qtbot, lambda: window.ai.run_model("test-seg"))
    assert window.viewer.single_view.layers["ai"].labels_item.isVisible()
    voxels, _ = syn.ct_chest_phantom((6, SIZE, SIZE), (5.0, 5.5, 5.5), seed=4)
    syn.write_series(tmp_path / "other", voxels, spacing=(5.0, 5.5, 5.5), seed=9)
    _open(window, qtbot, tmp_path / "other")
    assert window.document.ai_output is None
    assert not window.viewer.single_view.layers["ai"].labels_item.isVisible()
    assert not window.ai.panel.labels_group.isVisibleTo(window.ai.panel)
    assert not window.ai.menu.clear_action.isEnabled()


# ----------------------------------------------------------------------- classification
def test_classifier_over_the_series_shows_the_current_slice_and_the_course(ai_window, qtbot):
    window, doc = ai_window, ai_window.document
    window.ai.choose("test-cls")
    _run(window, qtbot, window.ai.menu.run_series_action.trigger)
    result, panel = doc.ai_result, window.ai.panel
    assert result.scores.shape == (doc.slice_count, 2)
    windowed = pp.to_unit(doc.volume.voxels, WINDOW).mean(axis=(1, 2))
    assert (result.scores[:, 1] > 0.5).tolist() == (windowed > 0.5).tolist()
    for k in (0, doc.slice_count // 2):
        doc.set_slice(k)
        label, p = result.predicted(k)
        n = doc.image_position(k=k) + 1  # the number the views show (head first)
        assert f"Slice {n}: <b>{label}</b> ({p:.3f})" == panel.predicted_label.text()
        bars = [panel.scores_table.cellWidget(r, 1) for r in range(2)]
        assert [b.value() for b in bars] == [round(s * 1000) for s in result.scores[k]]
        assert panel.slice_line.value() == n
    curves = panel.series_plot.getPlotItem().listDataItems()
    numbers = np.array([doc.image_position(k=i) + 1 for i in range(doc.slice_count)])
    assert numbers[0] == doc.slice_count  # the phantom's first index is its lowest slice
    assert curves[1].getData()[0].tolist() == sorted(numbers.tolist())
    assert np.allclose(curves[1].getData()[1], result.scores[np.argsort(numbers), 1])


def test_many_classes_show_the_likely_ones_first_and_clear_removes_all(ai_window):
    from medviewer.inference import Result
    from medviewer.ui.document.ai_state import AiOutput

    doc, panel = ai_window.document, ai_window.ai.panel
    n = doc.slice_count
    scores = np.random.default_rng(0).dirichlet(np.ones(6), size=n)
    labels = [str(d) for d in range(6)]
    result = Result("digits", "1.0.0", "classification", labels, ["#ffffff"] * 6,
                    slice_indices=list(range(n)), scores=scores)
    doc.set_ai_output(AiOutput((result,), "series"))
    k = doc.slice_index
    order = [panel.scores_table.item(r, 0).text() for r in range(6)]
    assert order == [labels[i] for i in np.argsort(-scores[k], kind="stable")]
    (curve,) = panel.series_plot.getPlotItem().listDataItems()  # top score, not 6 tangles
    numbers = [doc.image_position(k=i) for i in range(n)]  # plotted in reading order
    assert np.allclose(curve.getData()[1], scores.max(axis=1)[np.argsort(numbers)])
    assert ai_window.ai.menu.clear_action.isEnabled()
    ai_window.ai.menu.clear_action.trigger()
    assert doc.ai_output is None and panel.summary.text().startswith("No AI result")


def test_classifier_on_one_slice_says_where_it_ran(ai_window, qtbot):
    window, doc = ai_window, ai_window.document
    _run(window, qtbot, lambda: window.ai.run_model("test-cls", scope="slice"))
    k = doc.slice_index
    label, p = doc.ai_result.predicted(0)
    assert f"{label} ({p:.2f})" in window.status_label.text()
    doc.set_slice(k + 2)
    assert f"Not run on this slice (run on 1 slice(s): {doc.image_position(k=k) + 1})" in \
        window.ai.panel.predicted_label.text()


# ----------------------------------------------------------------------- detection
def test_boxes_are_drawn_where_the_model_put_them_and_the_threshold_hides_them(ai_window,
                                                                              qtbot):
    window = ai_window
    window.show()  # laid out: scene coordinates mean something
    qtbot.waitExposed(window)
    view = window.viewer.single_view
    _run(window, qtbot, lambda: window.ai.run_model("test-det"))
    panel = window.ai.panel
    assert [b.label for b, _, _ in view.layers["ai"].box_items] == ["nodule"]  # 0.3 < 0.5
    box, rect_item, text = view.layers["ai"].box_items[0]
    row_mm, col_mm = view.spacing
    rect = rect_item.rect()
    x0, y0, x1, y1 = BOXES[0]
    assert (rect.x(), rect.y(), rect.width(), rect.height()) == pytest.approx(
        (x0 * col_mm, y0 * row_mm, (x1 - x0) * col_mm, (y1 - y0) * row_mm))
    # a layout change since the last paint (the docks' default widths are set on the tick
    # after show) leaves Qt's item transforms stale until pyqtgraph updates them, which the
    # next paint does; do it now, as the screen would have
    view.view_box.updateMatrix()
    corner = view.scene_to_pixel(rect_item.mapToScene(rect.topLeft()))
    assert corner == pytest.approx((x0, y0), abs=1e-6)
    assert text.toPlainText() == "nodule 0.90"
    assert rect_item.pen().color().name() == "#ffe119" == text.color.name()
    assert panel.boxes_table.rowCount() == 1
    panel.threshold_slider.setValue(20)
    assert sorted(b.label for b, _, _ in view.layers["ai"].box_items) == ["mass", "nodule"]
    assert panel.boxes_table.rowCount() == 2 and "2 of 2" in panel.boxes_group.title()
    k = window.document.slice_index  # the table numbers the slice as the views do
    assert panel.boxes_table.item(0, 0).text() == str(window.document.image_position(k=k) + 1)
    window.document.step(2)
    panel.boxes_table.cellDoubleClicked.emit(0, 0)  # and a row takes the reader back to it
    assert window.document.slice_index == k
    panel.threshold_slider.setValue(95)
    assert view.layers["ai"].box_items == [] and panel.boxes_table.rowCount() == 0
    window.document.step(1)  # boxes belong to their slice
    panel.threshold_slider.setValue(0)
    assert view.layers["ai"].box_items == []


# ----------------------------------------------------------------------- fusion compare
def test_fusion_methods_side_by_side_each_exportable(ai_window, qtbot, tmp_path):
    window = ai_window
    ids = ["test-fusion-a", "test-fusion-b"]
    output = _run(window, qtbot, lambda: window.ai.compare_fusion(ids))
    assert output.scope == "compare" and len(output.results) == 2
    table = window.ai.panel.verdicts_table
    shown = [(table.item(r, 0).text(), table.item(r, 1).text()) for r in range(2)]
    assert shown == [("Test Fusion A", "nodule"), ("Test Fusion B", "no nodule")]
    assert float(table.item(0, 2).text()) == pytest.approx(output.results[0].predicted(0)[1],
                                                           abs=1e-3)
    path = window.ai.export_verdict(output.results[1], tmp_path / "b.csv")
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 1 and "no nodule" in rows[0].values()
    saved = window.ai.export_results(tmp_path / "all.json")
    data = json.loads(saved.read_text())
    assert [f["label"] for f in data["findings"]] == ["nodule", "no nodule"]
    assert {r["runtime"] for r in data["results"]} == {"ONNX Runtime fp32"}  # what ran them


def test_export_results_as_csv_one_row_per_slice(ai_window, qtbot, tmp_path,
                                                  monkeypatch):
    window = ai_window
    _run(window, qtbot, lambda: window.ai.run_model("test-cls", scope="series"))
    path = window.ai.export_results(tmp_path / "scores")  # no suffix: CSV
    assert path.suffix == ".csv"
    rows = list(csv.DictReader(path.open()))
    result = window.document.ai_result
    assert [int(r["slice"]) for r in rows] == result.slice_indices
    assert [r["label"] for r in rows] == [result.predicted(i)[0] for i in range(len(rows))]
    assert all(r["sop_instance_uid"] for r in rows)
    # AI > Export Results...: the dialog answered with a name and the JSON filter
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(tmp_path / "picked"), "JSON (*.json)"))
    window.ai.menu.export_action.trigger()
    data = json.loads((tmp_path / "picked.json").read_text())
    assert data["results"][0]["model"] == "test-cls" and len(data["findings"]) == len(rows)


# ----------------------------------------------------------------------- explanations
def _fake_explain(monkeypatch, fn):
    """medviewer.explain stands in for the torch one: the worker imports it by name."""
    module = types.ModuleType("medviewer.explain")
    module.explain = fn
    module.methods_for = lambda m: {"detection": ["EigenCAM", "AblationCAM"],
                                    "classification": ["Grad-CAM"]}.get(m.task, [])
    monkeypatch.setitem(sys.modules, "medviewer.explain", module)


def test_explain_draws_a_heatmap_on_its_slice_only(ai_window, qtbot, monkeypatch):
    window, doc = ai_window, ai_window.document
    heat = np.linspace(0, 1, SIZE * SIZE, dtype=np.float32).reshape(SIZE, SIZE)
    calls = []

    def explain(manifest, volume, k, method, *, progress=None, cancelled=None):
        calls.append((manifest.id, k, method))
        return Explanation("Grad-CAM", manifest.id, k, heat, target="brighter", seconds=0.5)

    _fake_explain(monkeypatch, explain)
    window.ai.choose("test-cls")
    _run(window, qtbot, window.ai.menu.explain_action.trigger)
    k = doc.slice_index
    assert calls == [("test-cls", k, None)]
    item = window.viewer.single_view.layers["ai"].heatmap_item
    assert item.isVisible() and item.opacity() == pytest.approx(0.45)
    assert (item.image == JET[np.rint(heat * 255).astype(np.uint8)]).all()
    assert tuple(item.image[-1, -1, :3]) == (128, 0, 0)  # hottest: dark red
    assert tuple(item.image[0, 0]) == (0, 0, 128, 0)  # coldest: transparent (dark blue)
    panel = window.ai.panel
    assert "Grad-CAM" in panel.heatmap_label.text()
    panel.heatmap_slider.setValue(70)
    assert item.opacity() == pytest.approx(0.7)
    doc.step(1)
    assert not item.isVisible() and "go back to see it" in panel.heatmap_label.text()
    # a detector offers its methods by name; the one chosen is the one run
    window.ai.menu.model_actions["test-det"].trigger()
    methods = window.ai.menu.explain_menu.actions()
    assert [a.text() for a in methods] == ["EigenCAM (default)", "AblationCAM"]
    _run(window, qtbot, methods[1].trigger)
    assert calls[-1] == ("test-det", k + 1, "AblationCAM")
    window.ai.menu.model_actions["test-seg"].trigger()  # no method applies: greyed out
    assert not window.ai.menu.explain_action.isEnabled()
    assert not window.ai.menu.explain_menu.isEnabled()


def test_a_long_explanation_can_be_cancelled(ai_window, qtbot, monkeypatch):
    window = ai_window

    def explain(manifest, volume, k, method, *, progress=None, cancelled=None):
        while not cancelled():
            progress(1, 10)
            time.sleep(0.01)
        raise InferenceCancelled()

    _fake_explain(monkeypatch, explain)
    assert window.ai.explain("test-cls")
    qtbot.waitUntil(lambda: not window.cancel_button.isHidden(), timeout=5000)
    window.cancel_button.click()
    qtbot.waitUntil(lambda: "Explanation cancelled" in window.status_label.text(),
                    timeout=5000)
    assert window.document.explanation is None and not window.busy


# ----------------------------------------------------------------------- failures
def _broken_copies(models_dir: Path, root: Path) -> None:
    bad_sum = root / "bad-sum"
    bad_sum.mkdir(parents=True)
    for name in ("manifest.json", "model.onnx", "weights.safetensors"):
        (bad_sum / name).write_bytes((models_dir / "test-seg" / name).read_bytes())
    manifest = json.loads((bad_sum / "manifest.json").read_text())
    manifest["id"], manifest["title"] = "bad-sum", "Bad Sum"
    (bad_sum / "manifest.json").write_text(json.dumps(manifest))
    with (bad_sum / "model.onnx").open("ab") as f:
        f.write(b"\0")  # a damaged copy
    shape = root / "bad-shape"
    _write_model(root, "bad-shape", _seg_graph(SIZE), lab=4, task="segmentation",
                 labels=[("background", "#000000"), ("x", "#ff0000")], outputs=["logits"],
                 image_shape=["batch", 1, 32, 32])
    assert shape.is_dir()


def test_a_broken_model_says_why_and_the_viewer_stays_usable(make_main_window, models_dir,
                                                            monkeypatch, qtbot, tmp_path,
                                                            ct_series_dir):
    _broken_copies(models_dir, tmp_path / "broken")
    monkeypatch.setenv("MEDVIEWER_MODELS_DIR", f"{models_dir}:{tmp_path / 'broken'}")
    window = make_main_window()
    _open(window, qtbot, ct_series_dir)
    for model_id, words in (("bad-sum", "does not match the checksum"),
                            ("bad-shape", "has shape")):
        with qtbot.waitSignal(window.ai.sigRunFailed, timeout=10_000) as blocker:
            window.ai.run_model(model_id)
        assert words in blocker.args[0] and words in window.last_error
        assert blocker.args[0].startswith("Bad ")  # the model's title first
        assert window.document.ai_output is None
    _run(window, qtbot, lambda: window.ai.run_model("test-seg"))  # a good one still runs
    voxels, _ = syn.ct_chest_phantom((5, SIZE, SIZE), (5.0, 5.5, 5.5), seed=2)
    syn.write_series(tmp_path / "next", voxels, spacing=(5.0, 5.5, 5.5), seed=5)
    _open(window, qtbot, tmp_path / "next")
    assert window.document.slice_count == 5


# ----------------------------------------------------------------------- on screen
def test_the_overlay_is_on_screen(ai_window, qtbot, tmp_path):
    """What the reader sees, grabbed offscreen: the label colours are in the picture."""
    window = ai_window
    window.show()
    qtbot.waitExposed(window)
    _run(window, qtbot, lambda: window.ai.run_model("test-seg", scope="series"))
    window.ai.panel.opacity_slider.setValue(100)
    qtbot.wait(50)
    image = window.viewer.single_view.grab().toImage()
    window.grab().save(str(tmp_path / "ai_window.png"))
    assert (tmp_path / "ai_window.png").stat().st_size > 10_000
    colours = {image.pixelColor(x, y).name() for x in range(0, image.width(), 3)
               for y in range(0, image.height(), 3)}
    assert "#00ff00" in colours and "#ff00ff" in colours
