"""The dock's box and class section: the box label, the slice's and the series' class.

Widgets only: each combo is editable (the known names in its list, any other typed in) and
hands what the reader chose to the box controller on Enter, on picking an item or on leaving
the field; `sync()` shows the document's state again (the selected box's label, the current
slice's class, the series' class) and is cheap, because it runs after every brush dab: the
widgets are touched only when what they show changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QPushButton, QWidget

from medviewer.core.annotations import ClassLabel

if TYPE_CHECKING:
    from medviewer.ui.annotate.box_controller import BoxController
    from medviewer.ui.document.study import StudyDocument

SERIES_SCOPE = None  # `slice_index` of the series' class


def _combo(tip: str) -> QComboBox:
    combo = QComboBox()
    combo.setEditable(True)
    combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)  # the controller keeps the names
    combo.setToolTip(tip)
    return combo


def _shown(label: ClassLabel | None) -> tuple[str, str]:
    """(text, tooltip) of a class label: who set it, with the model's score."""
    if label is None:
        return "", "No class set"
    score = "" if label.score is None else f" ({label.score:.2f})"
    return label.label, f"Set by {label.source}{score}"


class BoxPanel(QWidget):
    """Box label, Slice class and Series class (each with Clear), bound to a BoxController."""

    def __init__(self, boxes: BoxController, document: StudyDocument) -> None:
        super().__init__()
        self.boxes, self.document = boxes, document
        self._signature: tuple = ()
        self._syncing = False  # filling the combos is not the reader choosing
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self.box_label_combo = _combo("Label of a new box, and of the selected box")
        self.slice_class_combo = _combo("Class of the slice on screen")
        self.series_class_combo = _combo("Class of the whole series")
        self._commit_on_edit(self.box_label_combo, self._on_box_label)
        self._commit_on_edit(self.slice_class_combo,
                             lambda text: boxes.set_class(text, document.slice_index))
        self._commit_on_edit(self.series_class_combo,
                             lambda text: boxes.set_class(text, SERIES_SCOPE))
        self.clear_slice_button = QPushButton("Clear")
        self.clear_slice_button.clicked.connect(
            lambda: boxes.clear_class(document.slice_index))
        self.clear_series_button = QPushButton("Clear")
        self.clear_series_button.clicked.connect(lambda: boxes.clear_class(SERIES_SCOPE))
        form.addRow("Box label", self.box_label_combo)
        form.addRow("Slice class", self._row(self.slice_class_combo, self.clear_slice_button))
        form.addRow("Series class",
                    self._row(self.series_class_combo, self.clear_series_button))
        document.sigSliceChanged.connect(lambda *_: self.sync())

    @staticmethod
    def _row(combo: QComboBox, button: QPushButton) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(combo, 1)
        row.addWidget(button)
        return row

    def _commit_on_edit(self, combo: QComboBox, commit: Callable[[str], object]) -> None:
        """Enter, an item picked, or the focus leaving the typed text: one commit, and only
        when the text says something new (the controller ignores a repeat)."""
        combo.textActivated.connect(lambda text: self._commit(combo, commit, text))
        combo.lineEdit().editingFinished.connect(
            lambda: self._commit(combo, commit, combo.currentText()))

    def _commit(self, combo: QComboBox, commit: Callable[[str], object], text: str) -> None:
        if self._syncing or not text.strip():
            return
        commit(text)
        self.sync()

    def _on_box_label(self, text: str) -> None:
        self.boxes.set_box_label(text)

    # ----------------------------------------------------------------- document -> widgets
    def sync(self) -> None:
        doc, boxes = self.document, self.boxes
        annotation = doc.annotation
        selected = boxes.selected()
        box_label = selected.label if selected is not None else boxes.box_label
        slice_class = series_class = None
        if annotation is not None:
            slice_class = annotation.boxes.class_of(doc.slice_index)
            series_class = annotation.boxes.class_of(SERIES_SCOPE)
        signature = (box_label, slice_class, series_class, tuple(boxes.box_label_choices()),
                     tuple(boxes.class_choices()))
        if signature == self._signature:
            return
        self._signature = signature
        self._syncing = True
        try:
            self._fill(self.box_label_combo, boxes.box_label_choices(), box_label, "")
            for combo, label in ((self.slice_class_combo, slice_class),
                                 (self.series_class_combo, series_class)):
                self._fill(combo, boxes.class_choices(), *_shown(label))
            self.clear_slice_button.setEnabled(slice_class is not None)
            self.clear_series_button.setEnabled(series_class is not None)
        finally:
            self._syncing = False

    @staticmethod
    def _fill(combo: QComboBox, names: list[str], text: str, tip: str) -> None:
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(names)
        combo.setEditText(text)
        if tip:
            combo.lineEdit().setToolTip(tip)
        combo.blockSignals(False)
