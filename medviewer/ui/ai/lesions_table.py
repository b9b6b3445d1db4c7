"""The AI dock's lesion table: one row per lesion of a segmentation, a click goes there.

Rows come from `AiOutput.lesions` (core.lesions, computed in the worker): the lesion, its
volume, its longest axial diameter and the longest one perpendicular to it (RECIST), the
image they are measured on, and the mean value (HU on CT). Clicking a row emits
`sigLesionChosen(lesion)`; the controller points the crosshair at the lesion on that image
and centres the view on it (`centre_view_on`), and `LesionAxes` draws the chosen lesion's two
diameters on that image, as a reader's calipers would be.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QLineF, Qt, Signal
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import (
    QGraphicsLineItem,
    QGroupBox,
    QLabel,
    QTableWidgetItem,
    QVBoxLayout,
)

from medviewer.ui.ai.tables import results_table
from medviewer.ui.viewing.layer_order import MEASUREMENTS_Z

HEADERS = (("Lesion", ""),
           ("mm", "Longest axial diameter x the longest one perpendicular to it (mm), "
            "on the image where the lesion is longest"),
           ("mL", "Volume in millilitres"),
           ("Im.", "The image both diameters are measured on"),
           ("Mean", "Mean value of the lesion's voxels (HU on CT)"))
MOST_ROWS = 8  # then the table scrolls
AXES_COLOUR = "#00e0ff"  # cyan: apart from the labels' colours and the yellow measurements


class LesionTable(QGroupBox):
    """The 'Lesions' section of the AI results dock."""

    sigLesionChosen = Signal(object)  # core.lesions.Lesion
    sigChosenChanged = Signal()  # the lesion whose diameters are drawn changed (or went)

    def __init__(self) -> None:
        super().__init__("Lesions")
        self.lesions: list[Any] = []
        self.chosen: Any = None  # the lesion clicked last, its diameters drawn
        self.table = results_table([h for h, _ in HEADERS], single=True)
        self.table.setObjectName("lesionTable")
        for col, (_, tip) in enumerate(HEADERS):
            if tip:
                self.table.horizontalHeaderItem(col).setToolTip(tip)
        self.table.cellClicked.connect(lambda row, _col: self.choose(row))
        self.note = QLabel()
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(self.note)

    def show_output(self, output: Any, number: Callable[[int], int], modality: str) -> None:
        """Shown with the lesions of `output` (an AiOutput or None), hidden without any."""
        lesions = getattr(output, "lesions", ()) if output is not None else ()
        self.setVisible(bool(lesions))
        if not lesions:
            self._set_chosen(None)
        if lesions:
            self.set_lesions(lesions, number, "HU" if modality == "CT" else "")
            if output.scope == "slice":  # a lesion's other slices were not segmented
                self.note.setText("Measured on the slice(s) run only: run on the whole "
                                  "series for each lesion's volume and longest diameter.")

    def set_lesions(self, lesions: Sequence[Any], number: Callable[[int], int],
                    units: str = "") -> None:
        """Fill the rows; `number(k)` is the image number the views show for slice k."""
        self.lesions = list(lesions)
        if all(lesion is not self.chosen for lesion in self.lesions):
            self._set_chosen(None)  # another result: its lesion is gone
        self.table.setRowCount(len(self.lesions))
        kinds = {lesion.label for lesion in self.lesions}
        one_kind = len(kinds) == 1  # then the header names it and a row is a number: narrower
        self.table.horizontalHeaderItem(0).setText(next(iter(kinds)) if one_kind else "Lesion")
        for row, lesion in enumerate(self.lesions):
            mean = "–" if lesion.mean_value is None else f"{lesion.mean_value:.0f}"
            cells = (str(lesion.number) if one_kind else lesion.name,
                     f"{lesion.long_axis_mm:.1f}\u00d7{lesion.short_axis_mm:.1f}",
                     f"{lesion.volume_ml:.2f}", str(number(lesion.slice_index)), mean)
            x, y, z = lesion.centre_lps
            tip = (f"{lesion.name}: centre at image {number(round(lesion.centre_voxel[0]))}, "
                   f"x {x:.1f} y {y:.1f} z {z:.1f} mm (LPS); {lesion.voxels} voxels. "
                   "Click to go there.")
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(tip)
                if col:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                          | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, col, item)
        self.table.horizontalHeaderItem(4).setText(units or "Mean")
        rows = min(len(self.lesions), MOST_ROWS)
        self.table.setFixedHeight(
            self.table.horizontalHeader().sizeHint().height() + 2 * self.table.frameWidth()
            + sum(self.table.rowHeight(r) for r in range(rows))
            + self.table.horizontalScrollBar().sizeHint().height())
        self.note.setText("Each connected region of a lesion label, in 3D; diameters on "
                          "the axial image where it is longest. Click a row to go there.")
        self.setTitle(f"Lesions ({len(self.lesions)})")

    def choose(self, row: int) -> None:
        """What a click on a row does (also for tests and scripts)."""
        if 0 <= row < len(self.lesions):
            self.table.selectRow(row)
            self._set_chosen(self.lesions[row])
            self.sigLesionChosen.emit(self.lesions[row])

    def _set_chosen(self, lesion: Any) -> None:
        if lesion is not self.chosen:
            self.chosen = lesion
            self.sigChosenChanged.emit()


class LesionAxes:
    """A SliceView layer: the chosen lesion's long and short axes on the image they were
    measured on (acquired plane only; `refresh` runs whenever the view's image changes)."""

    def __init__(self, view: Any, table: LesionTable) -> None:
        self.view, self.table = view, table
        self.items: list[QGraphicsLineItem] = []
        table.sigChosenChanged.connect(self.refresh)

    def refresh(self, *_args: object) -> None:
        for item in self.items:
            self.view.view_box.removeItem(item)
        self.items = []
        lesion, plane = self.table.chosen, self.view.plane
        if lesion is None or tuple(plane.axes) != (0, 1, 2) or \
                plane.to_voxel(self.view.slice_index, 0, 0)[2] != lesion.slice_index:
            return
        _, rows, cols = plane.shape
        pen = QPen(QColor(AXES_COLOUR), 2)
        pen.setCosmetic(True)
        for axis in (lesion.long_axis, lesion.short_axis):
            # (row, col) with pixel centres on whole numbers -> x, y on the (flipped) image
            ends = [(c + 0.5, r + 0.5) for r, c in axis]
            ends = [(cols - x if plane.flips[1] else x, rows - y if plane.flips[0] else y)
                    for x, y in ends]
            item = QGraphicsLineItem(QLineF(self.view.pixel_to_view(*ends[0]),
                                            self.view.pixel_to_view(*ends[1])))
            item.setPen(pen)
            item.setZValue(MEASUREMENTS_Z)
            self.view.view_box.addItem(item, ignoreBounds=True)
            self.items.append(item)


def centre_view_on(view: Any, row: float, col: float) -> None:
    """Pan a SliceView (zoom kept) so pixel (row, col) of its image is in the middle."""
    (x0, x1), (y0, y1) = view.view_box.viewRange()
    centre = view.pixel_to_view(col + 0.5, row + 0.5)  # pixel centres
    half_w, half_h = (x1 - x0) / 2, (y1 - y0) / 2
    view.view_box.setRange(xRange=(centre.x() - half_w, centre.x() + half_w),
                           yRange=(centre.y() - half_h, centre.y() + half_h), padding=0.0)
