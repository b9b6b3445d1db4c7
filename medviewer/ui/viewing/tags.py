"""Tag panel: every element of the instance on screen, sequences expandable, searchable.

The header is read with pydicom (no pixel data) in a worker and turned into plain `TagRow`
trees there; the GUI thread only builds the items. The search box matches a keyword, a name,
a tag number in any spelling ("0010,0010", "00100010", "(0010,0010)") or a value, and keeps the
parents of a matching element visible so a hit inside a sequence is still found in context.

Readers paste UIDs, dates and descriptions into reports and tickets: a right click offers
"Copy value" / "Copy tag" / "Copy row", and Ctrl+C copies the selected rows as tab-separated
text (tag, name, VR, full value: never the elided one on screen).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QGuiApplication,
    QKeyEvent,
    QKeySequence,
    QStandardItem,
    QStandardItemModel,
)
from PySide6.QtWidgets import QLabel, QLineEdit, QMenu, QTreeView, QVBoxLayout, QWidget

from medviewer.ui.common.workers import TaskContext, WorkerPool
from medviewer.ui.document.study import StudyDocument

log = logging.getLogger(__name__)

COLUMNS = ["Tag", "Name", "VR", "Value"]
MAX_VALUE_CHARS = 96  # longer values are elided; the tooltip holds more
MAX_TOOLTIP_CHARS = 2000
MAX_ROWS = 20_000  # an enhanced multi-frame header can hold 100k+ elements
BINARY_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}
NAME_COLUMN_WIDTH = 170
HAYSTACK_ROLE = Qt.ItemDataRole.UserRole + 10
FULL_VALUE_ROLE = Qt.ItemDataRole.UserRole + 11  # on the Value cell: the value, not elided
_TAG_CHARS = re.compile(r"[(),\s]")


@dataclass
class TagRow:
    """One data element, ready to display; `children` are sequence items."""

    tag: str  # "(gggg,eeee)", or "" for a sequence item row
    name: str
    vr: str
    value: str
    keyword: str = ""
    full_value: str = ""
    children: list[TagRow] = field(default_factory=list)

    @property
    def haystack(self) -> str:
        tag = _TAG_CHARS.sub("", self.tag)
        return f"{tag}\n{self.keyword}\n{self.name}\n{self.full_value or self.value}".lower()


def format_value(elem: Any) -> str:
    """The value as a radiologist reads it: binary summarised, multi-values joined."""
    value = elem.value
    if elem.VR == "SQ":
        return f"{len(value)} item(s)"
    if value is None or value == "":
        return ""
    if isinstance(value, bytes | bytearray) or elem.VR in BINARY_VRS:
        size = len(value) if hasattr(value, "__len__") else 0
        head = bytes(value[:8]).hex(" ") if isinstance(value, bytes | bytearray) else ""
        return f"<{size} bytes> {head}{' ...' if size > 8 else ''}".strip()
    if elem.VR == "UI" and getattr(value, "name", str(value)) != str(value):
        return f"{value} ({value.name})"  # e.g. "1.2.840.10008.5.1.4.1.1.2 (CT Image Storage)"
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def elide(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    text = text.replace("\r", " ").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def element_row(elem: Any, budget: list[int]) -> TagRow:
    """A TagRow for one element; `budget` is a shared row counter that caps huge headers."""
    budget[0] -= 1
    name = elem.name
    creator = getattr(elem, "private_creator", None) if elem.tag.is_private else None
    if creator:
        name = f"{name} \u2014 {creator}"
    try:
        full = format_value(elem)
    except Exception as exc:  # a malformed value must not hide the rest of the header
        full = f"<unreadable: {exc}>"
    row = TagRow(
        tag=f"({elem.tag.group:04X},{elem.tag.element:04X})",
        name=name,
        vr=str(elem.VR),
        value=elide(full),
        keyword=elem.keyword or "",
        full_value=full[:MAX_TOOLTIP_CHARS],
    )
    if elem.VR == "SQ":
        row.children = [_item_row(i, item, budget) for i, item in enumerate(elem.value)]
    return row


def _item_row(index: int, item: Any, budget: list[int]) -> TagRow:
    row = TagRow(tag="", name=f"Item {index + 1}", vr="", value=f"{len(item)} element(s)")
    budget[0] -= 1
    row.children = dataset_rows(item, budget)
    return row


def dataset_rows(ds: Any, budget: list[int] | None = None) -> list[TagRow]:
    """TagRows for every element of a dataset (sequences recursively), up to MAX_ROWS."""
    budget = budget if budget is not None else [MAX_ROWS]
    rows: list[TagRow] = []
    for tag in list(ds.keys()):
        if budget[0] <= 0:
            rows.append(TagRow("", "\u2026 more elements not shown", "", ""))
            break
        try:
            rows.append(element_row(ds[tag], budget))
        except Exception as exc:
            rows.append(TagRow(f"({tag.group:04X},{tag.element:04X})", "?", "", f"<{exc}>"))
    return rows


def read_tag_rows(ctx: TaskContext | None, path: str) -> list[TagRow]:
    """Worker: the file's meta header and dataset, without pixel data."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    budget = [MAX_ROWS]
    meta = dataset_rows(ds.file_meta, budget) if getattr(ds, "file_meta", None) else []
    return meta + dataset_rows(ds, budget)


