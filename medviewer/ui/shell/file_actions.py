"""File ▸ Open (folder, files, DICOMDIR), Open Recent, Export View as PNG, and files dropped
on the window: the main window's ways in and out for files, each ending in `open_path` or a
PNG written atomically (a mixin of `MainWindow`, which provides what is declared below)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog

from medviewer.ui.common.guard import guarded
from medviewer.ui.viewing.export import (
    EXPORT_FOLDER_KEY,
    export_file_name,
    export_folder,
    save_png_atomic,
    with_png_suffix,
)

LAST_FOLDER_KEY = "files/lastFolder"
PathLike = str | Path


class FileActions:
    """The file half of `MainWindow`."""

    settings: Any
    document: Any
    viewer: Any
    recent_menu: Any
    open_path: Callable[..., None]
    set_status: Callable[[str], None]
    show_error: Callable[[str], None]

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


def _local_paths(mime: Any) -> list[str]:
    if mime is None or not mime.hasUrls():
        return []
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
