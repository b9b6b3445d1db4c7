"""The main window: browser on the left, images in the middle, tags on the right.

It only wires widgets to the core: `scan` fills the browser, choosing a series shows its middle
slice at once (a preview) and decodes the volume in a worker, which a newer choice cancels.
The last few volumes stay in memory (`VolumeCache`), so going back to a series is instant.
Every slot is guarded: an unexpected exception is logged and shown, never a crash, and a
`DicomError` reaches the status bar with the sentence the core wrote for the reader.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QWidget,
)

from medviewer.core.dicom.errors import DicomError
from medviewer.core.dicom.model import ScanResult, Series
from medviewer.ui.ai.controller import AiController
from medviewer.ui.annotate.controller import AnnotateController
from medviewer.ui.common.guard import guarded
from medviewer.ui.common.host import DockPlace
from medviewer.ui.common.workers import (
    Preview,
    TaskRunner,
    WorkerPool,
    demo_task,
    load_series_task,
    scan_task,
)
from medviewer.ui.dataset.feature import DatasetFeature
from medviewer.ui.document.reading_aids import IMAGE_ORDERS
from medviewer.ui.document.study import StudyDocument
from medviewer.ui.pacs.feature import PacsFeature
from medviewer.ui.shell.recent import RecentMenu, describe_paths
from medviewer.ui.training.menu import ModelMenu
from medviewer.ui.viewing.browser import StudyBrowser
from medviewer.ui.viewing.export import (
    EXPORT_FOLDER_KEY,
    export_file_name,
    export_folder,
    save_png_atomic,
    with_png_suffix,
)
from medviewer.ui.viewing.measurements_panel import MeasurementsPanel
from medviewer.ui.viewing.tags import TagPanel
from medviewer.ui.viewing.viewer import ViewerPanel
from medviewer.ui.viewing.volume_cache import VolumeCache

log = logging.getLogger(__name__)

LAST_FOLDER_KEY = "files/lastFolder"
GEOMETRY_KEY, STATE_KEY = "window/geometry", "window/state"
IMAGE_ORDER_KEY = "view/imageOrder"  # head first (the PACS default) or feet first
PathLike = str | Path


class MainWindow(QMainWindow):
    """MedViewer's window. Tests drive it through `open_path` and wait on its signals."""

    scan_finished = Signal(object)  # ScanResult
    scan_failed = Signal(str)
    volume_loaded = Signal(object)  # Volume
    load_failed = Signal(str)

    def __init__(
        self,
        settings: QSettings | None = None,
        *,
        scan_cache: bool | str | Path = True,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("MedViewer")
        self.setObjectName("MainWindow")
        self.setAcceptDrops(True)
        self.settings = settings if settings is not None else QSettings()
        self.scan_cache = scan_cache
        self.pool = WorkerPool(self)
        self.scan_result: ScanResult | None = None
        self.current_series: Series | None = None
        self.volume_cache = VolumeCache()
        self._shown_key = ""  # series key of the volume on screen
        self.last_error = ""
        self._message_box: QMessageBox | None = None
        self._build_central()
        self._build_docks()
        self._build_status_bar()
        self._build_menus()
        self._build_features()
        self.resize(1400, 900)
        self._default_state = self.saveState()
        self._restore_settings()

    # ----------------------------------------------------------------- construction
    def _build_central(self) -> None:
        self.document = StudyDocument(self)
        self.viewer = ViewerPanel(self.document)
        self.viewer.sigStatusMessage.connect(self.set_status)
        self.setCentralWidget(self.viewer)

    def _build_features(self) -> None:
        """The features, each given the document, its views and this window as its `Host`;
        what one feature tells another goes through here."""
        # AI menu, results dock, provider label; Model menu; Annotate menu, dock and tools
        self.ai = AiController(self, self.document, self.viewer)
        self.model_menu = ModelMenu(self, document=self.document,
                                   chosen_model=self.ai.model_for_series)
        self.model_menu.sigModelsChanged.connect(self.ai.models_changed)
        self.annotate = AnnotateController(self, self.document, self.viewer)
        self.pacs = PacsFeature(self, self.document)  # File, Annotate and AI menu items
        self.file_menu.insertActions(self.export_action, [self.pacs.servers_action,
                                                          self.pacs.query_action])
        self.file_menu.insertSeparator(self.export_action)
        self.dataset = DatasetFeature(self, self.document)  # File ▸ Export Dataset…
        after_png = self.file_menu.actions()
        after_png = after_png[after_png.index(self.export_action) + 1]
        self.file_menu.insertAction(after_png, self.dataset.export_action)
        self.annotate.menu.addAction(self.pacs.send_annotations_action)
        self.ai.menu.addAction(self.pacs.send_ai_action)
        self.ai.menu.aboutToShow.connect(  # again after the AI menu rebuilt its model list
            lambda: self.ai.menu.addAction(self.pacs.send_ai_action))

    def _build_docks(self) -> None:
        self.browser = StudyBrowser(self.pool)
        self.browser.sigSeriesActivated.connect(self._on_series_chosen)
        self.browser_dock = self._dock("Studies", "browserDock", self.browser)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.browser_dock)
        self.tags = TagPanel(self.pool)
        self.tags.set_document(self.document)
        self.tags_dock = self._dock("DICOM Tags", "tagsDock", self.tags)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.tags_dock)
        self.measurements = MeasurementsPanel(self.document)
        self.measurements.sigStatusMessage.connect(self.set_status)
        self.measurements_dock = self._dock("Measurements", "measurementsDock",
                                            self.measurements)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.measurements_dock)
        self.tabifyDockWidget(self.tags_dock, self.measurements_dock)  # a tab beside the tags
        self.tags_dock.raise_()
        self._sized = False  # the docks get their default widths when first shown

    def _default_dock_widths(self) -> None:
        """Room for the browser's names and the AI and annotation tables: Qt lays docks out
        only once the window has its size, so this runs on show and on View ▸ Reset Layout."""
        self.resizeDocks([self.browser_dock, self.tags_dock], [280, 380],
                         Qt.Orientation.Horizontal)

    def _dock(self, title: str, name: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)  # saveState needs names
        dock.setWidget(widget)
        return dock

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.status_label = QLabel("Ready")
        self.status_label.setObjectName("statusMessage")
        bar.addWidget(self.status_label, 1)
        self.tool_label = QLabel()  # the one place that always says which tool has the mouse
        self.tool_label.setObjectName("activeTool")
        self.tool_label.setToolTip("The mouse tool of every view: choose another in the "
                                   "toolbar or the Annotate menu and dock")
        bar.addPermanentWidget(self.tool_label)
        self.document.sigToolChanged.connect(self._show_tool)
        self._show_tool()
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setMaximumHeight(16)
        self.progress_bar.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelButton")
        self.cancel_button.clicked.connect(self.cancel_tasks)
        bar.addPermanentWidget(self.progress_bar)
        bar.addPermanentWidget(self.cancel_button)
        self.tasks = TaskRunner(self.pool, (self.progress_bar, self.cancel_button),
                                self.progress_bar, on_cancelled=self._on_cancelled)

    def _show_tool(self, *_args: object) -> None:
        self.tool_label.setText(f"Tool: {self.viewer.tools.label()}")

    def _build_menus(self) -> None:
        menu = self.file_menu = self.menuBar().addMenu("&File")
        self._add(menu, "Open &Folder\u2026", self.open_folder_dialog, "Ctrl+O")
        self._add(menu, "Open F&iles\u2026", self.open_files_dialog, "Ctrl+Shift+O")
        self._add(menu, "Open &DICOMDIR\u2026", self.open_dicomdir_dialog)
        self.recent_menu = RecentMenu(self.settings, self)
        self.recent_menu.sigOpenRequested.connect(self._open_recent)
        menu.addMenu(self.recent_menu)
        self._add(menu, "Open De&mo Study", self.open_demo)
        menu.addSeparator()
        self.export_action = self._add(menu, "&Export View as PNG\u2026",
                                       self.export_view_dialog, "Ctrl+E")
        menu.addSeparator()
        self._add(menu, "&Quit", self.close, "Ctrl+Q")
        view = self.view_menu = self.menuBar().addMenu("&View")
        group = QActionGroup(self)
        self.layout_actions: dict[str, QAction] = {}
        for layout, label, key in (("1x1", "Single View", "Ctrl+1"),
                                   ("mpr", "MPR: Axial, Coronal, Sagittal", "Ctrl+2")):
            action = self._add(view, label, functools.partial(self.set_layout, layout), key)
            action.setCheckable(True)
            action.setChecked(layout == "1x1")
            group.addAction(action)
            self.layout_actions[layout] = action
        self.document.sigLayoutChanged.connect(
            lambda layout: self.layout_actions[layout].setChecked(True))
        view.addSeparator()
        view.addAction(self.viewer.invert_action)  # keys I and R work in the image panel
        view.addAction(self.viewer.reset_action)
        view.addAction(self.viewer.overlays_action)
        order_menu = view.addMenu("Image &Order")
        order_menu.setToolTipsVisible(True)
        for action in self.viewer.image_order_actions.values():
            order_menu.addAction(action)
        self.document.sigImageOrderChanged.connect(
            lambda order: self.settings.setValue(IMAGE_ORDER_KEY, order))
        view.addSeparator()
        view.addAction(self.browser_dock.toggleViewAction())
        view.addAction(self.tags_dock.toggleViewAction())
        view.addAction(self.measurements_dock.toggleViewAction())
        self._add(view, "Reset Layout", self.reset_layout)
        help_menu = self.help_menu = self.menuBar().addMenu("&Help")
        self._add(help_menu, "&Keyboard Shortcuts", self.show_shortcuts, "F1")
        self._add(help_menu, "&About MedViewer", self.show_about)

    def _add(self, menu: QMenu, text: str, slot: Callable[[], Any], key: str = "") -> QAction:
        action = menu.addAction(text)
        if key:
            action.setShortcut(key)
        action.triggered.connect(lambda _checked=False: slot())
        return action

    # ----------------------------------------------------------------- opening
    @guarded
    def open_path(self, path: PathLike | Sequence[PathLike], auto_select: bool = False) -> None:
        """Scan a folder, DICOMDIR, file or list of files in the background and list it."""
        paths = [str(path)] if isinstance(path, str | Path) else [str(p) for p in path]
        if not paths:
            return
        self.volume_cache.clear()  # opening again re-reads: the files may have changed
        self.add_recent("\n".join(paths))
        first = Path(paths[0])
        self.settings.setValue(LAST_FOLDER_KEY, str(first if first.is_dir() else first.parent))
        target: Any = paths[0] if len(paths) == 1 else paths
        self.set_status(f"Scanning {describe_paths(paths)}\u2026")
        self.tasks.start("scan", scan_task, target, self.scan_cache,
                         on_result=lambda r: self._on_scan_result(r, auto_select),
                         on_error=self._on_scan_error)

    @guarded
    def _on_scan_result(self, result: ScanResult, auto_select: bool) -> None:
        self.scan_result = result
        self.current_series = None  # choosing a series reads it again: it may have grown since
        self.browser.set_scan(result)
        series = result.all_series()
        text = (f"{len(result.patients)} patient(s), {len(series)} series, "
                f"{len(result.problems)} problem file(s)")
        self.set_status(text + (" (scan cancelled)" if result.cancelled else ""))
        self.scan_finished.emit(result)
        if auto_select and series:  # the largest stack: the main series of a study
            self.browser.select_series(max(series, key=lambda s: s.image_count).key)

    def _on_scan_error(self, exc: BaseException) -> None:
        self.show_error(f"Could not scan: {exc}")
        self.scan_failed.emit(str(exc))

    @guarded
    def open_series(self, series: Series) -> None:
        """Show the middle slice at once, then decode the volume; replaces an older load."""
        if self.current_series is not None and self.current_series.key == series.key:
            return
        self.current_series = series
        cached = self.volume_cache.get(series.key)
        if cached is not None:  # seen a moment ago: no decode, no preview
            self.tasks.cancel("load")
            self._on_volume(cached)
            return
        self.set_status(f"Loading {series.modality} {series.description}\u2026".strip())
        self.tasks.start("load", load_series_task, series,
                         on_partial=self._on_preview, on_result=self._on_volume,
                         on_error=self._on_load_error)

    def _on_series_chosen(self, series: Series) -> None:
        """A series clicked or activated in the study tree: show it, and the slice keys (arrows,
        PgUp / PgDn, Home / End) go to its view from now on, not to the tree."""
        self.open_series(series)
        self.viewer.active_view().setFocus(Qt.FocusReason.OtherFocusReason)

    @guarded
    def _on_preview(self, preview: Preview) -> None:
        preview.show_on(self.document)
        self.tags.show_file(preview.source.path)

    @guarded
    def _on_volume(self, volume: Any) -> None:
        self.document.set_volume(volume)
        if self.current_series is not None:
            self._shown_key = self.current_series.key
            self.volume_cache.put(self._shown_key, volume)
        shape = " x ".join(str(n) for n in volume.voxels.shape)
        warnings = f" \u2014 {'; '.join(volume.warnings)}" if volume.warnings else ""
        self.set_status(f"{volume.modality} {volume.description} ({shape}){warnings}".strip())
        self.volume_loaded.emit(volume)

    def _on_load_error(self, exc: BaseException) -> None:
        self.current_series = None  # allow trying again
        text = exc.reason if isinstance(exc, DicomError) else str(exc)
        where = f" ({Path(exc.path).name})" if isinstance(exc, DicomError) and exc.path else ""
        self.show_error(f"Could not load series{where}: {text}")
        self.load_failed.emit(str(exc))

    @guarded
    def open_demo(self) -> None:
        """Generate the built-in demo study in a worker (first start only), then open it."""
        self.set_status("Preparing the demo study\u2026")
        self.tasks.start("scan", demo_task, on_error=self._on_scan_error,
                         on_result=lambda path: self.open_path(path, auto_select=True))

    # ----------------------------------------------------------------- background tasks
    def _on_cancelled(self, kind: str) -> None:
        chosen = self.current_series
        if kind == "load" and chosen is not None and chosen.key == self._shown_key:
            return  # cancelled because the chosen series came from memory: nothing to say
        if kind == "load":
            self.current_series = None  # choosing it again loads it again
        names = {"scan": "Scan", "load": "Loading", "ai": "AI run", "explain": "Explanation"}
        self.set_status(f"{names.get(kind, kind)} cancelled")

    def cancel_tasks(self) -> None:
        self.tasks.cancel_all()

    @property
    def busy(self) -> bool:
        return self.tasks.busy

    # ----------------------------------------------------------------- dialogs and menus
    def _last_folder(self) -> str:
        return str(self.settings.value(LAST_FOLDER_KEY, str(Path.home())))

    @guarded
    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open DICOM folder", self._last_folder())
        if folder:
            self.open_path(folder)

    @guarded
    def open_files_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open DICOM files", self._last_folder(),
                                                "DICOM files (*.dcm *.DCM *.ima *);;All files (*)")
        if files:
            self.open_path(files)

    @guarded
    def open_dicomdir_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open DICOMDIR", self._last_folder(),
                                              "DICOMDIR (DICOMDIR dicomdir *.dir);;All files (*)")
        if path:
            self.open_path(path)

    def recent_items(self) -> list[str]:
        return self.recent_menu.items()

    def add_recent(self, item: str) -> None:
        self.recent_menu.add(item)

    def _open_recent(self, paths: list[str]) -> None:
        self.open_path(paths[0] if len(paths) == 1 else paths)

    @guarded
    def export_view_dialog(self) -> None:
        """File > Export View as PNG: the reader picks the file; we never pick the DICOM folder."""
        if not self.document.has_image:
            self.show_error("Nothing to export: choose a series first")
            return
        start = export_folder(self.settings) / export_file_name(self.document)
        path, _ = QFileDialog.getSaveFileName(self, "Export view as PNG", str(start),
                                              "PNG image (*.png)")
        if path:
            self.export_view(path)

    @guarded
    def export_view(self, path: PathLike) -> Path | None:
        """Save what the active view shows (image and overlays) as a PNG, atomically."""
        target = with_png_suffix(path)
        try:
            save_png_atomic(self.viewer.active_view().grab(), target)
        except OSError as exc:
            self.show_error(f"Could not export the view to {target}: {exc}")
            return None
        self.settings.setValue(EXPORT_FOLDER_KEY, str(target.parent))
        self.set_status(f"View exported to {target}")
        return target

    @guarded
    def set_layout(self, layout: str) -> None:
        self.viewer.set_layout(layout)
        self.layout_actions[self.document.layout].setChecked(True)  # refused: stays checked

    def reset_layout(self) -> None:
        self.restoreState(self._default_state)
        self.browser_dock.show()
        self.tags_dock.show()
        QTimer.singleShot(0, self._default_dock_widths)  # after the restored layout has run

    def show_shortcuts(self) -> None:
        """Help ▸ Keyboard Shortcuts: one non-modal list of every key and mouse action."""
        from medviewer.ui.shell.shortcuts import ShortcutsDialog

        if getattr(self, "shortcuts_dialog", None) is None:
            self.shortcuts_dialog = ShortcutsDialog(self)
        self.shortcuts_dialog.show()
        self.shortcuts_dialog.raise_()

    def show_about(self) -> None:
        from medviewer import __version__

        QMessageBox.about(self, "About MedViewer",
                          f"<b>MedViewer {__version__}</b><br>DICOM review, annotation and "
                          "model-assisted analysis.<br>Not for primary diagnosis.")

    # ----------------------------------------------------------------- Host (common.host)
    def add_dock(self, dock: QDockWidget, place: DockPlace) -> None:
        """left: a tab beside the studies (which stay in front); right: under the tags."""
        if place == "left":
            self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
            self.tabifyDockWidget(self.browser_dock, dock)
            self.browser_dock.raise_()
        else:
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
            self.resizeDocks([self.tags_dock, dock], [480, 400], Qt.Orientation.Vertical)
        self.view_menu.addAction(dock.toggleViewAction())

    def add_menu(self, menu: QMenu) -> None:
        self.menuBar().insertMenu(self.help_menu.menuAction(), menu)

    def add_status_widget(self, widget: QWidget) -> None:
        self.statusBar().addPermanentWidget(widget)

    def dialog_parent(self) -> QWidget:
        return self

    # ----------------------------------------------------------------- messages
    def set_status(self, text: str) -> None:
        self.status_label.setText(text)

    def show_error(self, text: str) -> None:
        """Status bar plus a non-modal box: the reader keeps working while it is open."""
        log.warning(text)
        self.last_error = text
        self.set_status(text)
        if self._message_box is None:
            box = QMessageBox(QMessageBox.Icon.Warning, "MedViewer", text,
                              QMessageBox.StandardButton.Ok, self)
            box.setWindowModality(Qt.WindowModality.NonModal)
            self._message_box = box
        self._message_box.setText(text)
        self._message_box.show()

    # ----------------------------------------------------------------- drag and drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if _local_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        self.dragEnterEvent(event)

    @guarded
    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        paths = _local_paths(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.open_path(paths[0] if len(paths) == 1 else paths)

    # ----------------------------------------------------------------- settings and close
    def _restore_settings(self) -> None:
        order = str(self.settings.value(IMAGE_ORDER_KEY, "") or "")
        if order in IMAGE_ORDERS:  # an unknown value keeps the default
            self.document.set_image_order(order)
        geometry = self.settings.value(GEOMETRY_KEY)
        if isinstance(geometry, QByteArray | bytes):
            self.restoreGeometry(geometry)
        state = self.settings.value(STATE_KEY)
        if isinstance(state, QByteArray | bytes):
            self._sized = self.restoreState(state)  # the reader's own widths win

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if not self._sized:
            self._sized = True
            QTimer.singleShot(0, self._default_dock_widths)  # once the layout has run

    def save_settings(self) -> None:
        self.settings.setValue(GEOMETRY_KEY, self.saveGeometry())
        self.settings.setValue(STATE_KEY, self.saveState())
        self.settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        """Ask about unsaved annotations, remember the layout, then cancel and wait for every
        worker."""
        if not self.annotate.safety.confirm_close():
            event.ignore()  # Cancel: the window stays open
            return
        self.save_settings()
        self.pool.shutdown()
        self.model_menu.shutdown()  # a training child must not outlive the viewer
        self.pacs.shutdown()  # MedViewer's C-STORE receiver, when on, stops listening
        if self._message_box is not None:
            self._message_box.close()
        super().closeEvent(event)


def _local_paths(mime: Any) -> list[str]:
    if mime is None or not mime.hasUrls():
        return []
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]

