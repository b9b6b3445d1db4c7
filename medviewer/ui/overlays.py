"""The text a reader expects on the image, as a PACS puts it there.

Corners: modality and series (top left), plane, image, time point and table position (top
right), window, level, zoom and an "Inverted" flag (bottom left), pixel size (bottom right).
Edges: orientation letters. Middle: why an image failed to decode, instead of a silent blank.
The labels are children of the SliceView, so `widget.grab()` (and Export View) carries them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from medviewer.core import geometry

if TYPE_CHECKING:
    from medviewer.ui.slice_view import SliceView

OVERLAY_STYLE = "color: #e8e8a0; background: transparent; font: 11px 'DejaVu Sans';"
LETTER_STYLE = "color: #ffd24a; background: transparent; font: bold 14px 'DejaVu Sans';"
FAILURE_STYLE = ("color: #ff7a6e; background: rgba(0, 0, 0, 170); padding: 8px; "
                 "border: 1px solid #ff7a6e; font: bold 13px 'DejaVu Sans';")
# where each overlay sits, as fractions of the free width and height
OVERLAY_PLACES = {"top_left": (0, 0), "top_right": (1, 0), "bottom_left": (0, 1),
                  "bottom_right": (1, 1), "left": (0, 0.5), "right": (1, 0.5),
                  "top": (0.5, 0), "bottom": (0.5, 1)}
MARGIN = 6


def _label(parent: SliceView, style: str) -> QLabel:
    label = QLabel(parent)
    label.setStyleSheet(style)
    label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
    return label


class ImageOverlays:
    """The corner, edge and failure labels of one SliceView, and the text they carry."""

    def __init__(self, view: SliceView) -> None:
        self.view = view
        self.title = ""  # modality and series description, top left (elided when placed)
        self.labels: dict[str, QLabel] = {}
        flag = Qt.AlignmentFlag
        for name, (fx, _) in OVERLAY_PLACES.items():
            label = _label(view, LETTER_STYLE if "_" not in name else OVERLAY_STYLE)
            label.setAlignment((flag.AlignRight if fx == 1 else flag.AlignLeft) | flag.AlignTop)
            self.labels[name] = label
        self.failure_label = _label(view, FAILURE_STYLE)
        self.failure_label.setWordWrap(True)
        self.failure_label.setAlignment(flag.AlignCenter)
        self.failure_label.hide()

    def update(self) -> None:
        """Rewrite every label from the document and the view, then place them."""
        view, doc, o = self.view, self.view.document, self.labels
        series = doc.series
        title = (doc.volume.description if doc.volume else "") or (series.description
                                                                   if series else "")
        self.title = f"{doc.modality}  {title}".strip()
        o["top_right"].setText("\n".join(self.slice_lines()))
        w = doc.window
        flag = "  Inverted" if doc.display_inverted else ""
        o["bottom_left"].setText(f"W {w.width:.0f}  L {w.center:.0f}{flag}\n"
                                 f"Zoom {view.zoom():.2f}x")
        row_mm, col_mm = view.spacing
        o["bottom_right"].setText(f"{col_mm:.2f} x {row_mm:.2f} mm")
        letters = doc.edge_labels(view.plane_name)
        for edge in ("left", "right", "top", "bottom"):
            o[edge].setText(letters.get(edge, ""))
        reason = doc.decode_failure(view.plane_name, view.slice_index)
        self.failure_label.setText(f"Image could not be decoded:\n{reason}" if reason else "")
        self.failure_label.setVisible(reason is not None)
        self.place()

    def slice_lines(self) -> list[str]:
        """Top right: plane, image, time and position; a projection image (no geometry) is
        "Image k / n" with no position, never an invented "Axial" at "Pos 0.0 mm"."""
        view, doc = self.view, self.view.document
        n, k = view.plane.count, view.slice_index + 1
        located = doc.has_geometry
        lines = [f"{view.plane.name.capitalize()}  {k} / {n}" if located else f"Image {k} / {n}"]
        if doc.time_count > 1:
            lines.append(f"Time {doc.time_index + 1} / {doc.time_count}")
        if located:
            lines.append(f"Pos {self.slice_position_mm():.1f} mm")
        if doc.volume is None:
            lines.append("loading…")
        return lines

    def slice_position_mm(self) -> float:
        """Position of this image along its plane normal, as the scanner's table would read."""
        view = self.view
        col, row, slc = view.document.crosshair
        lps = geometry.voxel_to_lps(view.document.affine, col, row, slc)
        axis = {"axial": 2, "coronal": 1, "sagittal": 0}[view.plane.name]
        return float(lps[axis])

    def place(self) -> None:
        """Corners and edges at their places; the title elided rather than cover a letter."""
        w, h, m = self.view.width(), self.view.height(), MARGIN
        for name, label in self.labels.items():
            fx, fy = OVERLAY_PLACES[name]
            if name == "top_left":
                label.setText(label.fontMetrics().elidedText(
                    self.title, Qt.TextElideMode.ElideRight, max(60, w // 2 - 16)))
            label.adjustSize()
            label.move(int(m + fx * (w - label.width() - 2 * m)),
                       int(m + fy * (h - label.height() - 2 * m)))
        failure = self.failure_label
        if failure.isVisibleTo(self.view):
            failure.setFixedWidth(max(120, int(w * 0.8)))
            failure.adjustSize()
            failure.move((w - failure.width()) // 2, (h - failure.height()) // 2)
