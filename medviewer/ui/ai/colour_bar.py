"""The heatmap's colour bar: what its colours mean, at the right edge of the view showing it.

A CAM heatmap is scaled per slice to 0..1 (pytorch-grad-cam's min-max scaling): 1 is where
the model looked most on this slice, 0 where it looked least; it is no probability and no
comparison between slices. The bar says so: 1 at the top, 0.5, 0 at the bottom, drawn
through the same lookup table as the heatmap (its fade included, so the low end is as
see-through here as on the image). A child widget of the SliceView like the text overlays,
so a grab or Export View carries it; it sits left of the right orientation letter and lets
the mouse through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QEvent, QObject, QRect, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import QWidget

if TYPE_CHECKING:
    from medviewer.ui.viewing.slice_view import SliceView

BAR_WIDTH, TEXT_WIDTH, TITLE_HEIGHT, PAD = 12, 26, 22, 5
RIGHT_GAP = 28  # room for the right edge's orientation letter
TICKS = (1.0, 0.5, 0.0)
SCALE_TEXT = ("Heatmap scale 0..1, scaled per slice: 1 is where the model looked most on "
              "this slice, 0 where it looked least (not a probability).")


class HeatmapColourBar(QWidget):
    """The colour bar of one view's heatmap; `show_for(method)` while a heatmap is drawn."""

    def __init__(self, view: SliceView, lut: np.ndarray) -> None:
        super().__init__(view)
        self.view = view
        self.title = ""
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setToolTip(SCALE_TEXT)
        column = np.ascontiguousarray(lut[::-1, None, :].repeat(BAR_WIDTH, axis=1))  # 1 on top
        self.bar = QImage(column.data, BAR_WIDTH, len(lut), BAR_WIDTH * 4,
                          QImage.Format.Format_RGBA8888).copy()  # own its pixels
        self.hide()
        view.installEventFilter(self)

    def show_for(self, method: str) -> None:
        """Show the bar titled with the explanation method (e.g. Grad-CAM)."""
        self.title = method
        self.place()
        self.show()
        self.raise_()
        self.update()

    def bar_rect(self) -> QRect:
        """Where the colours are, in this widget: the top row is 1, the bottom row 0."""
        return QRect(PAD, PAD + TITLE_HEIGHT, BAR_WIDTH, self.height() - 2 * PAD - TITLE_HEIGHT)

    def place(self) -> None:
        """At the right edge, centred vertically, up to 40 % of the view's height."""
        width = 2 * PAD + BAR_WIDTH + TEXT_WIDTH
        width = max(width, self.fontMetrics().horizontalAdvance(self.title) + 2 * PAD)
        height = int(min(220, max(90, 0.4 * self.view.height())))
        self.setFixedSize(width, height)
        self.move(self.view.width() - width - RIGHT_GAP, (self.view.height() - height) // 2)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        if obj is self.view and event.type() == QEvent.Type.Resize:
            self.place()
        return False

    def paintEvent(self, _event: QPaintEvent) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(0, 0, 0, 150))
        bar = self.bar_rect()
        painter.drawImage(bar, self.bar)
        painter.setPen(QColor(120, 120, 120))
        painter.drawRect(bar.adjusted(0, 0, -1, -1))
        painter.setPen(QColor(230, 230, 230))
        painter.drawText(QRect(0, PAD - 2, self.width(), TITLE_HEIGHT),
                         Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, self.title)
        height = self.fontMetrics().height()
        for value in TICKS:
            y = bar.bottom() - value * (bar.height() - 1)
            box = QRect(bar.right() + 4, int(y - height / 2), TEXT_WIDTH, height)
            painter.drawText(box, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                             f"{value:g}")
        painter.end()
