"""The Import dialog's form: what the model is, its labels and its input spec.

`ModelBox`: the file's kind and what MedViewer guessed, editable (lab; architecture, which says
the task, for a checkpoint; the task itself for a self-contained model file, which needs no
architecture), and the model's id, title and version. `LabelsBox`: one row per class of the
network (name, #rrggbb colour), "class N" names flagged until they are given, and a button
taking the labels of a similar installed model when it has as many. `InputSpecBox`: how a
slice becomes the network's input (size, channels, slice context, window, mean/std, extra
inputs, modalities), filled from a similar installed model and said so. Each reads back as
manifest fields (ValueError with a sentence when it cannot).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from medviewer.core.paths import component_problem
from medviewer.inference import Manifest
from medviewer.inference.manifest import CONTEXTS, TASKS
from medviewer.training import importing
from medviewer.ui.training.import_tasks import (
    PALETTE,
    PLACEHOLDER,
    default_id,
    numbers,
    placeholder_labels,
    words,
)

WARN = "#e0a030"


class ModelBox(QGroupBox):
    """What the file is (guessed, editable) and the model's name."""

    sigChosen = Signal()  # the reader chose another lab or architecture
    sigTaskChanged = Signal()
    sigEdited = Signal()  # id, title or version typed

    def __init__(self) -> None:
        super().__init__("What it is (guessed from the file: change what is wrong)")
        self.archs: dict[int, list[tuple[str, str]]] = {}  # lab -> [(architecture, task)]
        self.self_contained = False
        self._filling = False
        self.form = form = QFormLayout(self)
        self.kind_label = QLabel("\u2014")
        form.addRow("File kind", self.kind_label)
        self.lab_combo = QComboBox()
        for lab, task in importing.LAB_TASKS.items():
            self.lab_combo.addItem(f"Lab {lab} ({task})", lab)
        self.lab_combo.currentIndexChanged.connect(self._on_lab_changed)
        form.addRow("Lab", self.lab_combo)
        self.arch_combo = QComboBox()
        self.arch_combo.setToolTip("The network the checkpoint's tensors are loaded into")
        self.arch_combo.currentIndexChanged.connect(self._on_arch_changed)
        form.addRow("Architecture", self.arch_combo)
        self.task_combo = QComboBox()
        self.task_combo.addItems(TASKS)
        self.task_combo.setToolTip("A checkpoint's task is its architecture's; a model file's "
                                   "is what its lab's plugin reads from it")
        self.task_combo.currentIndexChanged.connect(
            lambda _i: None if self._filling else self.sigTaskChanged.emit())
        form.addRow("Task", self.task_combo)
        self.id_edit, self.title_edit = QLineEdit(), QLineEdit()
        self.version_edit = QLineEdit("1.0.0")
        self.id_edit.setToolTip("The model's folder in your store: letters, digits, dashes")
        for name, edit in (("Model id", self.id_edit), ("Title", self.title_edit),
                           ("Version", self.version_edit)):
            edit.textEdited.connect(lambda _text: self.sigEdited.emit())
            form.addRow(name, edit)

    def fill(self, inspection: Any) -> None:
        """A newly read file's guesses (no signal: the caller prefills the rest)."""
        self._filling = True
        try:
            self.kind_label.setText(inspection.kind)
            if inspection.lab is not None:
                self.lab_combo.setCurrentIndex(max(self.lab_combo.findData(inspection.lab), 0))
            self._fill_archs(inspection.arch)
            self.self_contained = inspection.kind in importing.SELF_CONTAINED
            self.form.setRowVisible(self.arch_combo, not self.self_contained)
            self.task_combo.setEnabled(self.self_contained)
            self.task_combo.setCurrentText(inspection.task or self._arch_task())
            self.id_edit.setText(default_id(inspection.path))
            self.title_edit.setText(inspection.path.stem.replace("_", " "))
        finally:
            self._filling = False

    def lab(self) -> int:
        return self.lab_combo.currentData()

    def arch(self) -> str | None:
        """The chosen architecture (None for a self-contained file: it needs none)."""
        return None if self.self_contained else self.arch_combo.currentData()

    def task(self) -> str:
        return self.task_combo.currentText()

    def names(self) -> dict[str, str]:
        """id, title, version; ValueError with a sentence when one cannot name a folder."""
        model_id, version = self.id_edit.text().strip(), self.version_edit.text().strip()
        for what, value in (("model id", model_id), ("version", version)):
            problem = component_problem(value)
            if problem is not None:
                raise ValueError(f"The {what} {value!r} cannot name a folder: {problem}.")
        return {"id": model_id, "title": self.title_edit.text().strip() or model_id,
                "version": version}

    def _fill_archs(self, chosen: str | None) -> None:
        self.arch_combo.blockSignals(True)
        self.arch_combo.clear()
        for name, task in self.archs.get(self.lab(), []):
            self.arch_combo.addItem(f"{name}  ({task})", name)
        self.arch_combo.setCurrentIndex(max(self.arch_combo.findData(chosen), 0))
        self.arch_combo.blockSignals(False)

    def _arch_task(self) -> str:
        return dict(self.archs.get(self.lab(), [])).get(self.arch_combo.currentData()) or (
            importing.LAB_TASKS.get(self.lab(), TASKS[0]))

    def _on_lab_changed(self, _index: int) -> None:
        if self._filling:
            return
        self._fill_archs(None)
        if self.self_contained:  # the lab's plugin reads the model file as its task
            self.task_combo.setCurrentText(importing.LAB_TASKS.get(self.lab(), self.task()))
        self._on_arch_changed(self.arch_combo.currentIndex())

    def _on_arch_changed(self, _index: int) -> None:
        if self._filling:
            return
        if not self.self_contained:
            self.task_combo.setCurrentText(self._arch_task())  # a checkpoint's is its arch's
        self.sigChosen.emit()


