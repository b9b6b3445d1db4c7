"""A parametric map (Float / Double Float Pixel Data, e.g. ADC) read in the window: it opens,
shows an image (not a refusal), and the cursor readout gives the stored float value."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from tests.core.test_pixel_formats import _adc, _float_image
from tests.ui.gui import _window
from tests.ui.viewing.test_projection_images import hover


@pytest.mark.parametrize("double", [False, True], ids=["float", "double"])
def test_float_map_opens_with_its_values(make_main_window, qtbot, tmp_path, double):
    from pydicom.uid import ExplicitVRLittleEndian

    frames = _adc((3, 20, 24), seed=3)
    (tmp_path / "adc").mkdir()
    _float_image(tmp_path / "adc" / "adc.dcm", frames, ExplicitVRLittleEndian, double=double)
    win = _window(make_main_window, qtbot, tmp_path / "adc")
    doc, view = win.document, win.viewer.single_view
    assert doc.volume is not None and not doc.volume.bad_slices
    np.testing.assert_array_equal(doc.volume.voxels, frames.astype(doc.volume.voxels.dtype))
    hover(view, 5.5, 7.5)
    value = frames[doc.slice_index, 7, 5]
    assert f"{float(doc.volume.voxels[doc.slice_index, 7, 5]):g}" in win.status_label.text()
    assert float(f"{value:g}") == pytest.approx(float(value), rel=1e-5)



def _shown(view) -> np.ndarray:
    """The grey levels on screen (the red channel of the view's RGBA image)."""
    image = np.asarray(view.image_item.image)
    return image[..., 0] if image.ndim == 3 else image


def test_adc_in_mm2_per_s_is_shown_with_contrast_and_windowable(make_main_window, qtbot,
                                                                 tmp_path):
    """ADC in mm2/s spans 0 to 0.003: the automatic window must fit that range (not a width of
    1 that shows one flat grey), and a right-drag must change it by a fraction of it."""
    from pydicom.uid import ExplicitVRLittleEndian

    frames = _adc((3, 40, 48), seed=4)
    (tmp_path / "adc").mkdir()
    _float_image(tmp_path / "adc" / "adc.dcm", frames, ExplicitVRLittleEndian, double=False)
    win = _window(make_main_window, qtbot, tmp_path / "adc")
    view, doc = win.viewer.single_view, win.document
    shown = _shown(view)
    assert shown.max() - shown.min() > 200  # dark to bright, as the values span their range
    assert len(np.unique(shown)) > 100
    before = doc.window
    _right_drag(view, (20, 20), (60, 20))  # wider by 40 screen pixels
    assert doc.window.width > before.width
    assert doc.window.width < 2 * float(np.ptp(frames))  # a step of the data's scale
    assert len(np.unique(_shown(view))) > 50  # still an image, not a flat grey


def _right_drag(view, start: tuple[int, int], end: tuple[int, int]) -> None:
    from PySide6.QtCore import QPoint
    from PySide6.QtTest import QTest

    viewport, right = view.graphics.viewport(), Qt.MouseButton.RightButton

    def send(kind, pos, button, buttons):
        QApplication.sendEvent(viewport, QMouseEvent(
            kind, QPointF(pos), QPointF(viewport.mapToGlobal(pos)), button, buttons,
            Qt.KeyboardModifier.NoModifier))

    centre = viewport.rect().center()
    a, b = centre + QPoint(*start), centre + QPoint(*end)
    send(QMouseEvent.Type.MouseMove, a, Qt.MouseButton.NoButton, Qt.MouseButton.NoButton)
    send(QMouseEvent.Type.MouseButtonPress, a, right, right)
    for f in (0.25, 0.5, 0.75, 1.0):
        QTest.qWait(12)
        send(QMouseEvent.Type.MouseMove, a + (b - a) * f, Qt.MouseButton.NoButton, right)
    send(QMouseEvent.Type.MouseButtonRelease, b, right, Qt.MouseButton.NoButton)
    QApplication.processEvents()
