"""The AI dock's lesion table on the demo CT: one row per nodule, and a click on a row goes to
the nodule's image with the view centred on it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtCore import Qt

from medviewer.core.dicom import scan


@pytest.fixture
def segmented_window(make_main_window, demo_study, qtbot):
    window = make_main_window()
    window.resize(1300, 850)
    ct = next(s for s in scan(demo_study).all_series() if s.modality == "CT")
    with qtbot.waitSignal(window.volume_loaded, timeout=60_000):
        window.open_series(ct)
    with qtbot.waitSignal(window.ai.sigRunFinished, timeout=120_000):
        assert window.ai.run_model("lab4-chest-unet", "series")
    return window


def _view_centre(view):
    (x0, x1), (y0, y1) = view.view_box.viewRange()
    sy, sx = view.spacing
    return (y0 + y1) / 2 / sy, (x0 + x1) / 2 / sx  # (row, col) in pixels


def test_clicking_a_lesion_row_goes_to_its_image_and_centres_the_view(segmented_window, qtbot,
                                                                       demo_study):
    window, doc = segmented_window, segmented_window.document
    table = window.ai.panel.lesion_table
    truth = json.loads((demo_study / "ground_truth.json").read_text())["chest_ct"]["nodules"]
    assert table.isVisibleTo(window.ai.panel) and table.table.rowCount() == 4
    view = window.viewer.single_view
    view.zoom_by(4.0)  # zoomed in on the middle of the chest: no nodule in sight
    doc.set_slice(0)
    smallest = min(truth, key=lambda n: n["diameter_mm"])
    assert table.table.horizontalHeaderItem(0).text() == "nodule"  # one lesion label
    row = next(r for r in range(4) if table.table.item(r, 0).text() == "4")
    long_mm = float(table.table.item(row, 1).text().split("\u00d7")[0])
    assert abs(long_mm - smallest["diameter_mm"]) <= 2.0
    cell = table.table.visualItemRect(table.table.item(row, 1)).center()
    qtbot.mouseClick(table.table.viewport(), Qt.MouseButton.LeftButton, pos=cell)
    k, r, c = smallest["center_voxel"]
    assert doc.slice_index == round(k)
    assert np.allclose(_view_centre(view), (r + 0.5, c + 0.5), atol=2.0)
    assert view.zoom() > 2  # the zoom stays: only the view moved
    drawn = view.layers["ai"].labels_item.rgba()
    assert drawn is not None and drawn.shape[:2] == doc.volume.voxels.shape[1:]
    # its two diameters are drawn on that image, as long as the table says
    lesion = table.chosen
    lengths = sorted(item.line().length() for item in view.layers["lesion"].items)
    assert lengths == pytest.approx([lesion.short_axis_mm, lesion.long_axis_mm], abs=0.01)
    assert abs(lengths[1] - smallest["diameter_mm"]) <= 2.0
    doc.set_slice(0)
    assert view.layers["lesion"].items == []  # on another image: nothing drawn


def test_the_lesions_export_as_sr_and_clearing_hides_the_table(segmented_window, tmp_path):
    from medviewer.core.annotations.sr_lesions import read_lesions

    window = segmented_window
    output = window.document.ai_output
    path = window.ai.export_results(tmp_path / "lesions.dcm")
    assert path is not None and path.exists()
    assert {les.tracking_uid for les in read_lesions(path)} == \
        {les.tracking_uid for les in output.lesions}
    table = window.ai.panel.lesion_table
    window.ai.clear()
    assert not table.isVisibleTo(window.ai.panel)
