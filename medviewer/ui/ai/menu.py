"""The AI menu: the installed models grouped by lab, and what to do with the chosen one.

Built from manifests alone (`medviewer.inference.list_models` reads JSON: no plugin, model
code or torch is imported to list them). Each model shows its title and version; its tooltip
the manifest's description and held-out metrics. A model that cannot read the open series
(the manifest's modalities) is greyed out with the reason in its tooltip. The menu only
emits what the reader chose; `AiController` does it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenu, QWidget

from medviewer.inference import Manifest, ModelError
from medviewer.ui.ai.runtime_menu import RuntimeMenu

RUN_SLICE_KEY, RUN_SERIES_KEY = "Ctrl+R", "Ctrl+Shift+R"
TOOLTIP_COLUMNS = 72  # characters per tooltip line
EXPLAIN_TIP = ("Where the chosen model looked on this slice (Grad-CAM / EigenCAM), in the "
               "background")
NO_MODELS_TEXT = "No models installed (models/ folder, or MEDVIEWER_MODELS_DIR)"


def describe_metrics(metrics: dict[str, Any], limit: int = 8) -> str:
    """'accuracy 0.93; f1 0.91; dice: lung 0.97, nodule 0.61 (n: 40; split: ...)' from a
    manifest's metrics, nested per-label dicts included."""
    values, context = [], []
    for key, value in metrics.items():
        if isinstance(value, bool) or key == "versus_baseline":  # a comparison, not a score
            continue
        if key == "n" or key.startswith("n_"):  # how many cases: context, not a score
            context.append(f"{key}: {value}")
        elif isinstance(value, int | float):
            values.append(f"{key} {value:.3g}")
        elif isinstance(value, dict):
            inner = [f"{k} {v:.3g}" for k, v in value.items()
                     if isinstance(v, int | float) and not isinstance(v, bool)]
            if inner:
                values.append(f"{key}: {', '.join(inner[:limit])}")
        elif isinstance(value, str):
            context.append(f"{key}: {value}")
    text = "; ".join(values[:limit])
    return f"{text} ({'; '.join(context)})" if context else text


def wrapped(lines: Sequence[str], width: int = TOOLTIP_COLUMNS) -> str:
    """Lines broken at words to `width` characters: a tooltip is one line per line of text,
    however wide the screen."""
    return "\n".join(textwrap.fill(line, width, break_on_hyphens=False) or line
                     for line in lines)


def model_tooltip(manifest: Manifest, reason: str = "") -> str:
    """Description, held-out metrics and what the model reads, as the menu's tooltip."""
    spec = manifest.input
    lines = [f"{manifest.title} {manifest.version} ({manifest.task}, id {manifest.id})"]
    if manifest.description:
        lines.append(manifest.description)
    metrics = describe_metrics(manifest.metrics)
    if metrics:
        lines.append(f"Held-out metrics: {metrics}")
    reads = "/".join(spec.modalities) or "any modality"
    lines.append(f"Reads {reads}, {spec.size[0]}x{spec.size[1]}, {spec.context} slice context"
                 + (f", with {' and '.join(spec.extras)}" if spec.extras else ""))
    if reason:
        lines.append(f"Not available: {reason}")
    return wrapped(lines)


