"""The AI controller's file side: Export Results (CSV, JSON, DICOM SR of lesions and
ratios), a fusion verdict as CSV, and Compare With Mask (a DICOM SEG of the series).

A mixin of `AiController` (ui/ai/controller.py), which provides `host`, `document`, `panel`,
`sigRunFinished` and `_on_error`; every file is written atomically, and a failure is a
sentence in the window, never a crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QFileDialog

from medviewer.core.annotations import AnnotationError
from medviewer.inference.results import Result
from medviewer.ui.ai.export import write_lesions_sr, write_results, write_verdict_csv
from medviewer.ui.ai.tasks import agreement_task
from medviewer.ui.common.guard import guarded
from medviewer.ui.viewing.export import EXPORT_FOLDER_KEY, export_folder


class AiResultsIO:
    """Export and Compare With Mask for `AiController`."""

    @guarded
    def export_results(self, path: str | Path) -> Path | None:
        """The shown results as CSV or JSON, or their lesions as DICOM SR (by suffix: .dcm),
        atomically."""
        output = self.document.ai_output
        if output is None:
            self.host.set_status("No AI results to export: run a model first.")
            return None
        try:
            if Path(path).suffix.lower() == ".dcm":
                target = self._export_lesions_sr(output, path)
            else:
                target = write_results(output, path, self.document.explanation)
        except (OSError, AnnotationError) as exc:
            self.host.show_error(f"Could not export the AI results to {path}: "
                                 f"{getattr(exc, 'reason', exc)}")
            return None
        if target is None:
            return None
        self.host.settings.setValue(EXPORT_FOLDER_KEY, str(target.parent))
        self.host.set_status(f"AI results exported to {target}")
        return target

    def _export_lesions_sr(self, output: Any, path: str | Path) -> Path | None:
        """Lesions and measured ratios (lab 5's cardiothoracic ratio) as DICOM SR (.dcm); None
        when the result has neither (the status says so)."""
        if not output.lesions and not any(r.measurements for r in output.results):
            self.host.set_status("No lesions or measurements to save as SR: run a segmentation "
                                 "model whose labels include a lesion (e.g. nodule), or lab 5's "
                                 "heart detector on a chest film.")
            return None
        return write_lesions_sr(output, self.document.volume, path)

    @guarded
    def compare_with_mask(self, path: str | Path) -> bool:
        """Dice, IoU, precision, recall, boundary F1 and HD95 of the shown segmentation
        against a DICOM SEG of this series, worked out in the background."""
        result = self.document.ai_result
        if result is None or result.label_map is None:
            self.host.set_status("Run a segmentation model first, then compare it.")
            return False
        self.host.tasks.start("ai", agreement_task, result, self.document.volume, str(path),
                                on_result=lambda scores: self._on_agreement(result, scores),
                                on_error=lambda exc: self._on_error(None, exc))
        return True

    def _on_agreement(self, result: Result, report: dict) -> None:
        if result is not self.document.ai_result:
            return  # another run replaced it meanwhile
        self.panel.show_agreement(report)
        scores = report["labels"]
        self.host.set_status("Against the mask: " + ", ".join(
            f"{name} Dice {s['dice']:.3f}" for name, s in scores.items()))
        self.sigRunFinished.emit(scores)

    @guarded
    def compare_with_mask_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.host.dialog_parent(),
                                              "Mask to compare with (DICOM SEG)",
                                              str(export_folder(self.host.settings)),
                                              "DICOM (*.dcm);;All files (*)")
        if path:
            self.compare_with_mask(path)

    @guarded
    def export_results_dialog(self) -> None:
        result = self.document.ai_result
        if result is None:
            self.host.set_status("No AI results to export: run a model first.")
            return
        start = export_folder(self.host.settings) / f"{result.model_id}_results.csv"
        path, chosen = QFileDialog.getSaveFileName(
            self.host.dialog_parent(), "Export AI results", str(start),
            "CSV (*.csv);;JSON (*.json);;Lesions / ratios as DICOM SR (*.dcm)")
        if path:
            if not Path(path).suffix:
                path += next((f".{f}" for f in ("json", "dcm") if f in chosen.lower()), ".csv")
            if "dcm" in chosen.lower() and Path(path).name == start.name:  # the CSV's name
                path = str(Path(path).with_name(f"{result.model_id}_findings.dcm"))
            self.export_results(path)

    @guarded
    def export_verdict(self, result: Result, path: str | Path) -> Path | None:
        try:
            target = write_verdict_csv(result, path)
        except OSError as exc:
            self.host.show_error(f"Could not write {path}: {exc}")
            return None
        self.host.set_status(f"{result.title or result.model_id} verdict exported to {target}")
        return target

    @guarded
    def export_verdict_dialog(self, result: Result) -> None:
        start = export_folder(self.host.settings) / f"{result.model_id}_verdict.csv"
        path, _ = QFileDialog.getSaveFileName(
            self.host.dialog_parent(), "Export verdict as CSV", str(start), "CSV (*.csv)")
        if path:
            self.export_verdict(result, path)
