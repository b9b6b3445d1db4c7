"""MPR: three linked planes of one document, resampled with the true (non-isotropic) spacing.

The volume is 0.5 x 0.5 mm in plane with 2.5 mm slices, and holds a 1000 HU box 8 columns
(4 mm) wide, 10 rows (5 mm) deep and 4 slices (10 mm) tall: on screen the coronal view must
show it 4 mm x 10 mm, i.e. taller than wide, although it covers 8 x 4 pixels of that image.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QImage, QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from medviewer.core.dicom.volume import Volume
from medviewer.core.display import Window
from medviewer.ui.document import StudyDocument
from medviewer.ui.mpr_view import MprView
from medviewer.ui.viewer import ViewerPanel

SLICES, ROWS, COLS = 16, 40, 32
COL_MM, ROW_MM, SLICE_MM = 0.5, 0.5, 2.5
BOX = (slice(4, 8), slice(10, 20), slice(8, 16))  # slices, rows, columns


def make_volume() -> Volume:
    voxels = np.full((SLICES, ROWS, COLS), 20, np.int16)
    voxels[BOX] = 1000
    affine = np.diag([COL_MM, ROW_MM, SLICE_MM, 1.0])
    affine[:3, 3] = (-8.0, -10.0, -20.0)
    return Volume(voxels=voxels, affine=affine, modality="CT", windows=[Window(40, 400)])


@pytest.fixture
def mpr(qtbot) -> MprView:
    doc = StudyDocument()
    doc.set_volume(make_volume())
    view = MprView(doc)
    qtbot.addWidget(view)
    view.resize(960, 400)
    view.show()
    qtbot.waitExposed(view)
    view.fit()
    return view


def click(view, col: float, row: float) -> None:
    """Left click on image pixel (col, row) of a SliceView, as real mouse events."""
    scene = view.view_box.mapViewToScene(view.pixel_to_view(col, row))
    pos = view.graphics.mapFromScene(scene)
    viewport = view.graphics.viewport()
    for kind, buttons in ((QMouseEvent.Type.MouseButtonPress, Qt.MouseButton.LeftButton),
                          (QMouseEvent.Type.MouseButtonRelease, Qt.MouseButton.NoButton)):
        event = QMouseEvent(kind, QPointF(pos), QPointF(viewport.mapToGlobal(pos)),
                            Qt.MouseButton.LeftButton, buttons, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(viewport, event)
    QApplication.processEvents()


def bright_extent(widget) -> tuple[int, int]:
    """(width, height) in screen pixels of the white region rendered in a widget."""
    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_Grayscale8)
    grey = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), -1)
    rows, cols = np.nonzero(grey[:, : image.width()] == 255)
    return int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1)


def test_crosshair_is_drawn_as_soon_as_mpr_opens(mpr):
    col, row, slc = mpr.document.crosshair
    for view in mpr.views.values():
        vline, hline = view.crosshair_lines
        assert vline.isVisible() and hline.isVisible()
    axial = mpr.views["axial"]
    assert axial.crosshair_lines[0].value() == pytest.approx((col + 0.5) * COL_MM)
    assert axial.crosshair_lines[1].value() == pytest.approx((row + 0.5) * ROW_MM)


def test_click_in_axial_moves_the_other_views(mpr):
    axial, coronal, sagittal = (mpr.views[p] for p in ("axial", "coronal", "sagittal"))
    click(axial, 12.5, 30.5)
    assert mpr.document.crosshair[:2] == (12, 30)
    assert coronal.slice_index == 30 and sagittal.slice_index == 12
    assert (coronal.displayed == 255).sum() == 0  # row 30 misses the box
    click(axial, 12.5, 15.5)
    assert coronal.slice_index == 15
    assert (coronal.displayed == 255).sum() == 8 * 4  # 8 columns x 4 slices
    vline, hline = coronal.crosshair_lines
    assert vline.isVisible() and vline.value() == pytest.approx(12.5 * COL_MM)


def test_click_in_coronal_moves_axial_slice(mpr):
    axial, coronal = mpr.views["axial"], mpr.views["coronal"]
    before = axial.slice_index
    slice_ = 5
    row = coronal.plane.from_voxel(0, 0, slice_)[1]  # coronal shows superior at the top
    click(coronal, 20.5, row + 0.5)
    assert mpr.document.slice_index == slice_ != before
    assert axial.slice_index == slice_
    assert (axial.displayed == 255).sum() == 8 * 10


def test_coronal_aspect_uses_true_spacing(mpr):
    coronal = mpr.views["coronal"]
    mpr.document.set_crosshair((12, 15, 6))
    QApplication.processEvents()
    rect = coronal.image_item.sceneBoundingRect()
    assert rect.width() / rect.height() == pytest.approx(
        (COLS * COL_MM) / (SLICES * SLICE_MM), rel=0.02)
    width, height = bright_extent(coronal)
    assert height / width == pytest.approx((4 * SLICE_MM) / (8 * COL_MM), rel=0.1)
    assert coronal.overlays["top"].text() == "S" and coronal.overlays["left"].text() == "R"
    assert mpr.views["sagittal"].overlays["left"].text() == "A"


def test_wheel_in_sagittal_steps_its_own_plane(mpr):
    sagittal = mpr.views["sagittal"]
    before = mpr.document.crosshair
    sagittal.step(3)
    assert mpr.document.crosshair[0] == before[0] + 3
    assert mpr.document.crosshair[1:] == before[1:]


def test_panel_switches_layout_and_keeps_one_document(qtbot):
    panel = ViewerPanel()
    qtbot.addWidget(panel)
    panel.resize(1000, 500)
    panel.show()
    panel.document.set_volume(make_volume())
    panel.layout_combo.activated.emit(1)
    assert panel.document.layout == "mpr" and panel.stack.currentWidget() is panel.mpr_view
    panel.mpr_view.views["axial"].document.set_slice(5)
    QTest.qWait(10)
    assert panel.single_view.slice_index == 5  # a second subscriber, not a copy
    panel.set_tool("distance")
    assert {v.tool for v in panel.views()} == {"distance"}
    panel.document.set_layout("1x1")
    assert panel.views() == [panel.single_view]


def test_crosshair_is_clamped(mpr):
    mpr.document.set_crosshair((500, -3, 99))
    assert mpr.document.crosshair == (COLS - 1, 0, SLICES - 1)