class AiMenu(QMenu):
    """Models by lab (checkable: the chosen one), then Run, Explain, Compare, Clear, Export."""

    sigModelChosen = Signal(str)
    sigExplainWith = Signal(str)  # an explanation method chosen by name

    def __init__(self, owner: QWidget) -> None:
        super().__init__("&AI", owner)
        self.setObjectName("aiMenu")
        self.setToolTipsVisible(True)
        self.model_group = QActionGroup(self)
        self.model_group.setExclusive(True)
        self.model_actions: dict[str, QAction] = {}
        # owned by the window, not the menu: rebuilding the model list must not delete them
        self.run_slice_action = self._command(owner, "Run on Current &Slice", RUN_SLICE_KEY,
                                              "Run the chosen model on the slice on screen")
        self.run_series_action = self._command(owner, "Run on &Whole Series", RUN_SERIES_KEY,
                                               "Run the chosen model on every slice")
        self.explain_action = self._command(owner, "&Explain (Heatmap)", "", EXPLAIN_TIP)
        self.explain_menu = QMenu("Explain &With", owner)
        self.explain_menu.setToolTipsVisible(True)
        self.runtime_menu = RuntimeMenu(owner)
        self.compare_action = self._command(owner, "&Compare Fusion Methods (Lab 3)", "",
                                            "Every lab 3 method's verdict on this series, "
                                            "side by side")
        self.compare_segmenters_action = self._command(
            owner, "Compare Se&gmentation Models (Lab 4)", "",
            "Every lab 4 segmentation model on this series: label volumes (and scores against "
            "the series' mask) side by side, one overlay at a time")
        self.mask_action = self._command(owner, "Compare With &Mask (DICOM SEG)\u2026", "",
                                         "Dice and IoU per label of the shown segmentation "
                                         "against a SEG drawn on this series")
        self.clear_action = self._command(owner, "C&lear AI Results", "",
                                          "Remove the overlays, boxes, heatmap and scores")
        self.export_action = self._command(owner, "E&xport Results\u2026", "",
                                           "Scores, boxes, label volumes as CSV or JSON")
        self.set_models([], [])

    def _command(self, owner: QWidget, text: str, key: str, tip: str) -> QAction:
        action = QAction(text, owner)
        if key:
            action.setShortcut(QKeySequence(key))
            tip = f"{tip} ({key})"
        action.setToolTip(tip)
        action.setStatusTip(tip)
        return action

    def set_models(self, manifests: Sequence[Manifest], problems: Sequence[ModelError],
                   chosen: str = "", unavailable: dict[str, str] | None = None) -> None:
        """Rebuild the list: a header per lab, one checkable action per model."""
        unavailable = unavailable or {}
        for action in self.model_group.actions():  # before clear() deletes them
            self.model_group.removeAction(action)
        self.clear()
        self.model_actions = {}
        lab = None
        for manifest in manifests:
            if manifest.lab != lab:
                lab = manifest.lab
                self._header(manifests, lab)
            self._model_action(manifest, chosen, unavailable.get(manifest.id, ""))
        if not manifests:
            self.addAction(NO_MODELS_TEXT).setEnabled(False)
        if problems:
            self.addSeparator()
            self.addAction("Model folders that could not be read:").setEnabled(False)
            for problem in problems:
                bad = self.addAction(f"  {problem.path or '?'}")
                bad.setToolTip(problem.reason)
                bad.setEnabled(False)
        self.addSeparator()
        for action in (self.run_slice_action, self.run_series_action, self.explain_action):
            self.addAction(action)
        self.addMenu(self.explain_menu)
        self.addMenu(self.runtime_menu)
        self.addSeparator()
        self.addAction(self.compare_action)
        self.addAction(self.compare_segmenters_action)
        self.addAction(self.mask_action)
        self.addSeparator()
        self.addAction(self.clear_action)
        self.addAction(self.export_action)

    def show_explain_reason(self, reason: str) -> None:
        """Explain greyed out says why ('' : the usual text and tooltip)."""
        action = self.explain_action
        action.setText("&Explain (Heatmap): not for this model" if reason
                       else "&Explain (Heatmap)")
        tip = wrapped([reason]) if reason else EXPLAIN_TIP
        action.setToolTip(tip)
        action.setStatusTip(reason or EXPLAIN_TIP)

    def set_explain_methods(self, methods: Sequence[str]) -> None:
        """The chosen model's explanation methods (the default first), by name."""
        self.explain_menu.clear()
        for i, method in enumerate(methods):
            action = self.explain_menu.addAction(method + (" (default)" if i == 0 else ""))
            action.triggered.connect(lambda _=False, m=method: self.sigExplainWith.emit(m))
        self.explain_menu.setEnabled(bool(methods))

    def _header(self, manifests: Sequence[Manifest], lab: int) -> None:
        tasks = sorted({m.task for m in manifests if m.lab == lab})
        if self.actions():
            self.addSeparator()
        header = self.addAction(f"Lab {lab}: {', '.join(tasks)}")
        header.setEnabled(False)

    def _model_action(self, manifest: Manifest, chosen: str, reason: str) -> None:
        action = self.addAction(f"    {manifest.title}  v{manifest.version}")
        action.setCheckable(True)
        action.setData(manifest.id)
        action.setToolTip(model_tooltip(manifest, reason))
        action.setEnabled(not reason)
        action.setChecked(manifest.id == chosen)
        action.triggered.connect(lambda _=False, i=manifest.id: self.sigModelChosen.emit(i))
        self.model_group.addAction(action)
        self.model_actions[manifest.id] = action