class TagFilterProxy(QSortFilterProxyModel):
    """Keeps rows whose tag, keyword, name or value contains the search text, plus parents."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setRecursiveFilteringEnabled(True)
        self._needle = ""
        self._tag_needle = ""

    def set_search(self, text: str) -> None:
        self.beginFilterChange()
        self._needle = text.strip().lower()
        tag = _TAG_CHARS.sub("", self._needle)
        self._tag_needle = tag if re.fullmatch(r"[0-9a-f]{4,8}", tag) else ""
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    @property
    def searching(self) -> bool:
        return bool(self._needle)

    def filterAcceptsRow(  # noqa: N802 - Qt override
        self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex
    ) -> bool:
        if not self._needle:
            return True
        index = self.sourceModel().index(source_row, 0, source_parent)
        hay = index.data(HAYSTACK_ROLE) or ""
        return self._needle in hay or bool(self._tag_needle and self._tag_needle in hay)


class TagTreeView(QTreeView):
    """The tag tree; Ctrl+C copies the selected rows (Qt's default copies one cell)."""

    sigCopyRequested = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        if event.matches(QKeySequence.StandardKey.Copy):
            self.sigCopyRequested.emit()
            event.accept()
        else:
            super().keyPressEvent(event)


def cell_text(index: QModelIndex, column: int) -> str:
    """The text of one column of the row of `index`; the Value column in full."""
    cell = index.siblingAtColumn(column)
    if column == COLUMNS.index("Value"):
        full = cell.data(FULL_VALUE_ROLE)
        if full:
            return str(full)
    return str(cell.data() or "")


def row_text(index: QModelIndex) -> str:
    """One row as tab-separated Tag, Name, VR, Value (pastes into a spreadsheet's columns)."""
    return "\t".join(cell_text(index, c) for c in range(len(COLUMNS)))


def _tree_order(index: QModelIndex) -> list[int]:
    """Row numbers from the root: sorting by them lists rows as the tree shows them."""
    path = []
    while index.isValid():
        path.insert(0, index.row())
        index = index.parent()
    return path


class TagPanel(QWidget):
    """The right dock; follows the document's current slice, or shows a file on request.

    `path` is the file asked for; `shown_path` the one whose header is on screen (the old
    header stays until the new one is read, so scrolling does not flicker).
    """

    sigHeaderShown = Signal(str)  # path

    def __init__(self, pool: WorkerPool | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._pool = pool or WorkerPool(self, max_threads=1)
        self._path: str | None = None
        self.shown_path: str | None = None
        self._worker = None
        self._document: Any = None
        self._build()

    def _build(self) -> None:
        self.search_edit = QLineEdit(self)
        self.search_edit.setPlaceholderText("Search tag, keyword or value")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.textChanged.connect(self._on_search)
        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(COLUMNS)
        self.proxy = TagFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self.view = TagTreeView(self)
        self.view.setObjectName("tagTree")
        self.view.setModel(self.proxy)
        self.view.setUniformRowHeights(True)
        self.view.setAlternatingRowColors(True)
        self.view.setEditTriggers(QTreeView.EditTrigger.NoEditTriggers)
        self.view.setSelectionBehavior(QTreeView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QTreeView.SelectionMode.ExtendedSelection)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._show_context_menu)
        self.view.sigCopyRequested.connect(self.copy_selected_rows)
        self.context_menu: QMenu | None = None  # the last one shown, for tests
        self.source_label = QLabel("No image", self)
        self.source_label.setObjectName("tagSource")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(2)
        layout.addWidget(self.search_edit)
        layout.addWidget(self.source_label)
        layout.addWidget(self.view)
        self._follow_timer = QTimer(self, singleShot=True, interval=120)
        self._follow_timer.timeout.connect(self._follow_document)

    # -- following the document ------------------------------------------------------------

    def set_document(self, document: StudyDocument) -> None:
        """Follow the document's slice and time point (debounced: scrolling must stay smooth)."""
        self._document = document
        for signal in (document.sigSliceChanged, document.sigTimeChanged,
                       document.sigVolumeChanged):
            signal.connect(lambda *_a: self._follow_timer.start())

    def _follow_document(self) -> None:
        source = self._document.current_source()
        if source is not None and source.path:
            self.show_file(source.path)

    # -- showing a file --------------------------------------------------------------------

    @property
    def path(self) -> str | None:
        return self._path

    def show_file(self, path: str | Path) -> None:
        """Read the file's header in a worker and show it; the same file is not re-read."""
        path = str(path)
        if path == self._path:
            return
        self._path = path
        self.source_label.setText(Path(path).name)
        self.source_label.setToolTip(path)
        if self._worker is not None:
            self._worker.cancel()
        self._worker = self._pool.start(
            read_tag_rows,
            path,
            on_result=lambda rows, p=path: self._on_rows(p, rows),
            on_error=lambda exc, p=path: self._on_error(p, exc),
        )

    def set_rows(self, rows: list[TagRow]) -> None:
        """Replace the tree (GUI thread)."""
        self.model.removeRows(0, self.model.rowCount())
        root = self.model.invisibleRootItem()
        for row in rows:
            _append_row(root, row)
        self.view.resizeColumnToContents(0)
        self.view.resizeColumnToContents(2)
        self.view.setColumnWidth(1, NAME_COLUMN_WIDTH)
        if self.proxy.searching:
            self.view.expandAll()

    def clear(self) -> None:
        self._path = self.shown_path = None
        self.source_label.setText("No image")
        self.model.removeRows(0, self.model.rowCount())

    def _on_rows(self, path: str, rows: list[TagRow]) -> None:
        if path == self._path:
            self.set_rows(rows)
            self.shown_path = path
            self.sigHeaderShown.emit(path)

    def _on_error(self, path: str, exc: BaseException) -> None:
        error = TagRow("", "Could not read header", "", str(exc), full_value=str(exc))
        self._on_rows(path, [error])

    def _on_search(self, text: str) -> None:
        self.proxy.set_search(text)
        if text.strip():
            self.view.expandAll()

    # -- copying -----------------------------------------------------------------------------

    def _show_context_menu(self, pos: Any) -> None:
        index = self.view.indexAt(pos)
        if not index.isValid():
            return
        self.context_menu = self.build_context_menu(index)
        self.context_menu.popup(self.view.viewport().mapToGlobal(pos))

    def build_context_menu(self, index: QModelIndex) -> QMenu:
        """Copy value / tag / row of the row under the cursor (not of the whole selection)."""
        menu = QMenu(self)
        tag_column, value_column = COLUMNS.index("Tag"), COLUMNS.index("Value")
        choices = (("Copy value", lambda: cell_text(index, value_column)),
                   ("Copy tag", lambda: cell_text(index, tag_column)),
                   ("Copy row", lambda: row_text(index)))
        for text, make in choices:
            menu.addAction(text, lambda make=make: _to_clipboard(make()))
        return menu

    def copy_selected_rows(self) -> str:
        """Ctrl+C: the selected rows, in tree order, one tab-separated line each."""
        rows = sorted(self.view.selectionModel().selectedRows(0), key=_tree_order)
        if not rows and self.view.currentIndex().isValid():
            rows = [self.view.currentIndex().siblingAtColumn(0)]
        text = "\n".join(row_text(index) for index in rows)
        if text:
            _to_clipboard(text)
        return text

    # -- queries for tests and other panels ------------------------------------------------

    def find_rows(self, keyword: str) -> list[QModelIndex]:
        """Visible (filtered) column-0 indexes whose keyword equals `keyword`, at any depth."""
        hits: list[QModelIndex] = []
        stack = [QModelIndex()]
        while stack:
            parent = stack.pop()
            for r in range(self.proxy.rowCount(parent)):
                index = self.proxy.index(r, 0, parent)
                if index.data(Qt.ItemDataRole.UserRole) == keyword:
                    hits.append(index)
                stack.append(index)
        return hits


def _append_row(parent: QStandardItem, row: TagRow) -> None:
    cells = [QStandardItem(row.tag), QStandardItem(row.name), QStandardItem(row.vr),
             QStandardItem(row.value)]
    cells[0].setData(row.haystack, HAYSTACK_ROLE)
    cells[0].setData(row.keyword, Qt.ItemDataRole.UserRole)
    cells[3].setData(row.full_value or row.value, FULL_VALUE_ROLE)
    if row.full_value and row.full_value != row.value:
        cells[3].setToolTip(row.full_value)
    for child in row.children:
        _append_row(cells[0], child)
    parent.appendRow(cells)


def _to_clipboard(text: str) -> None:
    QGuiApplication.clipboard().setText(text)
