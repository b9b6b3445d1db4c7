"""Every key and mouse action of the viewer, in one table: Help ▸ Keyboard Shortcuts and the
README's controls table are both this table (a test compares them, and compares its keys with
the ones the views and the panel really handle: `slice_view.VIEW_KEYS`, `viewer.PRESET_KEYS`
and the panel's key constants), so what the reader is told cannot drift from what works.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)


@dataclass(frozen=True)
class Control:
    """One row: what the reader wants, how to do it, and the keys that `how` names."""

    action: str
    how: str
    keys: tuple[str, ...] = ()


CONTROLS: tuple[Control, ...] = (
    Control("next / previous slice",
            "wheel, ↑ / ↓, slider; PgUp / PgDn: 10 slices; Home / End. Head first, as most "
            "PACS: image 1 is the most cranial axial image (coronal: the most anterior, "
            "sagittal: the patient's right), wheel down, ↓, PgDn and End go towards the feet "
            "(back, left); View ▸ Image Order ▸ Feet First numbers and scrolls the other way "
            "(remembered). Images without patient geometry keep their stored order",
            ("↑", "↓", "PgUp", "PgDn", "Home", "End")),
    Control("time point (4D)", "← / →, time slider", ("←", "→")),
    Control("window / level",
            "right-drag (horizontal: width, vertical: level); header windows and CT presets "
            "(brain, lung, mediastinum, abdomen, bone, ...) in the toolbar"),
    Control("window presets by key",
            "0: the header's first window; CT only: F2 brain, F3 subdural, F4 lung, "
            "F5 mediastinum, F6 abdomen, F7 bone (the preset list shows each key, e.g. "
            "\"Lung (F4)\")", ("0", "F2", "F3", "F4", "F5", "F6", "F7")),
    Control("invert",
            "I, Invert in the toolbar or View menu: grey scale flipped for display only (on a "
            "MONOCHROME1 film it shows the image as stored)", ("I",)),
    Control("reset",
            "R, Reset in the toolbar or View menu: header window, fit, no pan, invert off; "
            "measurements stay", ("R",)),
    Control("text overlays",
            "O: all text on the images off / on for the session (clean screenshots, "
            "teaching). Top left: patient name, ID, sex and age, study date and description; "
            "top right: plane, image, position, slab, series and slice thickness; bottom: "
            "W/L, zoom and pixel size", ("O",)),
    Control("thick slab",
            "Slab combo and mm box in the toolbar: MIP, MinIP or Avg over the thickness "
            "(converted to images with each plane's slice spacing), in every view; the "
            "corner says so with the thickness the images cover (10 mm on 2.5 mm slices: "
            "\"MIP 12.5 mm (5 images)\"), so does the cursor readout (\"MIP value\"); "
            "measurements read the slab"),
    Control("zoom / pan / fit / 1:1", "Ctrl+wheel / left-drag / F / 1", ("F", "1")),
    Control("cine", "Cine ▶ with frames per second"),
    Control("MPR",
            "layout combo ▸ MPR (Ctrl+2; Ctrl+1 back to one view): axial, coronal and sagittal "
            "with a linked crosshair (click or drag to move it), at the true spacing. Planes "
            "are cut along the series' own voxel axes when these are axial, coronal or "
            "sagittal; an oblique acquisition is resampled (trilinear) to true axial, coronal "
            "and sagittal planes. The 1x1 view shows the images as acquired. Offered for "
            "volumes only, not for single images, projections or localizers",
            ("Ctrl+1", "Ctrl+2")),
    Control("tools",
            "one tool has the mouse in every view, named in the status bar (`Tool: Distance`): "
            "Navigate, W/L, Distance, Rect ROI, Ellipse ROI in the toolbar, Brush, Eraser, "
            "Flood fill, Polygon fill and Box in the Annotate menu and dock; choosing one "
            "anywhere ends the last. Right-drag is window/level with any tool. A shape takes "
            "a press only from its own tool or Navigate (which moves any of them), so a new "
            "ellipse drawn on a ruler's end is an ellipse"),
    Control("measure",
            "Distance (mm), Rect ROI and Ellipse ROI (mean, SD, min, max, area mm²); in px / "
            "px² when the header gives no pixel size; Delete or Backspace removes the selected "
            "one. Measurements belong to their series: they are still there when you come "
            "back to it, listed in the Measurements dock (type, image, value; Go To or "
            "double-click shows the image, Delete removes it), and those on the images as "
            "acquired are saved in the SR with the annotations (Ctrl+S) and read back",
            ("Delete", "Backspace", "Ctrl+S")),
    Control("keys after the study tree",
            "clicking a series in the tree hands the keys to its view: ↑ / ↓, PgUp / PgDn, "
            "Home / End move through the series shown, not through the tree; the keys also "
            "follow the mouse into a view (not while you type in a field)",
            ("↑", "↓", "PgUp", "PgDn", "Home", "End")),
    Control("tags",
            "right dock: every element of the current image, sequences expandable, searchable "
            "by keyword, tag or value; right-click: Copy value / tag / row; Ctrl+C copies the "
            "selected rows (tab-separated)", ("Ctrl+C",)),
    Control("open",
            "File ▸ Open Folder (Ctrl+O), Open Files (Ctrl+Shift+O), Open DICOMDIR, Open "
            "Recent, Open Demo Study; or drop files and folders on the window",
            ("Ctrl+O", "Ctrl+Shift+O")),
    Control("export",
            "File ▸ Export View as PNG… (Ctrl+E): the active view as shown, overlays included, "
            "into a file you choose", ("Ctrl+E",)),
    Control("back to a series",
            "instant: the last volumes opened stay in memory (up to 1.5 GB of voxels, least "
            "recently used dropped first)"),
    Control("AI models",
            "AI menu: choose a model (grouped by lab; its tooltip gives the description and "
            "held-out metrics), then Run on Current Slice (Ctrl+R) or Run on Whole Series "
            "(Ctrl+Shift+R), Explain (Heatmap), Compare Fusion Methods (Lab 3), Compare "
            "Segmentation Models (Lab 4), Compare With Mask (DICOM SEG), Clear AI Results, "
            "Export Results (CSV, JSON or DICOM SR), Send Results to PACS. The AI results dock "
            "shows class scores (click the curve to go to a slice), verdicts, labels "
            "(visibility, outline or fill, opacity, volume in mL, Dice, IoU, precision, recall, "
            "boundary F1 and HD95 against a mask), lesions (diameters, mL; click a row to go "
            "to it), boxes (score threshold) and lab 5's cardiothoracic ratio; "
            "the status bar says whether ONNX Runtime runs on the GPU or the CPU",
            ("Ctrl+R", "Ctrl+Shift+R")),
    Control("annotate",
            "Annotate menu and dock, on the stack view: Brush and Eraser (size in mm, disc or "
            "3D sphere, optionally only values in a range such as -100..200 HU), Flood fill "
            "(click), Polygon fill (drag a lasso); Fill Between Slices, Remove Islands, Keep "
            "Largest, Smooth; the label table (add, rename, colour, show), opacity, fill or "
            "outline; Accept AI Prediction (one undo step; a classifier's verdict becomes the "
            "slice or series class). Undo (Ctrl+Z) and Redo (Ctrl+Shift+Z) one stroke at a "
            "time; Save Annotations (Ctrl+S): DICOM SEG and SR (boxes, classes, rulers, area "
            "ROIs with their statistics) beside the data, read back when the series is "
            "opened again",
            ("Ctrl+Z", "Ctrl+Shift+Z", "Ctrl+S")),
    Control("boxes and classes",
            "B: the Box tool (again: back to navigating). On the stack view drag on the image "
            "to draw a box with the dock's box label, drag inside a box to move it, drag its "
            "edge or corner to resize it; click selects, Delete or Backspace deletes the "
            "selected box, right-click: label, accept / reject, delete. Each is one undo step. "
            "Coronal and sagittal show the line where they cut a box. Dock: Box label, Slice "
            "class and Series class (type or pick; Clear)", ("B", "Delete", "Backspace")),
    Control("this list", "Help ▸ Keyboard Shortcuts (F1)", ("F1",)),
)


def listed_keys() -> set[str]:
    """Every key the table names."""
    return {key for control in CONTROLS for key in control.keys}


def markdown_rows() -> list[str]:
    """The README's controls table, row for row."""
    return ["| action | how |", "|---|---|",
            *(f"| {c.action} | {c.how} |" for c in CONTROLS)]


class ShortcutsDialog(QDialog):
    """Help ▸ Keyboard Shortcuts: the table, non-modal, so it can stay open beside the image."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard Shortcuts")
        self.setModal(False)
        self.table = QTableWidget(len(CONTROLS), 2, self)
        self.table.setHorizontalHeaderLabels(["Action", "How"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(True)
        for row, control in enumerate(CONTROLS):
            for col, text in enumerate((control.action, control.how)):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.table.setItem(row, col, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        # rows fit their wrapped text at the width the column has on screen, and follow it
        # when the dialog is resized (sized once at construction they wrapped at the column's
        # width before the first layout, and kept rows many lines too tall)
        self.table.verticalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        self.resize(760, 560)

    def rows(self) -> list[tuple[str, str]]:
        """(action, how) as shown, for tests and copy-paste."""
        return [(self.table.item(r, 0).text(), self.table.item(r, 1).text())
                for r in range(self.table.rowCount())]
