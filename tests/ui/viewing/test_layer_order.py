"""Label outlines (viewing.layer_order.outline) against scipy's erosion: the edge of each label
is what erosion by `width` steps of the 4-neighbour cross takes away."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medviewer.ui.viewing.layer_order import outline


@pytest.mark.parametrize("width", [1, 3])
def test_outline_is_the_band_erosion_removes(width):
    rows, cols = np.mgrid[:60, :70]
    labels = np.zeros((60, 70), np.uint8)
    labels[(rows - 30) ** 2 + (cols - 25) ** 2 < 18 ** 2] = 1  # a disc
    labels[10:50, 45:66] = 2  # a rectangle touching nothing
    labels[55:, :] = 3  # a band running off the image: open at the border
    expected = np.zeros(labels.shape, bool)
    for value in (1, 2, 3):
        area = labels == value
        expected |= area & ~ndimage.binary_erosion(area, iterations=width, border_value=1)
    assert (outline(labels, width) == expected).all()
    assert not outline(labels, width)[-1].any()  # the image border is no edge
