"""The course of a classifier's scores over the series, a map to click through.

x is the image number as the views count (the reading order), y the probability (always
0..1). One curve per label up to `PLOT_EVERY_LABEL` labels, above that the top label's
probability only (ten digits' curves would be a tangle). A yellow vertical line marks the
image on screen; a left click goes to the plotted image nearest the click's x
(`sigImageClicked` carries its number, 1-based, as shown on the axis).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal

from medviewer.ui.document.ai_state import rgb

PLOT_EVERY_LABEL = 4  # up to this many labels, one curve each; above, the top score only
LINE_COLOUR = (255, 210, 60)


class ScoreCurve(pg.PlotWidget):
    """Scores over image numbers, with the current image marked; click to go there."""

    sigImageClicked = Signal(int)  # image number (1-based, reading order)

    def __init__(self) -> None:
        super().__init__(background=None)
        self.setMinimumHeight(140)
        self.setLabel("bottom", "slice")
        self.setLabel("left", "probability")
        self.getPlotItem().enableAutoRange(y=False)
        self.setYRange(0, 1, padding=0.02)  # probabilities: always 0..1
        self.addLegend(offset=(5, 5))
        self.slice_line = pg.InfiniteLine(angle=90, pen=pg.mkPen(LINE_COLOUR, width=1))
        self.addItem(self.slice_line, ignoreBounds=True)
        self.setToolTip("Click the curve to go to that slice; the yellow line is the slice "
                        "on screen.")
        self.numbers = np.empty(0, int)  # the image numbers plotted
        self.scene().sigMouseClicked.connect(self._on_clicked)

    def plot_scores(self, numbers: np.ndarray, scores: np.ndarray, labels: list[str],
                    colours: list[str]) -> None:
        """Curves of `scores` (one row per image number in `numbers`), in reading order."""
        plot = self.getPlotItem()
        for item in list(plot.listDataItems()):
            plot.removeItem(item)
        plot.legend.clear()
        order = np.argsort(numbers)
        self.numbers, scores = np.asarray(numbers)[order], scores[order]
        self.setXRange(self.numbers[0], self.numbers[-1], padding=0.02)  # now, not at paint
        if len(labels) > PLOT_EVERY_LABEL:
            plot.plot(self.numbers, scores.max(axis=1), pen=pg.mkPen((230, 230, 230), width=2),
                      name="top label's probability")
            return
        for i, name in enumerate(labels):
            colour = rgb(colours[i] if i < len(colours) else "", i)
            plot.plot(self.numbers, scores[:, i], pen=pg.mkPen(colour, width=2), name=name)

    def nearest(self, x: float) -> int:
        """The plotted image number nearest x."""
        return int(self.numbers[np.argmin(np.abs(self.numbers - x))])

    def _on_clicked(self, event) -> None:
        view_box = self.getPlotItem().getViewBox()
        if (event.button() != Qt.MouseButton.LeftButton or not len(self.numbers)
                or not view_box.sceneBoundingRect().contains(event.scenePos())):
            return
        event.accept()
        self.sigImageClicked.emit(self.nearest(view_box.mapSceneToView(event.scenePos()).x()))
