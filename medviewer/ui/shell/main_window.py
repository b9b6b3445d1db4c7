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
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
)
from PySide6.QtWidgets import (
    QLabel,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QWidget,
)

from medviewer.core.dicom.errors import DicomError
from medviewer.core.dicom.model import ScanResult, Series
from medviewer.ui.common.guard import guarded
from medviewer.ui.common.workers import (
    Preview,
    TaskRunner,
    WorkerPool,
    demo_task,
    load_series_task,
    scan_task,
)
from medviewer.ui.document.reading_aids import IMAGE_ORDERS
from medviewer.ui.document.study import StudyDocument
from medviewer.ui.shell.features import after_first_paint
from medviewer.ui.shell.file_actions import LAST_FOLDER_KEY, FileActions, PathLike
from medviewer.ui.shell.layout import DockLayout
from medviewer.ui.shell.recent import RecentMenu, describe_paths
from medviewer.ui.viewing.browser import StudyBrowser
from medviewer.ui.viewing.measurements_panel import MeasurementsPanel
from medviewer.ui.viewing.tags import TagPanel
from medviewer.ui.viewing.viewer import ViewerPanel
from medviewer.ui.viewing.volume_cache import VolumeCache

if TYPE_CHECKING:  # the features load after the first paint on the real start
    from medviewer.ui.ai.controller import AiController
    from medviewer.ui.annotate.controller import AnnotateController
    from medviewer.ui.dataset.feature import DatasetFeature
    from medviewer.ui.pacs.feature import PacsFeature
    from medviewer.ui.training.menu import ModelMenu

log = logging.getLogger(__name__)

IMAGE_ORDER_KEY = "view/imageOrder"  # head first (the PACS default) or feet first


class MainWindow(FileActions, DockLayout):
    """MedViewer's window. Tests drive it through `open_path` and wait on its signals.

    `defer_features=True` (the real start, `app.show_main_window`): the AI, Model, Annotate,
    PACS and Export Dataset features are built on the tick after the first paint, then
    `features_ready` is true and `sigFeaturesReady` is emitted; by default they are built here.
    """

    scan_finished = Signal(object)  # ScanResult
    scan_failed = Signal(str)
    volume_loaded = Signal(object)  # Volume
    load_failed = Signal(str)
    sigFeaturesReady = Signal()

    ai: AiController
    model_menu: ModelMenu
    annotate: AnnotateController
    pacs: PacsFeature
    dataset: DatasetFeature

    def __init__(
        self,
        settings: QSettings | None = None,
        *,
        scan_cache: bool | str | Path = True,
        defer_features: bool = False,
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
        self.resize(1400, 900)
        self._remember_default_layout()
        self._restore_settings()
        self.features_ready = False
        if defer_features:  # the window is on screen first: the features come the next tick
            after_first_paint(self, self._build_deferred_features)
        else:
            self.build_features()

    # ----------------------------------------------------------------- construction
    def _build_central(self) -> None:
        self.document = StudyDocument(self)
        self.viewer = ViewerPanel(self.document)
        self.viewer.sigStatusMessage.connect(self.set_status)
        self.setCentralWidget(self.viewer)

    def build_features(self) -> None:
        """Build the features (once); see `medviewer.ui.shell.features`."""
        if self.features_ready:
            return
        from medviewer.ui.shell.features import build_features

        build_features(self)
        self.features_ready = True
        self.sigFeaturesReady.emit()

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

    # ----------------------------------------------------------------- view and help
    @guarded
    def set_layout(self, layout: str) -> None:
        self.viewer.set_layout(layout)
        self.layout_actions[self.document.layout].setChecked(True)  # refused: stays checked

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

    # ----------------------------------------------------------------- settings and close
    def _restore_settings(self) -> None:
        order = str(self.settings.value(IMAGE_ORDER_KEY, "") or "")
        if order in IMAGE_ORDERS:  # an unknown value keeps the default
            self.document.set_image_order(order)
        self._restore_layout()

    def _build_deferred_features(self) -> None:
        if self.isVisible():
            self.build_features()
        else:  # closed before this tick: built when (if) it is painted again
            after_first_paint(self, self._build_deferred_features)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        """Ask about unsaved annotations, remember the layout, then cancel and wait for every
        worker."""
        ready = self.features_ready  # closed before they were built: nothing of theirs to stop
        if ready and not self.annotate.safety.confirm_close():
            event.ignore()  # Cancel: the window stays open
            return
        self.save_settings()
        self.pool.shutdown()
        if ready:
            self.model_menu.shutdown()  # a training child must not outlive the viewer
            self.pacs.shutdown()  # MedViewer's C-STORE receiver, when on, stops listening
        if self._message_box is not None:
            self._message_box.close()
        super().closeEvent(event)

