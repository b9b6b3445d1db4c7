"""MPR: axial, coronal and sagittal views of the same document with a linked crosshair.

Each view is an ordinary SliceView on one plane of the same voxels (numpy views cut along the
voxel axes by `core.geometry.plane_view`, so nothing is copied and each image keeps its true
row and column spacing: 2.5 mm slices make coronal and sagittal images 2.5 mm tall per row).
Clicking or dragging in one view moves the document's crosshair; the other two follow because
they subscribe to it, not because this widget tells them to.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGridLayout, QWidget

from medviewer.core.geometry import PLANES
from medviewer.ui.document.study import StudyDocument
from medviewer.ui.viewing.slice_view import SliceView
from medviewer.ui.viewing.tools import ToolManager

# (row, column, row span) of each plane: axial large on the left, coronal and sagittal stacked
# on the right, so every image gets more screen than three narrow panes in a row.
GRID = {"axial": (0, 0, 2), "coronal": (0, 1, 1), "sagittal": (1, 1, 1)}


class MprView(QWidget):
    """Three linked planes: axial on the left, coronal above sagittal on the right."""

    sigCursorInfo = Signal(str)

    def __init__(self, document: StudyDocument, parent: QWidget | None = None, *,
                 tools: ToolManager | None = None) -> None:
        super().__init__(parent)
        self.document = document
        self.views: dict[str, SliceView] = {}
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        for plane in PLANES:
            view = SliceView(document, plane, self, tools=tools)
            view.set_crosshair_enabled(True)
            view.sigCursorInfo.connect(self.sigCursorInfo)
            self.views[plane] = view
            row, col, span = GRID[plane]
            layout.addWidget(view, row, col, span, 1)
        layout.setColumnStretch(0, 1)
        layout.setColumnStretch(1, 1)

    def slice_views(self) -> list[SliceView]:
        return list(self.views.values())

    def fit(self) -> None:
        for view in self.views.values():
            view.fit()
