"""Study browser: patient -> study -> series tree with thumbnails, and the unreadable files.

The tree is built at once from a `ScanResult` (headers only); thumbnails arrive later from a
worker that reads each series' middle slice, so a large folder is browsable immediately.
A file that could not be read stays visible under "Problems (N)" with its reason: the user must
see what was skipped and why.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import QLineEdit, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from medviewer.core.dicom.model import FileProblem, Patient, ScanResult, Series, Study
from medviewer.ui.common.workers import TaskContext, WorkerPool

log = logging.getLogger(__name__)

THUMB_SIZE = 64  # generated and cached at this size
THUMB_ICON = 40  # shown at this size, so the tree stays compact
NAME_COLUMN_WIDTH = 210
COLUMNS = ["Patient / Study / Series", "Mod.", "No.", "Images", "Date", "ID / Accession"]
COL_NAME, COL_MODALITY, COL_NUMBER, COL_IMAGES, COL_DATE, COL_ID = range(len(COLUMNS))
RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
KIND_ROLE = Qt.ItemDataRole.UserRole
OBJECT_ROLE = Qt.ItemDataRole.UserRole + 1


def format_date(value: str) -> str:
    """YYYYMMDD -> YYYY-MM-DD; anything else unchanged (dates in headers are often odd)."""
    v = (value or "").strip()
    if len(v) == 8 and v.isdigit():
        return f"{v[:4]}-{v[4:6]}-{v[6:]}"
    return v


def patient_label(p: Patient) -> str:
    name = str(p.name or "").replace("^", " ").strip() or "(no name)"
    return f"{name} ({p.sex})" if p.sex else name


def series_label(s: Series) -> str:
    label = s.description or "(no description)"
    if s.stack_count > 1:
        label += f"  [stack {s.stack_index + 1}/{s.stack_count}]"
    return label


def thumbnail_image(slice_2d: np.ndarray) -> QImage:
    """A 64x64 grey or colour thumbnail of one slice in modality units (any thread)."""
    from medviewer.core import display

    frame = np.asarray(slice_2d)
    colour = frame.ndim == 3 and frame.shape[-1] == 3
    if colour:
        grey = np.ascontiguousarray(frame.astype(np.uint8))
    else:
        grey = np.ascontiguousarray(_to_grey(display, frame))
    h, w = grey.shape[:2]
    fmt = QImage.Format.Format_RGB888 if colour else QImage.Format.Format_Grayscale8
    image = QImage(grey.data, w, h, grey.strides[0], fmt).copy()
    return image.scaled(
        THUMB_SIZE,
        THUMB_SIZE,
        Qt.AspectRatioMode.KeepAspectRatio,
        Qt.TransformationMode.SmoothTransformation,
    )


def _to_grey(display: Any, frame: np.ndarray) -> np.ndarray:
    """The core's default window and mapping; a plain 1-99 percentile ramp if unavailable."""
    try:
        return display.to_display(frame, display.default_window(frame, []))
    except (AttributeError, NotImplementedError, TypeError, ValueError):
        lo, hi = (float(v) for v in np.percentile(frame, [1, 99]))
        scaled = (frame.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1.0))
        return np.clip(scaled, 0, 255).astype(np.uint8)


