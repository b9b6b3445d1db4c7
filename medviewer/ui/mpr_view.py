"""MPR: axial, coronal and sagittal views of the same document with a linked crosshair.

Each view is an ordinary SliceView on one plane of the same voxels (numpy views cut along the
voxel axes by `core.geometry.plane_view`, so nothing is copied and each image keeps its true
row and column spacing: 2.5 mm slices make coronal and sagittal images 2.5 mm tall per row).
Clicking or dragging in one view moves the document's crosshair; the other two follow because
they subscribe to it, not because this widget tells them to.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QWidget

from medviewer.core.geometry import PLANES
from medviewer.ui.document import StudyDocument
from medviewer.ui.slice_view import SliceView


class MprView(QWidget):
    """Three linked planes side by side."""

    sigCursorInfo = Signal(str)

    def __init__(self, document: StudyDocument, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.document = document
        self.views: dict[str, SliceView] = {}
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        for plane in PLANES:
            view = SliceView(document, plane, self)
            view.crosshair_enabled = True
            view.sigCursorInfo.connect(self.sigCursorInfo)
            self.views[plane] = view
            layout.addWidget(view, 1)
        for view in self.views.values():
            view.refresh()

    def slice_views(self) -> list[SliceView]:
        return list(self.views.values())

    def fit(self) -> None:
        for view in self.views.values():
            view.fit()