class LabelsBox(QGroupBox):
    """The network's classes, in its output order."""

    sigEdited = Signal()

    def __init__(self) -> None:
        super().__init__("Labels (in the network's output order)")
        self.like: Manifest | None = None
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.classes_spin = QSpinBox()
        self.classes_spin.setRange(1, 1000)
        self.classes_spin.setToolTip("Read from the weights' shapes when the file tells it")
        self.classes_spin.valueChanged.connect(self.set_count)
        self.like_button = QPushButton("No similar model")
        self.like_button.clicked.connect(self.use_like)
        top.addWidget(QLabel("Classes"))
        top.addWidget(self.classes_spin)
        top.addStretch(1)
        top.addWidget(self.like_button)
        layout.addLayout(top)
        self.table = QTableWidget(0, 2)
        self.table.setObjectName("importLabels")
        self.table.setHorizontalHeaderLabels(["Name", "Colour (#rrggbb)"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMinimumHeight(130)
        self.table.itemChanged.connect(lambda _item: self._edited())
        layout.addWidget(self.table)
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet(f"color: {WARN};")
        layout.addWidget(self.warning)
        self.set_labels(placeholder_labels(2), PALETTE)

    def set_labels(self, names: Sequence[str], colours: Sequence[str]) -> None:
        self.table.blockSignals(True)
        self.table.setRowCount(len(names))
        for r, name in enumerate(names):
            self.table.setItem(r, 0, QTableWidgetItem(name))
            self.table.setItem(r, 1, QTableWidgetItem(colours[r % len(colours)]))
        self.table.blockSignals(False)
        self.classes_spin.blockSignals(True)
        self.classes_spin.setValue(len(names))
        self.classes_spin.blockSignals(False)
        self._mark()
        self.offer(self.like)

    def set_count(self, count: int) -> None:
        """`count` rows: the names typed so far kept, new rows 'class N'."""
        names, colours = self.labels()
        names += placeholder_labels(count)[len(names):]
        colours += [PALETTE[i % len(PALETTE)] for i in range(len(colours), count)]
        self.set_labels(names[:count], colours[:count])
        self.sigEdited.emit()

    def fix_count(self, count: int | None) -> None:
        """The weights say how many classes (None: they do not; the reader says)."""
        if count:
            self.set_count(count)
        self.classes_spin.setEnabled(not count)

    def labels(self) -> tuple[list[str], list[str]]:
        """(names, colours) as typed in the table."""
        cells = [[(self.table.item(r, c).text().strip() if self.table.item(r, c) else "")
                  for c in (0, 1)] for r in range(self.table.rowCount())]
        return [c[0] for c in cells], [c[1] for c in cells]

    def placeholders(self) -> list[int]:
        """Rows still named 'class N': the results would show those names."""
        return [r for r, name in enumerate(self.labels()[0]) if PLACEHOLDER.fullmatch(name)]

    def fields(self) -> list[dict[str, str]]:
        names, colours = self.labels()
        if any(not n for n in names):
            raise ValueError("Every label needs a name (empty rows in the labels table).")
        bad = [c for c in colours if not re.fullmatch(r"#[0-9a-fA-F]{6}", c)]
        if bad:
            raise ValueError(f"Colours are written #rrggbb; {bad[0]!r} is not one.")
        return [{"name": n, "colour": c} for n, c in zip(names, colours, strict=True)]

    def offer(self, like: Manifest | None) -> None:
        """The button that copies `like`'s labels, usable when it has as many classes."""
        self.like = like
        fits = like is not None and len(like.labels) == self.table.rowCount()
        self.like_button.setEnabled(fits)
        self.like_button.setText(f"Use the labels of {like.id}" if like else "No similar model")
        self.like_button.setToolTip(", ".join(like.label_names) if like else "")

    def use_like(self) -> None:
        if self.like is not None:
            self.set_labels(self.like.label_names, [lab.colour for lab in self.like.labels])
            self.sigEdited.emit()

    def _edited(self) -> None:
        self._mark()
        self.sigEdited.emit()

    def _mark(self) -> None:
        flagged = set(self.placeholders())
        self.table.blockSignals(True)
        for r in range(self.table.rowCount()):
            name, colour = self.table.item(r, 0), self.table.item(r, 1)
            name.setBackground(QBrush(QColor(WARN)) if r in flagged else QBrush())
            swatch = QColor(colour.text())
            ok = QColor.isValidColorName(colour.text())
            colour.setBackground(QBrush(swatch) if ok else QBrush())
            colour.setForeground(QBrush(QColor("white" if ok and swatch.lightness() < 128
                                               else "black")))
        self.table.blockSignals(False)
        self.warning.setText(
            f"{len(flagged)} label(s) still named 'class N': name each class as the network "
            "was trained, or the results will show these names." if flagged else "")


class InputSpecBox(QGroupBox):
    """How a slice becomes the network's input."""

    def __init__(self) -> None:
        super().__init__("Input (how a slice becomes the network's input)")
        form = QFormLayout(self)
        self.like_label = QLabel()
        self.like_label.setWordWrap(True)
        form.addRow(self.like_label)
        self.rows_spin, self.cols_spin = _spin(1, 8192, 224), _spin(1, 8192, 224)
        size = QHBoxLayout()
        size.addWidget(self.rows_spin)
        size.addWidget(QLabel("\u00d7"))
        size.addWidget(self.cols_spin)
        form.addRow("Size (rows \u00d7 columns)", size)
        self.channels_spin = _spin(1, 1024, 1)
        form.addRow("Channels", self.channels_spin)
        self.context_combo = QComboBox()
        self.context_combo.setEditable(True)
        self.context_combo.addItems([*CONTEXTS, "stack:5", "volume:32"])
        self.context_combo.setToolTip("single, prev-current-next, stack:N (N slices around "
                                      "the current one) or volume:N (the whole series)")
        form.addRow("Slice context", self.context_combo)
        self.centre_spin, self.width_spin = _double(-1e5, 1e5, 40.0), _double(1e-3, 1e5, 400.0)
        window = QHBoxLayout()
        for text, widget in (("centre", self.centre_spin), ("width", self.width_spin)):
            window.addWidget(QLabel(text))
            window.addWidget(widget, 1)
        form.addRow("Window", window)
        self.minmax_check = QCheckBox("Min\u2013max of each image instead of a window")
        self.minmax_check.toggled.connect(self.centre_spin.setDisabled)
        self.minmax_check.toggled.connect(self.width_spin.setDisabled)
        form.addRow("", self.minmax_check)
        self.mean_edit, self.std_edit = QLineEdit("0.0"), QLineEdit("1.0")
        self.mean_edit.setToolTip("After windowing to 0..1: one value, or one per channel")
        form.addRow("Mean", self.mean_edit)
        form.addRow("Std", self.std_edit)
        self.extras_edit, self.modalities_edit = QLineEdit(), QLineEdit()
        self.extras_edit.setPlaceholderText("none; or age, sex")
        self.modalities_edit.setPlaceholderText("any; or e.g. CT, MR")
        form.addRow("Extra inputs", self.extras_edit)
        form.addRow("Modalities", self.modalities_edit)

    def set_like(self, like: Manifest | None, lab: int, task: str) -> None:
        """Fill from `like` (an installed model of this lab and task) and say so."""
        if like is None:
            self.like_label.setText(f"No lab {lab} {task} model is installed: check every "
                                    "field below against how the network was trained.")
            return
        self.like_label.setText(f"Prefilled from {like.title} ({like.id} {like.version}); "
                                "change what your training did differently.")
        spec = like.input
        self.rows_spin.setValue(spec.size[0])
        self.cols_spin.setValue(spec.size[1])
        self.channels_spin.setValue(spec.channels)
        self.context_combo.setCurrentText(spec.context)
        self.minmax_check.setChecked(spec.window is None)
        if spec.window is not None:
            self.centre_spin.setValue(spec.window[0])
            self.width_spin.setValue(spec.window[1])
        self.mean_edit.setText(", ".join(f"{v:g}" for v in spec.mean))
        self.std_edit.setText(", ".join(f"{v:g}" for v in spec.std))
        self.extras_edit.setText(", ".join(spec.extras))
        self.modalities_edit.setText(", ".join(spec.modalities))

    def follow_file(self, inspection: Any) -> None:
        """What the file fixes wins over the borrowed spec: a graph's fixed input size and
        channels, a checkpoint's input channels (or a series model's slice count)."""
        dims = next(iter(inspection.inputs.values()), [])
        if len(dims) == 4 and all(isinstance(d, int) for d in dims[1:]):
            self.channels_spin.setValue(dims[1])
            self.rows_spin.setValue(dims[2])
            self.cols_spin.setValue(dims[3])
        build = inspection.build
        channels = build.get("in_channels", build.get("slices"))
        if isinstance(channels, int):
            self.channels_spin.setValue(channels)
        if isinstance(build.get("slices"), int) and "in_channels" not in build:
            kind = self.context_combo.currentText().partition(":")[0]
            self.context_combo.setCurrentText(
                f"{kind if kind in ('volume', 'stack') else 'volume'}:{build['slices']}")

    def spec(self) -> dict[str, Any]:
        """The manifest's `input`; ValueError with a sentence."""
        return {"size": [self.rows_spin.value(), self.cols_spin.value()],
                "channels": self.channels_spin.value(),
                "context": self.context_combo.currentText().strip(),
                "window": None if self.minmax_check.isChecked() else
                [self.centre_spin.value(), self.width_spin.value()],
                "mean": numbers(self.mean_edit.text(), "mean"),
                "std": numbers(self.std_edit.text(), "std"),
                "extras": words(self.extras_edit.text()),
                "modalities": words(self.modalities_edit.text())}


def _spin(low: int, high: int, value: int) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setValue(value)
    return spin


def _double(low: float, high: float, value: float) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setDecimals(3)
    spin.setValue(value)
    return spin
