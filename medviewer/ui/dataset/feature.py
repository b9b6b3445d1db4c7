"""`DatasetFeature`: File ▸ Export Dataset… of one window (the shell places `export_action`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction

from medviewer.ui.common.guard import guarded
from medviewer.ui.common.host import Host

if TYPE_CHECKING:
    from medviewer.ui.dataset.dialog import ExportDatasetDialog
    from medviewer.ui.document.study import StudyDocument


class DatasetFeature(QObject):
    def __init__(self, host: Host, document: StudyDocument) -> None:
        super().__init__(host.dialog_parent())
        self.host, self.document = host, document
        self.dialog: ExportDatasetDialog | None = None
        self.export_action = QAction("Export &Dataset\u2026", host.dialog_parent())
        self.export_action.setToolTip("The annotated series as an nnU-Net / MONAI training "
                                      "set or a de-identified DICOM copy")
        self.export_action.triggered.connect(lambda _checked=False: self.open_dialog())

    def show_error(self, text: str) -> None:  # what `guarded` calls
        self.host.show_error(text)

    @guarded
    def open_dialog(self) -> ExportDatasetDialog | None:
        from medviewer.ui.dataset.dialog import ExportDatasetDialog

        scan_result = self.host.scan_result
        if scan_result is None or not scan_result.all_series():
            self.host.show_error("Open a folder first: Export Dataset exports its annotated "
                                 "series.")
            return None
        if self.dialog is not None and self.dialog.worker is not None:
            self.dialog.raise_()  # an export is running: show it, do not start another
            return self.dialog
        self.dialog = ExportDatasetDialog(self.host, self._current(scan_result),
                                          lambda: _annotated(scan_result))
        self.dialog.show()
        return self.dialog

    def _current(self, scan_result: Any) -> list:
        from medviewer.core.dataset.export import ExportItem, annotated_series

        volume = self.document.volume
        series = getattr(volume, "series", None)
        if series is None:
            return []
        items = [i for i in annotated_series(scan_result, only=[series.series_instance_uid])
                 if i.series.stack_index == series.stack_index]
        return items or [ExportItem(series, volume.header.get("PatientID", ""))]


def _annotated(scan_result: Any) -> list:
    from medviewer.core.dataset.export import annotated_series

    return annotated_series(scan_result)
