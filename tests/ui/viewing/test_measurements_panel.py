"""Measurements are the document's: drawn on any plane they outlive the layout that showed
them, every view of their plane draws them, and the Measurements panel lists, finds and
deletes them (ViewerPanel + panel, no main window)."""

from __future__ import annotations

import numpy as np
import pytest
from test_mpr import COL_MM, ROW_MM, SLICE_MM, make_volume

from medviewer.core.dicom.volume import Volume
from medviewer.ui.document.measurements import Measure, measure_values
from medviewer.ui.viewing.measurements_panel import MeasurementsPanel
from medviewer.ui.viewing.viewer import ViewerPanel


@pytest.fixture
def panels(qtbot):
    viewer = ViewerPanel()
    qtbot.addWidget(viewer)
    viewer.resize(1000, 600)
    viewer.show()
    viewer.document.set_volume(make_volume())
    table = MeasurementsPanel(viewer.document)
    qtbot.addWidget(table)
    return viewer, table


def test_a_ruler_on_the_coronal_plane_outlives_the_layout_and_the_panel_finds_it(panels):
    viewer, table = panels
    doc = viewer.document
    viewer.set_layout("mpr")
    coronal = viewer.mpr_view.views["coronal"]
    k = coronal.slice_index
    ruler = coronal.measurements.add_distance((2, 1), (2, 5))  # 4 rows of coronal pixels
    assert ruler.length_mm == pytest.approx(4 * coronal.spacing[0])
    assert viewer.single_view.measurements.items == []  # another plane: not drawn there
    viewer.set_layout("1x1")
    doc.set_plane_slice("coronal", k + 1)
    assert [m.plane for m in doc.measurements] == ["coronal"]
    assert table.table.rowCount() == 1 and table.table.item(0, 1).text() == f"{k + 1} cor"
    table.table.selectRow(0)
    table.go_button.click()
    assert doc.layout == "mpr" and doc.plane_index("coronal") == k
    assert coronal.measurements.items[0].roi.isVisible()
    table.delete_selected()
    assert doc.measurements == [] and coronal.measurements.items == []


def test_roi_numbers_are_the_same_in_the_label_the_panel_and_the_values(panels):
    viewer, table = panels
    doc, view = viewer.document, viewer.single_view
    roi = view.measurements.add_area("rect", (0, 0), (4, 5))
    values = measure_values(doc, doc.measurements[0])
    assert values["n"] == 20 and values["area"] == pytest.approx(20 * COL_MM * ROW_MM)
    assert roi.text() == table.table.item(0, 2).text()
    assert roi.stats["area_mm2"] == values["area"]


def test_measurements_of_each_series_stay_with_it(panels):
    viewer, table = panels
    doc, view = viewer.document, viewer.single_view
    first = doc.volume
    view.measurements.add_distance((1, 1), (6, 1))
    other = Volume(voxels=np.zeros((4, 16, 16), np.int16), affine=np.diag([1.0, 1, SLICE_MM, 1]),
                   modality="CT")
    doc.set_volume(other)
    assert doc.measurements == [] and view.measurements.items == []
    assert table.table.rowCount() == 0 and table.empty_label.isVisibleTo(table)
    doc.set_volume(first)
    (ruler,) = view.measurements.items
    assert ruler.length_mm == pytest.approx(5 * COL_MM)
    assert doc.measurements_of(other) == [] and len(doc.measurements_of(first)) == 1


def test_a_measure_is_one_of_three_kinds():
    with pytest.raises(ValueError, match="unknown measurement"):
        Measure("angle", "stack", 0, (0, 0), (1, 1))
