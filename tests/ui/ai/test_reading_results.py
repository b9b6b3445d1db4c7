"""Reading the AI's results as a radiologist does: the score curve as a map to click through,
the heatmap with its colour scale (and gone once it no longer explains what is shown), label
outlines that leave the anatomy readable, and one stacking order of everything over the image.

The models are the tiny ONNX graphs of tests/ui/ai_models.py (see tests/ui/ai/test_ai.py).
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from scipy import ndimage

from medviewer.core import synthetic as syn
from medviewer.inference import Explanation
from medviewer.inference.results import Box, Result
from medviewer.ui.ai.layers import JET
from medviewer.ui.document.ai_state import AiOutput
from tests.ui.ai_models import SIZE
from tests.ui.gui import _open, _run, _screen

SHOTS = "/tmp/s21"


@pytest.fixture
def ai_window(make_main_window, models_dir, monkeypatch, qtbot, ct_series_dir):
    """The shown main window with the test models installed and the phantom CT open."""
    monkeypatch.setenv("MEDVIEWER_MODELS_DIR", str(models_dir))
    window = make_main_window()
    window.resize(1300, 850)
    window.show()
    qtbot.waitExposed(window)
    _open(window, qtbot, ct_series_dir)
    return window


def _fake_explain(monkeypatch, heat: np.ndarray) -> None:
    """medviewer.explain stands in for the torch one (the worker imports it by name)."""
    def explain(manifest, volume, k, method, *, progress=None, cancelled=None):
        return Explanation("Grad-CAM", manifest.id, k, heat, target="brighter", seconds=0.1)

    module = types.ModuleType("medviewer.explain")
    module.explain = explain
    module.methods_for = lambda m: ["Grad-CAM"] if m.task == "classification" else []
    monkeypatch.setitem(sys.modules, "medviewer.explain", module)


def _explained(window, qtbot, monkeypatch) -> np.ndarray:
    """Grad-CAM of the test classifier on the current slice: hot in the lower right."""
    heat = np.linspace(0, 1, SIZE * SIZE, dtype=np.float32).reshape(SIZE, SIZE)
    _fake_explain(monkeypatch, heat)
    _run(window, qtbot, lambda: window.ai.explain("test-cls"))
    return heat


def _click_plot(plot, qtbot, x: float, y: float = 0.5) -> None:
    """A left click at data coordinates (x, y) of a pyqtgraph PlotWidget."""
    scene = plot.getPlotItem().getViewBox().mapViewToScene(QPointF(x, y))
    qtbot.mouseClick(plot.viewport(), Qt.MouseButton.LeftButton,
                     pos=plot.mapFromScene(scene))


# ----------------------------------------------------------------------- the score curve
def test_clicking_the_score_curve_goes_to_that_slice_in_every_view(ai_window, qtbot):
    window, doc = ai_window, ai_window.document
    _run(window, qtbot, lambda: window.ai.run_model("test-cls", scope="series"))
    panel, view = window.ai.panel, window.viewer.single_view
    plot = panel.series_plot
    assert plot.isVisible()
    start = doc.slice_index
    target = (start + 3) % doc.slice_count
    number = doc.image_position(k=target) + 1  # the curve's x: the image number as shown
    _click_plot(plot, qtbot, number + 0.3)  # near, not on, its x: the nearest image
    assert doc.slice_index == target != start
    assert view.slice_index == target and panel.slice_line.value() == number
    assert f"Slice {number}:" in panel.predicted_label.text()
    window.set_layout("mpr")  # the MPR views follow the same document
    other = (target + 2) % doc.slice_count
    _click_plot(plot, qtbot, doc.image_position(k=other) + 1 - 0.2)
    assert doc.slice_index == other
    assert window.viewer.mpr_view.views["axial"].slice_index == doc.plane_index("axial")
    before = doc.slice_index
    qtbot.mouseClick(plot.viewport(), Qt.MouseButton.RightButton,
                     pos=plot.mapFromScene(plot.getPlotItem().getViewBox().mapViewToScene(
                         QPointF(doc.image_position(k=start) + 1, 0.5))))
    assert doc.slice_index == before  # the right button is the plot's menu, not a jump


# ----------------------------------------------------------------------- the heatmap
def test_the_heatmap_has_a_colour_bar_while_it_is_on_screen(ai_window, qtbot, monkeypatch):
    window, doc = ai_window, ai_window.document
    view = window.viewer.single_view
    _explained(window, qtbot, monkeypatch)
    bar = view.layers["ai"].colour_bar
    assert bar.isVisible() and "0..1" in bar.toolTip() and "scaled per slice" in bar.toolTip()
    assert "0..1" in window.ai.panel.heatmap_label.text()
    assert view.rect().contains(bar.geometry())  # inside the view, at its right edge
    assert bar.geometry().left() > view.width() * 0.7
    qtbot.wait(20)
    shot = view.grab()
    shot.save(f"{SHOTS}/cam_colour_bar.png")
    image = shot.toImage()
    ratio = shot.devicePixelRatio()
    rect = bar.bar_rect().translated(bar.pos())
    x = int((rect.left() + rect.width() / 2) * ratio)

    def colour_at(value: float) -> tuple[int, int, int]:
        y = rect.top() + 1 + (1 - value) * (rect.height() - 3)
        c = image.pixelColor(x, int(y * ratio))
        return c.red(), c.green(), c.blue()

    assert colour_at(1.0) == pytest.approx(JET[255, :3].astype(int).tolist(), abs=12)  # 1 on top
    assert colour_at(0.75) == pytest.approx(JET[191, :3].astype(int).tolist(), abs=12)
    assert colour_at(0.5) == pytest.approx(JET[128, :3].astype(int).tolist(), abs=12)
    doc.step(1)  # the heatmap is of one slice: elsewhere neither it nor its bar
    assert not view.layers["ai"].heatmap_item.isVisible() and not bar.isVisible()
    doc.step(-1)
    assert bar.isVisible()


def test_another_models_result_clears_the_heatmap_the_same_models_keeps_it(ai_window, qtbot,
                                                                           monkeypatch):
    window, doc = ai_window, ai_window.document
    layer = window.viewer.single_view.layers["ai"]
    _explained(window, qtbot, monkeypatch)
    _run(window, qtbot, lambda: window.ai.run_model("test-cls", scope="slice"))
    assert doc.explanation is not None and layer.heatmap_item.isVisible()  # still this model
    _run(window, qtbot, lambda: window.ai.run_model("test-seg", scope="slice"))
    assert doc.explanation is None
    assert not layer.heatmap_item.isVisible() and not layer.colour_bar.isVisible()
    assert not window.ai.panel.heatmap_group.isVisibleTo(window.ai.panel)
    assert layer.labels_item.isVisible()  # the new result is drawn


def test_a_new_series_clears_the_heatmap_and_its_colour_bar(ai_window, qtbot, monkeypatch,
                                                            tmp_path):
    window = ai_window
    layer = window.viewer.single_view.layers["ai"]
    _explained(window, qtbot, monkeypatch)
    assert layer.colour_bar.isVisible()
    voxels, _ = syn.ct_chest_phantom((6, SIZE, SIZE), (5.0, 5.5, 5.5), seed=4)
    syn.write_series(tmp_path / "other", voxels, spacing=(5.0, 5.5, 5.5), seed=9)
    _open(window, qtbot, tmp_path / "other")
    assert window.document.explanation is None
    assert not layer.heatmap_item.isVisible() and not layer.colour_bar.isVisible()


# ----------------------------------------------------------------------- outline or fill
def _interior(labels: np.ndarray, depth: int) -> np.ndarray:
    """Pixels of a label with `depth` pixels of the same label all round (scipy, not ours)."""
    inside = np.zeros(labels.shape, bool)
    for value in np.unique(labels[labels > 0]):
        inside |= ndimage.binary_erosion(labels == value, iterations=depth, border_value=1)
    return inside


def test_ai_labels_are_outlined_by_default_and_filled_on_request(ai_window, qtbot,
                                                                 make_main_window):
    window, doc = ai_window, ai_window.document
    view = window.viewer.single_view
    k = doc.slice_index
    before = view.grab().toImage()
    _run(window, qtbot, lambda: window.ai.run_model("test-seg", scope="slice"))
    panel, item = window.ai.panel, view.layers["ai"].labels_item
    assert item.opacity() == 1.0 and not panel.opacity_slider.isEnabled()  # solid lines
    labels = doc.ai_result.label_map[k]
    drawn = view.layers["ai"].labels_item.rgba()
    inner, edge = _interior(labels, 1), (labels > 0) & ~_interior(labels, 1)
    assert inner.sum() > 50 and edge.any()
    assert (drawn[inner][:, 3] == 0).all()  # inside a label: the anatomy, untinted
    assert (drawn[edge][:, 3] == 255).all()  # its edge in the label's colour
    assert (drawn[labels == 0][:, 3] == 0).all()
    # on screen: a pixel deep inside a label looks as it did before the run
    deep = np.argwhere(_interior(labels, 2))
    row, col = deep[len(deep) // 2]
    qtbot.wait(20)
    point = _screen(view, col + 0.5, row + 0.5)
    outlined = view.grab()
    outlined.save(f"{SHOTS}/lab_outline.png")
    ratio = outlined.devicePixelRatio()
    at = (int(point.x() * ratio), int(point.y() * ratio))
    assert outlined.toImage().pixelColor(*at) == before.pixelColor(*at)
    # the reader asks for fill: the whole area is tinted, and the choice is remembered
    assert not panel.fill_check.isChecked()
    panel.fill_check.click()
    drawn = item.rgba()
    assert (drawn[labels > 0][:, 3] == 255).all()
    assert panel.opacity_slider.isEnabled() and item.opacity() == pytest.approx(0.5)
    panel.opacity_slider.setValue(70)
    assert item.opacity() == pytest.approx(0.7)
    qtbot.wait(20)
    filled = view.grab()
    filled.save(f"{SHOTS}/lab_fill.png")
    assert filled.toImage().pixelColor(*at) != before.pixelColor(*at)
    again = make_main_window()  # same settings file: the next session fills too
    assert again.document.ai_display.label_fill and again.ai.panel.fill_check.isChecked()


# ----------------------------------------------------------------------- stacking order
def test_layers_stack_in_the_documented_order(ai_window, qtbot):
    """image < heatmap < AI labels < annotation mask < AI boxes < annotation boxes <
    crosshair < measurements < tool previews, on the real items of a view."""
    window, doc = ai_window, ai_window.document
    view = window.viewer.single_view
    k = doc.slice_index
    label_map = np.zeros(doc.volume.voxels.shape, np.uint8)
    label_map[k, 20:40, 20:40] = 1
    result = Result("test-cls", "1.0.0", "segmentation", ["background", "lesion"],
                    ["#000000", "#00ff00"], slice_indices=[k], label_map=label_map,
                    boxes=[Box(18, 18, 42, 42, "lesion", 0.9, k)])
    doc.set_ai_output(AiOutput((result,), "slice"))
    doc.set_explanation(Explanation("Grad-CAM", "test-cls", k,
                                    np.ones((SIZE, SIZE), np.float32)))
    assert window.annotate.accept_prediction()  # the reader's mask and (proposed) boxes
    ruler = view.measurements.add_distance((10.0, 10.0), (50.0, 50.0))
    ai, boxes = view.layers["ai"], view.layers["boxes"]
    ai_box = ai.box_items[0][1]
    (reader_box,) = boxes.items.values()
    lasso, box_preview = window.annotate.mouse.lasso, window.annotate.boxes.mouse.preview
    order = [view.image_item, ai.heatmap_item, ai.labels_item,
             view.layers["annotation"].item, ai_box, reader_box,
             view.crosshair_lines[0], ruler.roi, lasso]
    z = [item.zValue() for item in order]
    assert z == sorted(z) and len(set(z)) == len(z), z
    assert box_preview.zValue() == lasso.zValue()
    assert ruler.label.zValue() == ruler.roi.zValue()
    assert all(item.isVisible() for item in order[1:6])  # all drawn at once, on this slice

