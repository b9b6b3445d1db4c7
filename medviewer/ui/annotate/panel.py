"""The Annotate dock: tools and their size, the label table, display, commands, boxes.

Widgets only: every handler reads its widget and calls the controller (or sets a display
setting on the document's label map); `sync()` brings the widgets back in line with the
document after an edit, cheaply, because it runs after every brush dab (the label table is
rebuilt only when a label's name, colour or visibility really changed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QColorDialog,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medviewer.core.annotations import AnnotationError, Label
from medviewer.ui.annotate.box_panel import BoxPanel
from medviewer.ui.annotate.boxes import BoxReview
from medviewer.ui.document.annotate_state import TOOL_NAMES, TOOLS

if TYPE_CHECKING:
    from medviewer.ui.annotate.controller import AnnotateController

NAVIGATE = "navigate"


class AnnotatePanel(QWidget):
    """The dock's contents; `controller` does the work."""

    def __init__(self, controller: AnnotateController) -> None:
        super().__init__()
        self.controller, self.document = controller, controller.document
        self._table_signature: tuple = ()
        layout = QVBoxLayout(self)
        layout.addLayout(self._build_tools())
        layout.addLayout(self._build_brush())
        layout.addWidget(self._build_labels())
        layout.addLayout(self._build_display())
        layout.addLayout(self._build_commands())
        self.box_panel = BoxPanel(controller.boxes, self.document)  # box label, classes
        layout.addWidget(self.box_panel)
        self.box_review = BoxReview(controller)  # the series' boxes: accept / reject
        layout.addWidget(self.box_review)
        layout.addStretch(1)

    # ----------------------------------------------------------------- construction
    def _build_tools(self) -> QGridLayout:
        grid = QGridLayout()
        self.tool_group = QButtonGroup(self)
        self.tool_group.setExclusive(False)  # none checked while a viewing tool is active
        self.tool_buttons: dict[str, QPushButton] = {}
        for i, tool in enumerate((NAVIGATE, *TOOLS)):
            button = QPushButton("Navigate" if tool == NAVIGATE else TOOL_NAMES[tool])
            button.setCheckable(True)
            button.clicked.connect(lambda _=False, t=tool: self.controller.set_tool(
                None if t == NAVIGATE else t))
            self.tool_group.addButton(button)
            self.tool_buttons[tool] = button
            grid.addWidget(button, i // 3, i % 3)
        return grid

    def _build_brush(self) -> QFormLayout:
        form = QFormLayout()
        self.size_spin = QDoubleSpinBox(suffix=" mm", minimum=0.5, maximum=100.0, value=5.0)
        self.size_spin.setToolTip("Brush and eraser radius in millimetres")
        self.size_spin.valueChanged.connect(lambda v: self.controller.set_brush(radius_mm=v))
        self.sphere_check = QCheckBox("3D sphere (else a disc on this slice)")
        self.sphere_check.toggled.connect(lambda on: self.controller.set_brush(sphere=on))
        self.overwrite_check = QCheckBox("Paint over other labels", checked=True)
        self.overwrite_check.toggled.connect(lambda on: self.controller.set_brush(overwrite=on))
        row = QHBoxLayout()
        self.range_check = QCheckBox("Only values")
        self.range_low = QDoubleSpinBox(minimum=-100000, maximum=100000, value=-100.0)
        self.range_high = QDoubleSpinBox(minimum=-100000, maximum=100000, value=200.0)
        for widget in (self.range_check, self.range_low, self.range_high):
            row.addWidget(widget)
        self.range_check.toggled.connect(self._on_range_changed)
        self.range_low.valueChanged.connect(self._on_range_changed)
        self.range_high.valueChanged.connect(self._on_range_changed)
        form.addRow("Size", self.size_spin)
        form.addRow(self.sphere_check)
        form.addRow(self.overwrite_check)
        form.addRow(row)
        return form

    def _build_labels(self) -> QWidget:
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        self.labels_table = QTableWidget(0, 3)
        self.labels_table.setHorizontalHeaderLabels(["Show", "Label", "Colour"])
        self.labels_table.verticalHeader().hide()
        self.labels_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.labels_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.labels_table.itemChanged.connect(self._on_item_changed)
        self.labels_table.cellClicked.connect(self._on_cell_clicked)
        self.labels_table.itemSelectionChanged.connect(self._on_selection)
        row = QHBoxLayout()
        self.new_label_edit = QLineEdit(placeholderText="new label name (e.g. lesion)")
        self.add_label_button = QPushButton("Add Label")
        self.add_label_button.clicked.connect(self._on_add_label)
        row.addWidget(self.new_label_edit)
        row.addWidget(self.add_label_button)
        layout.addWidget(self.labels_table)
        layout.addLayout(row)
        layout.addWidget(self._build_model_labels())
        return box

    def _build_model_labels(self) -> QWidget:
        """The AI model's labels (name, colour; the name gives the SEG code), offered when the
        series has an AI segmentation: a correction named like the model's label retrains it,
        one named "segment 1" would have to be mapped by hand."""
        self.model_labels_row = QWidget()
        row = QHBoxLayout(self.model_labels_row)
        row.setContentsMargins(0, 0, 0, 0)
        self.model_label_combo = QComboBox()
        self.model_label_combo.setToolTip("The labels of the model whose segmentation is shown: "
                                          "paint corrections with these, so retraining knows "
                                          "which label each one is")
        self.add_model_label_button = QPushButton("Add Model Label")
        self.add_model_label_button.clicked.connect(self._on_add_model_label)
        row.addWidget(self.model_label_combo, 1)
        row.addWidget(self.add_model_label_button)
        self.document.sigAiResultChanged.connect(self._sync_model_labels)
        self._sync_model_labels()
        return self.model_labels_row

    def _sync_model_labels(self, *_args: object) -> None:
        result = self.document.ai_result
        labels = list(zip(result.labels, result.colours, strict=False))[1:] \
            if result is not None and result.label_map is not None else []
        self.model_label_combo.clear()
        for name, colour in labels:
            self.model_label_combo.addItem(_swatch(colour), name, colour)
        self.model_labels_row.setVisible(bool(labels))
        if labels:
            self.model_label_combo.setToolTip(f"The labels of {result.title or result.model_id}"
                                              ": paint corrections with these, so retraining "
                                              "knows which label each one is")

    def _on_add_model_label(self) -> None:
        """The chosen model label becomes the brush's label (added once, then selected)."""
        name = self.model_label_combo.currentText()
        if not name or self.document.can_annotate():
            return
        existing = self.document.ensure_annotation().labelmap.table.by_name(name)
        if existing is not None:
            self.document.active_label = existing.value
            self.document.labelmap_changed(None, dirty=False)
            return
        colour = self.model_label_combo.currentData()
        try:
            self.document.add_label(name, colour if _is_colour(colour) else None)
        except AnnotationError as exc:
            self.controller.host.set_status(exc.reason)

    def _build_display(self) -> QFormLayout:
        form = QFormLayout()
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100,
                                      value=50)
        self.opacity_slider.valueChanged.connect(self._on_opacity)
        self.display_combo = QComboBox()
        self.display_combo.addItems(["fill", "outline"])
        self.display_combo.currentTextChanged.connect(self._on_display)
        form.addRow("Opacity", self.opacity_slider)
        form.addRow("Show as", self.display_combo)
        return form

    def _build_commands(self) -> QGridLayout:
        grid = QGridLayout()
        c = self.controller
        self.islands_spin = QDoubleSpinBox(suffix=" mm³", minimum=0, maximum=1e6, value=10.0)
        buttons = (("Undo", c.undo), ("Redo", c.redo),
                   ("Fill Between Slices", c.fill_between_slices),
                   ("Keep Largest", c.keep_largest), ("Smooth", c.smooth),
                   ("Remove Islands <", lambda: c.remove_islands(self.islands_spin.value())),
                   ("Accept AI Prediction", c.accept_prediction), ("Save (Ctrl+S)", c.save))
        self.command_buttons: dict[str, QPushButton] = {}
        for i, (text, slot) in enumerate(buttons):
            button = QPushButton(text)
            button.clicked.connect(lambda _=False, s=slot: s())
            self.command_buttons[text] = button
            grid.addWidget(button, i // 2, i % 2)
        grid.addWidget(self.islands_spin, len(buttons) // 2, 1)
        return grid

    # ----------------------------------------------------------------- handlers
    def _on_range_changed(self, *_args: object) -> None:
        low, high = sorted((self.range_low.value(), self.range_high.value()))
        self.controller.set_brush(value_range=(low, high) if self.range_check.isChecked()
                                  else None)

    def _on_add_label(self) -> None:
        name = self.new_label_edit.text().strip()
        if not name or self.document.can_annotate():
            return
        try:
            self.document.add_label(name)
        except AnnotationError as exc:
            self.controller.host.set_status(exc.reason)
            return
        self.new_label_edit.clear()

    def _label_of_row(self, row: int) -> Label | None:
        item = self.labels_table.item(row, 1)
        labelmap = self.document.labelmap
        if item is None or labelmap is None:
            return None
        value = int(item.data(Qt.ItemDataRole.UserRole))
        return labelmap.table.labels.get(value)

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        label = self._label_of_row(item.row())
        if label is None:
            return
        if item.column() == 0:
            label.visible = item.checkState() == Qt.CheckState.Checked
        elif item.column() == 1 and item.text().strip() != label.name:
            self._rename(label, item.text().strip())
        else:
            return
        self.document.labelmap_changed(None, dirty=item.column() == 1)

    def _rename(self, label: Label, name: str) -> None:
        table = self.document.labelmap.table
        other = table.by_name(name) if name else None
        if not name or (other is not None and other is not label):
            self.controller.host.set_status(f"Cannot rename {label.name!r} to {name!r}")
            return
        table.labels[label.value] = Label(label.value, name, label.colour, label.visible)

    def _on_cell_clicked(self, row: int, column: int) -> None:
        label = self._label_of_row(row)
        if label is None or column != 2:
            return
        colour = QColorDialog.getColor(QColor(label.colour), self, f"Colour of {label.name}")
        if colour.isValid():
            label.colour = colour.name()
            self.document.labelmap_changed(None)

    def _on_selection(self) -> None:
        rows = {i.row() for i in self.labels_table.selectedItems()}
        label = self._label_of_row(min(rows)) if rows else None
        if label is not None:
            self.document.active_label = label.value

    def _on_opacity(self, value: int) -> None:
        if self.document.labelmap is not None:
            self.document.labelmap.opacity = value / 100
            self.document.labelmap_changed(None, dirty=False)

    def _on_display(self, mode: str) -> None:
        if self.document.labelmap is not None:
            self.document.labelmap.display = mode
            self.document.labelmap_changed(None, dirty=False)

    # ----------------------------------------------------------------- following the document
    def sync(self) -> None:
        doc = self.document
        for tool, button in self.tool_buttons.items():
            button.setChecked(tool == doc.tool)  # the viewer's tools are not shown here
        self.command_buttons["Undo"].setEnabled(self.controller.undo_action.isEnabled())
        self.command_buttons["Redo"].setEnabled(self.controller.redo_action.isEnabled())
        self.box_panel.sync()
        self.box_review.sync()
        self.command_buttons["Accept AI Prediction"].setEnabled(
            self.controller.accept_action.isEnabled())
        labelmap = doc.labelmap
        labels = list(labelmap.table) if labelmap is not None else []
        signature = tuple((lab.value, lab.name, lab.colour, lab.visible, lab.origin)
                          for lab in labels)
        if signature != self._table_signature:
            self._table_signature = signature
            self._fill_table(labels)

    def _fill_table(self, labels: list[Label]) -> None:
        table = self.labels_table
        table.blockSignals(True)
        table.setRowCount(len(labels))
        for row, label in enumerate(labels):
            show = QTableWidgetItem()
            show.setCheckState(Qt.CheckState.Checked if label.visible else Qt.CheckState.Unchecked)
            name = QTableWidgetItem(label.name)
            name.setData(Qt.ItemDataRole.UserRole, label.value)
            name.setToolTip(label.origin_text)  # what the SEG will say about it
            colour = QTableWidgetItem("")
            colour.setBackground(QColor(label.colour))
            colour.setFlags(colour.flags() & ~Qt.ItemFlag.ItemIsEditable)
            for col, item in enumerate((show, name, colour)):
                table.setItem(row, col, item)
            if label.value == self.document.active_label:
                table.selectRow(row)
        table.blockSignals(False)


def _is_colour(text: object) -> bool:
    return isinstance(text, str) and len(text) == 7 and text.startswith("#")


def _swatch(colour: object) -> QIcon:
    pixmap = QPixmap(12, 12)
    pixmap.fill(QColor(colour if _is_colour(colour) else "#808080"))
    return QIcon(pixmap)
