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

from medviewer.core import geometry
from medviewer.core.dicom.volume import Volume
from medviewer.core.display import Window
from medviewer.core.reslice import ResliceView
from medviewer.core.synthetic import Geometry, oblique
from medviewer.ui.document.study import StudyDocument
from medviewer.ui.viewing.mpr_view import MprView
from medviewer.ui.viewing.viewer import ViewerPanel

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
    assert {v.tools for v in panel.views()} == {panel.tools}
    assert panel.document.tool == "distance"
    panel.document.set_layout("1x1")
    assert panel.views() == [panel.single_view]


def test_crosshair_is_clamped(mpr):
    mpr.document.set_crosshair((500, -3, 99))
    assert mpr.document.crosshair == (COLS - 1, 0, SLICES - 1)


# ------------------------------------------------------------------ oblique acquisitions
# A 30 degree tilted stack holding a 12 mm radius sphere: MPR must resample true planes.
OBLIQUE = Geometry((30, 48, 48), (2.0, 1.0, 1.0), oblique(30))
SPHERE_MM = 12.0


def oblique_sphere_volume() -> tuple[Volume, np.ndarray]:
    """The tilted volume (1000 HU sphere in 20 HU) and the sphere centre in LPS mm."""
    s, r, c = np.indices(OBLIQUE.shape)
    lps = OBLIQUE.affine @ np.stack([c.ravel(), r.ravel(), s.ravel(), np.ones(s.size)])
    centre = np.array([2.0, -3.0, 4.0])
    inside = np.linalg.norm(lps[:3].T - centre, axis=1).reshape(OBLIQUE.shape) <= SPHERE_MM
    voxels = np.where(inside, 1000, 20).astype(np.int16)
    return Volume(voxels=voxels, affine=OBLIQUE.affine, modality="CT",
                  windows=[Window(40, 400)]), centre


@pytest.fixture
def oblique_mpr(qtbot) -> tuple[MprView, np.ndarray]:
    doc = StudyDocument()
    volume, centre = oblique_sphere_volume()
    doc.set_volume(volume)
    view = MprView(doc)
    qtbot.addWidget(view)
    view.resize(960, 480)
    view.show()
    qtbot.waitExposed(view)
    view.fit()
    return view, centre


def test_oblique_volume_shows_the_sphere_in_true_planes(oblique_mpr):
    mpr, centre = oblique_mpr
    doc = mpr.document
    doc.set_crosshair(tuple(int(v) for v in np.rint(geometry.lps_to_voxel(doc.affine, centre))))
    QApplication.processEvents()
    for name, view in mpr.views.items():
        assert isinstance(view.plane, ResliceView), name
        disc = view.displayed == 255
        width = disc.any(axis=0).sum() * view.spacing[1]
        height = disc.any(axis=1).sum() * view.spacing[0]
        assert width == pytest.approx(2 * SPHERE_MM, abs=2.5), name  # a voxel and a slice
        assert height == pytest.approx(2 * SPHERE_MM, abs=2.5), name
        letters = {view.overlays[edge].text() for edge in ("left", "right", "top", "bottom")}
        assert letters <= set("RLAPSI") and all(len(t) == 1 for t in letters), name
    assert doc.plane().name == "axial" and not isinstance(doc.plane(), ResliceView)


def test_click_in_oblique_mpr_moves_the_others_to_the_clicked_point(oblique_mpr):
    mpr, centre = oblique_mpr
    axial, coronal, sagittal = (mpr.views[p] for p in ("axial", "coronal", "sagittal"))
    k, row, col = np.rint(axial.plane.from_lps(centre + [6.0, -5.0, 0.0])).astype(int)
    axial.document.set_plane_slice("axial", int(k))
    QApplication.processEvents()
    click(axial, col + 0.5, row + 0.5)
    clicked = axial.plane.to_lps(axial.slice_index, row, col)
    crosshair = geometry.voxel_to_lps(mpr.document.affine, *mpr.document.crosshair)
    voxel_mm = np.linalg.norm(OBLIQUE.spacing)  # the crosshair is the nearest voxel
    assert np.linalg.norm(crosshair - clicked) <= voxel_mm / 2 + 1e-6
    on_coronal = coronal.plane.to_lps(coronal.slice_index, 0, 0)[1]  # its A-P position
    on_sagittal = sagittal.plane.to_lps(sagittal.slice_index, 0, 0)[0]  # its R-L position
    assert on_coronal == pytest.approx(clicked[1], abs=2.0)
    assert on_sagittal == pytest.approx(clicked[0], abs=2.0)
    assert (coronal.displayed == 255).any() and (sagittal.displayed == 255).any()


@pytest.mark.parametrize("name", ["axial", "coronal", "sagittal"])
def test_scrolling_a_resliced_plane_reaches_every_image(oblique_mpr, name):
    mpr, _ = oblique_mpr
    view = mpr.views[name]
    view.document.go_to_position(name, 0)  # image 1
    seen = [view.slice_index]
    for _ in range(view.plane.count - 1):
        view.step(1)
        seen.append(view.slice_index)
    # one new image per step, in order: never stuck at the tilted volume's edge
    assert seen in (list(range(view.plane.count)), list(range(view.plane.count))[::-1])


def test_pointing_in_a_resliced_plane_keeps_its_image(oblique_mpr):
    mpr, centre = oblique_mpr
    doc, coronal = mpr.document, mpr.views["coronal"]
    k, row, col = np.rint(coronal.plane.from_lps(centre)).astype(int)
    for dr, dc in ((0, 0), (3, -4), (-7, 5)):
        doc.set_crosshair_at("coronal", k, row + dr, col + dc)
        assert coronal.slice_index == k
        assert np.allclose(doc.crosshair_lps, coronal.plane.to_lps(k, row + dr, col + dc))
    assert mpr.views["axial"].slice_index == mpr.views["axial"].plane.from_lps(
        coronal.plane.to_lps(k, row - 7, col + 5)).round()[0]
