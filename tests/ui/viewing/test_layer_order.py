"""Label outlines (viewing.layer_order.outline) against scipy's erosion: the edge of each label
is what erosion by `width` steps of the 4-neighbour cross takes away."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medviewer.ui.viewing.layer_order import label_rgba, outline


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


@pytest.mark.parametrize("width", [0, 1, 2])
@pytest.mark.parametrize("where", ["inside", "corner", "empty", "everywhere"])
def test_label_rgba_colours_as_the_whole_image_table_would(width, where):
    """Colouring only the labelled pixels' bounding box gives the image that colouring every
    pixel through the table (and clearing the inside, for outlines) gives."""
    rng = np.random.default_rng(width)
    labels = np.zeros((50, 64), np.uint8)
    if where == "inside":
        labels[12:30, 20:41] = rng.integers(0, 3, (18, 21))
    elif where == "corner":  # running off two borders: open there
        labels[35:, 50:] = 2
        labels[:4, :6] = 1
    elif where == "everywhere":
        labels[:] = rng.integers(1, 3, labels.shape)
    lut = np.zeros((256, 4), np.uint8)
    lut[1], lut[2] = (255, 0, 0, 255), (0, 128, 255, 255)
    expected = lut[labels]
    if width:
        expected[~outline(labels, width)] = 0
    assert (label_rgba(labels, lut, width) == expected).all()
    lut[0] = (9, 9, 9, 255)  # a table that colours the background too
    expected = lut[labels]
    if width:
        expected[~outline(labels, width)] = 0
    assert (label_rgba(labels, lut, width) == expected).all()