def read_thumbnails(ctx: TaskContext, series_list: list[Series]) -> None:
    """Worker: middle slice of each series -> (key, QImage) partials; errors skip the series."""
    from medviewer.core.dicom import volume

    for done, series in enumerate(series_list):
        if ctx.is_cancelled():
            return
        try:
            loader = volume.SeriesLoader(series)
            middle = loader.read_slice(loader.slice_count // 2)
            ctx.partial((series.key, thumbnail_image(middle)))
        except Exception as exc:  # a bad series gets no thumbnail, the load will say why
            log.debug("no thumbnail for %s: %s", series.key, exc)
        ctx.progress(done + 1, len(series_list))


class StudyBrowser(QWidget):
    """The left dock: what is in the opened folder, and what could not be read."""

    sigSeriesActivated = Signal(object)  # Series

    def __init__(self, pool: WorkerPool | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._pool = pool or WorkerPool(self, max_threads=1)
        self._thumbs: dict[str, QIcon] = {}
        self._series_items: dict[str, QTreeWidgetItem] = {}
        self._thumb_worker = None
        self.scan_result: ScanResult | None = None
        self._build()

    def _build(self) -> None:
        self.filter_edit = QLineEdit(self)
        self.filter_edit.setPlaceholderText("Filter: patient name or description")
        self.filter_edit.setClearButtonEnabled(True)
        self._filter_timer = QTimer(self, singleShot=True, interval=150)
        self._filter_timer.timeout.connect(self._apply_filter)
        self.filter_edit.textChanged.connect(lambda _t: self._filter_timer.start())
        self.tree = QTreeWidget(self)
        self.tree.setObjectName("studyTree")
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setIconSize(QSize(THUMB_ICON, THUMB_ICON))
        self.tree.setUniformRowHeights(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.itemClicked.connect(self._on_item_activated)
        self.tree.itemActivated.connect(self._on_item_activated)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(2)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.tree)

    # -- filling ---------------------------------------------------------------------------

    def set_scan(self, result: ScanResult) -> None:
        """Show a new scan; thumbnails follow from a worker."""
        self.scan_result = result
        self.tree.clear()
        self._series_items.clear()
        for patient in result.patients:
            self.tree.addTopLevelItem(self._patient_item(patient))
        if result.problems:
            self.tree.addTopLevelItem(self._problems_item(result.problems))
        self.tree.expandToDepth(1)
        for col in range(1, len(COLUMNS)):
            self.tree.resizeColumnToContents(col)
        self.tree.setColumnWidth(COL_NAME, NAME_COLUMN_WIDTH)
        self._apply_filter()
        self._start_thumbnails(result.all_series())

    def _patient_item(self, patient: Patient) -> QTreeWidgetItem:
        item = _item("patient", patient, patient_label(patient))
        item.setText(COL_DATE, format_date(patient.birth_date))
        item.setText(COL_ID, patient.patient_id)
        item.setToolTip(COL_NAME, f"{patient.name}\nID {patient.patient_id}\n"
                        f"born {format_date(patient.birth_date)}  sex {patient.sex or '-'}")
        for study in patient.studies:
            item.addChild(self._study_item(study))
        return item

    def _study_item(self, study: Study) -> QTreeWidgetItem:
        item = _item("study", study, study.description or "(no study description)")
        item.setText(COL_DATE, format_date(study.date))
        item.setText(COL_ID, study.accession_number)
        item.setText(COL_IMAGES, str(sum(s.image_count for s in study.series)))
        item.setTextAlignment(COL_IMAGES, RIGHT)
        for series in study.series:
            item.addChild(self._series_item(series))
        return item

    def _series_item(self, series: Series) -> QTreeWidgetItem:
        item = _item("series", series, series_label(series))
        item.setText(COL_MODALITY, series.modality)
        item.setText(COL_NUMBER, "" if series.series_number is None else str(series.series_number))
        item.setText(COL_IMAGES, str(series.image_count))
        item.setText(COL_DATE, format_date(series.date))
        item.setToolTip(COL_NAME, f"{series_label(series)}\n{series.series_instance_uid}")
        item.setTextAlignment(COL_IMAGES, RIGHT)
        if series.key in self._thumbs:
            item.setIcon(COL_NAME, self._thumbs[series.key])
        self._series_items[series.key] = item
        return item

    def _problems_item(self, problems: list[FileProblem]) -> QTreeWidgetItem:
        root = _item("problems", None, f"Problems ({len(problems)})")
        root.setForeground(COL_NAME, Qt.GlobalColor.yellow)
        for problem in problems:
            name = problem.path.replace("\\", "/").rsplit("/", 1)[-1]
            child = _item("problem", problem, f"{name}: {problem.reason}")
            child.setToolTip(COL_NAME, f"{problem.path}\n{problem.reason}")
            child.setFirstColumnSpanned(True)
            root.addChild(child)
        return root

    # -- thumbnails ------------------------------------------------------------------------

    def _start_thumbnails(self, series_list: list[Series]) -> None:
        if self._thumb_worker is not None:
            self._thumb_worker.cancel()
        todo = [s for s in series_list if s.key not in self._thumbs]
        if todo:
            self._thumb_worker = self._pool.start(
                read_thumbnails, todo, on_partial=self._on_thumbnail
            )

    def _on_thumbnail(self, key_and_image: tuple[str, QImage]) -> None:
        key, image = key_and_image
        icon = QIcon(QPixmap.fromImage(image))
        self._thumbs[key] = icon
        item = self._series_items.get(key)
        if item is not None:
            item.setIcon(COL_NAME, icon)

    def has_thumbnail(self, key: str) -> bool:
        return key in self._thumbs

    # -- selection and filter --------------------------------------------------------------

    def _on_item_activated(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        if item.data(0, KIND_ROLE) == "series":
            self.sigSeriesActivated.emit(item.data(0, OBJECT_ROLE))

    def select_series(self, key: str) -> bool:
        """Select and activate a series by key, as a click would."""
        item = self._series_items.get(key)
        if item is None:
            return False
        self.tree.setCurrentItem(item)
        self._on_item_activated(item)
        return True

    def series_items(self) -> dict[str, QTreeWidgetItem]:
        return dict(self._series_items)

    def _apply_filter(self) -> None:
        text = self.filter_edit.text().strip().lower()
        for i in range(self.tree.topLevelItemCount()):
            top = self.tree.topLevelItem(i)
            if top.data(0, KIND_ROLE) == "patient":
                _filter_patient(top, text)


def _filter_patient(item: QTreeWidgetItem, text: str) -> None:
    """Hide what matches neither the patient name nor a study / series description."""
    patient_match = not text or text in item.text(COL_NAME).lower()
    any_visible = False
    for j in range(item.childCount()):
        study = item.child(j)
        study_match = patient_match or text in study.text(COL_NAME).lower()
        study_visible = False
        for k in range(study.childCount()):
            series = study.child(k)
            visible = study_match or text in series.text(COL_NAME).lower()
            series.setHidden(not visible)
            study_visible |= visible
        study.setHidden(not study_visible)
        any_visible |= study_visible
    item.setHidden(not (any_visible or patient_match))


def _item(kind: str, obj: Any, text: str) -> QTreeWidgetItem:
    item = QTreeWidgetItem([text])
    item.setData(0, KIND_ROLE, kind)
    item.setData(0, OBJECT_ROLE, obj)
    return item

