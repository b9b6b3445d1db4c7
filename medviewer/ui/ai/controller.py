"""The viewer's AI: choose a model, run it in the background, show what it said.

`AiController` is the logic behind the AI menu, the "AI results" dock and the status bar's
provider label, usable from a test or a script without clicking (`run_model(model_id,
scope="slice" | "series")`, `explain()`, `compare_fusion()`, `compare_segmenters()`,
`clear()`, `export_results(path)`).
Opening and running a model happen in a worker (`ai_tasks`), with the window's progress bar
and Cancel; the opened model is kept for the next run. A `ModelError` reaches the reader as
its sentence and the viewer stays usable; a result that arrives after another series was
opened is dropped. Results are display layers of the document, never edits of its data.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QDockWidget, QLabel

from medviewer.inference import Manifest, ModelError, list_models, provider_status
from medviewer.ui.ai.layers import AiLayerItems
from medviewer.ui.ai.lesions_table import LesionAxes, centre_view_on
from medviewer.ui.ai.menu import AiMenu
from medviewer.ui.ai.panel import AiPanel
from medviewer.ui.ai.results_io import AiResultsIO
from medviewer.ui.ai.tasks import (
    AiRun,
    ModelCache,
    compare_task,
    explain_task,
    run_model_task,
)
from medviewer.ui.common.guard import guarded
from medviewer.ui.common.host import Host
from medviewer.ui.document.study import StudyDocument
from medviewer.ui.viewing.viewer import ViewerPanel

log = logging.getLogger(__name__)

MODEL_KEY = "ai/model"  # the chosen model, remembered between sessions
LABEL_FILL_KEY = "ai/labelFill"  # AI labels filled (True) or outlined (the default)
RUNTIME_KEY = "ai/runtime"  # AI ▸ CPU Runtime: inference.backends text, "" = default
PROVIDER_IDLE = "AI: idle"
SCOPES = ("slice", "series")
# compare(kind): which installed models run side by side, and what the reader calls them
COMPARE_KINDS = {
    "fusion": (lambda m: m.task == "fusion", "lab 3 fusion model", "fusion methods"),
    "segmentation": (lambda m: m.lab == 4 and m.task == "segmentation",
                     "lab 4 segmentation model", "segmentation models"),
}


class AiController(AiResultsIO, QObject):
    """Menu, dock and provider label of one window (its `Host`), and the runs behind them."""

    sigRunFinished = Signal(object)  # AiOutput, or Explanation
    sigRunFailed = Signal(str)  # the sentence shown to the reader

    def __init__(self, host: Host, document: StudyDocument, viewer: ViewerPanel) -> None:
        super().__init__(document)
        self.host, self.document, self.viewer = host, document, viewer
        viewer.add_layer("ai", AiLayerItems)  # label map, boxes, heatmap of the AI's result
        self.cache = ModelCache(str(host.settings.value(RUNTIME_KEY, "") or ""))
        self.models: dict[str, Manifest] = {}
        self.problems: list[ModelError] = []
        self.chosen_id = str(host.settings.value(MODEL_KEY, "") or "")
        document.set_ai_display(label_fill=host.settings.value(LABEL_FILL_KEY, False, bool))
        document.sigAiDisplayChanged.connect(lambda: host.settings.setValue(
            LABEL_FILL_KEY, document.ai_display.label_fill))
        self._build_dock()
        viewer.add_layer("lesion", lambda view: LesionAxes(view, self.panel.lesion_table))
        self._build_menu()
        self.provider_label = QLabel(PROVIDER_IDLE)
        self.provider_label.setObjectName("aiProvider")
        self.provider_label.setToolTip("The ONNX Runtime provider the last model ran on; "
                                       "shown once a model has been opened")
        host.add_status_widget(self.provider_label)
        self.document.sigVolumeChanged.connect(self._on_volume_changed)
        self.document.sigAiResultChanged.connect(self._sync_actions)
        self.refresh_models()

    # ----------------------------------------------------------------- construction
    def _build_dock(self) -> None:
        self.panel = AiPanel(self.document)
        self.panel.sigExportVerdict.connect(self.export_verdict_dialog)
        self.panel.lesion_table.sigLesionChosen.connect(self.go_to_lesion)
        self.dock = QDockWidget("AI results", self.host.dialog_parent())
        self.dock.setObjectName("aiDock")  # saveState needs names
        self.dock.setWidget(self.panel)
        self.host.add_dock(self.dock, "right")  # under the tags, room for a table

    def _build_menu(self) -> None:
        self.menu = AiMenu(self.host.dialog_parent())
        self.host.add_menu(self.menu)
        self.menu.aboutToShow.connect(self.refresh_models)
        self.menu.sigModelChosen.connect(self.choose)
        self.menu.sigExplainWith.connect(lambda method: self.explain(method=method))
        menu = self.menu
        menu.run_slice_action.triggered.connect(lambda: self.run_model(scope="slice"))
        menu.run_series_action.triggered.connect(lambda: self.run_model(scope="series"))
        menu.explain_action.triggered.connect(lambda: self.explain())
        menu.compare_action.triggered.connect(lambda: self.compare_fusion())
        menu.compare_segmenters_action.triggered.connect(lambda: self.compare_segmenters())
        menu.clear_action.triggered.connect(self.clear)
        menu.export_action.triggered.connect(self.export_results_dialog)
        menu.mask_action.triggered.connect(self.compare_with_mask_dialog)
        menu.runtime_menu.set_chosen(self.cache.backend)
        menu.runtime_menu.sigChosen.connect(self.choose_runtime)

    # ----------------------------------------------------------------- models
    @guarded
    def refresh_models(self) -> None:
        """Read the model folders again (manifests only: cheap) and rebuild the menu."""
        manifests, self.problems = list_models()
        self.models = {m.id: m for m in manifests}
        unavailable = {m.id: r for m in manifests if (r := self.why_not(m))}
        self.menu.set_models(manifests, self.problems, self.chosen_id, unavailable)
        self._sync_actions()

    @guarded
    def models_changed(self) -> None:
        """The installed or active versions changed (Retrain published, Versions rolled
        back): drop the opened sessions, so the next run opens the version active now, and
        list the models again."""
        self.cache.clear()  # a run in progress keeps its own reference
        self.refresh_models()

    @guarded
    def choose(self, model_id: str) -> None:
        """Make `model_id` the model that Run and Explain use."""
        manifest = self._manifest(model_id)
        if manifest is None:
            return
        self.chosen_id = model_id
        self.host.settings.setValue(MODEL_KEY, model_id)
        action = self.menu.model_actions.get(model_id)
        if action is not None:
            action.setChecked(True)
        self.host.set_status(f"AI model: {manifest.title} {manifest.version}")
        self._sync_actions()

    @guarded
    def choose_runtime(self, backend: str) -> None:
        """AI ▸ CPU Runtime: the runtime and precision the next runs open models with."""
        self.cache.set_backend(backend)
        self.host.settings.setValue(RUNTIME_KEY, backend)
        self.menu.runtime_menu.set_chosen(backend)
        self.host.set_status(f"AI runtime: {self.menu.runtime_menu.label(backend)}")

    def why_not(self, manifest: Manifest) -> str:
        """Why `manifest` cannot run on the open series ('' when it can)."""
        modalities = manifest.input.modalities
        modality = self.document.modality
        if self.document.has_image and modalities and modality not in modalities:
            return (f"{manifest.title} reads {'/'.join(modalities)} images; this series is "
                    f"{modality or 'of unknown modality'}.")
        return ""

    def model_for_series(self) -> str | None:
        """The model the Model menu's dialogs start on: one that reads the open series, the
        one its annotations started from or suit (a label map: a segmenter, boxes: a
        detector, class labels: a classifier) first, then the AI menu's choice; the choice
        when no series is open or no model reads it."""
        if not self.document.has_image:
            return self.chosen_id or None
        self.refresh_models()  # manifests only: cheap, and a version may be new
        fitting = [m for m in self.models.values() if not self.why_not(m)]
        if not fitting:
            return self.chosen_id or None
        started_from, task = self._annotated()
        result = self.document.ai_result
        shown = result.model_id if result is not None else ""
        return min(fitting, key=lambda m: (m.id != started_from,
                                           task is not None and m.task not in task,
                                           m.id != shown, m.id != self.chosen_id,
                                           m.lab, m.id)).id

    def _annotated(self) -> tuple[str, tuple[str, ...] | None]:
        """(model id the series' annotation started from, the tasks its annotations suit)."""
        annotation = self.document.annotation
        if annotation is None:
            return "", None
        started = (annotation.model or "").removeprefix("model:").split("@")[0]
        labelmap, boxes = annotation.labelmap, annotation.boxes
        if labelmap is not None and len(labelmap.table) and labelmap.array.any():
            return started, ("segmentation",)
        if boxes.boxes:
            return started, ("detection",)
        if boxes.class_labels:
            return started, ("classification", "fusion")
        return started, None

    def _manifest(self, model_id: str | None) -> Manifest | None:
        model_id = model_id or self.chosen_id
        if not model_id:
            self.host.set_status("Choose a model in the AI menu first.")
            return None
        if model_id not in self.models:
            self.refresh_models()  # installed since the menu was built?
        manifest = self.models.get(model_id)
        if manifest is None:
            self.host.show_error(f"No AI model {model_id!r} is installed.")
        return manifest

    def _runnable(self, model_id: str | None) -> Manifest | None:
        manifest = self._manifest(model_id)
        if manifest is None:
            return None
        if self.document.volume is None:
            self.host.set_status("Open a series first: the model runs on a loaded series.")
            return None
        reason = self.why_not(manifest)
        if reason:
            self.host.set_status(reason)
            return None
        return manifest

    # ----------------------------------------------------------------- running
    @guarded
    def run_model(self, model_id: str | None = None, scope: str = "slice") -> bool:
        """Run a model (default: the chosen one) on the current slice or the whole series;
        False when it was refused (the status bar says why)."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
        manifest = self._runnable(model_id)
        if manifest is None:
            return False
        volume = self.document.volume
        series_level = manifest.task == "fusion"
        k = self.document.slice_index
        slices = [k] if scope == "slice" and not series_level else None
        scope = "series" if slices is None else "slice"
        where = f"slice {self.document.image_position(k=k) + 1}" if slices else "the whole series"
        self.host.set_status(f"Running {manifest.title} on {where}\u2026")
        self.host.tasks.start("ai", run_model_task, self.cache, manifest, volume, slices,
                                scope, on_result=self._on_run,
                                on_error=lambda exc: self._on_error(manifest, exc))
        return True

    @guarded
    def compare_fusion(self, model_ids: Sequence[str] | None = None) -> bool:
        """Lab 3: every series-level (fusion) model on this series, verdicts side by side."""
        return self.compare("fusion", model_ids)

    @guarded
    def compare_segmenters(self, model_ids: Sequence[str] | None = None) -> bool:
        """Lab 4: every segmentation model (the U-Net family) on this series, one row each,
        one overlay at a time; scored against the series' own mask when it has one."""
        return self.compare("segmentation", model_ids)

    def comparable(self, kind: str) -> list[Manifest]:
        """The installed models `compare(kind)` runs that can read the open series."""
        picks = COMPARE_KINDS[kind][0]
        return [m for m in self.models.values() if picks(m) and not self.why_not(m)]

    def compare(self, kind: str, model_ids: Sequence[str] | None = None) -> bool:
        """Run the models of one kind (COMPARE_KINDS) on the whole series, side by side."""
        picks, noun, plural = COMPARE_KINDS[kind]
        if model_ids is None:
            self.refresh_models()
            model_ids = [m.id for m in self.models.values() if picks(m)]
        manifests = [m for i in model_ids if (m := self._runnable(i)) is not None]
        if not manifests:
            self.host.set_status(f"No {noun} can run on this series "
                                 "(none installed, or they read another modality).")
            return False
        mask = self._series_mask() if kind == "segmentation" else None
        self.host.set_status(f"Comparing {len(manifests)} {plural}\u2026")
        self.host.tasks.start("ai", compare_task, self.cache, manifests,
                              self.document.volume, mask, on_result=self._on_run,
                              on_error=lambda exc: self._on_error(None, exc))
        return True

    def _series_mask(self) -> tuple[Any, list[str]] | None:
        """(a copy of the series' label map, names by value) when it has labelled voxels."""
        annotation = self.document.annotation
        labelmap = annotation.labelmap if annotation is not None else None
        if labelmap is None or not len(labelmap.table) or not labelmap.array.any():
            return None
        names = [""] * (max(label.value for label in labelmap.table) + 1)
        for label in labelmap.table:
            names[label.value] = label.name
        return labelmap.array.copy(), names  # the reader may paint on while it runs

    @guarded
    def explain(self, model_id: str | None = None, method: str | None = None) -> bool:
        """A heatmap of where the model looked on the current slice (method: the model's
        default, e.g. Grad-CAM for a classifier, EigenCAM for a detector)."""
        manifest = self._runnable(model_id)
        if manifest is None:
            return False
        k = self.document.slice_index
        self.host.set_status(f"Explaining {manifest.title} on slice "
                             f"{self.document.image_position(k=k) + 1}\u2026")
        self.host.tasks.start("explain", explain_task, manifest, self.document.volume, k,
                                method, on_result=self._on_explained,
                                on_error=lambda exc: self._on_error(manifest, exc))
        return True

    @guarded
    def _on_run(self, run: AiRun) -> None:
        if run.volume is not self.document.volume:
            return  # computed on a series no longer on screen
        self.provider_label.setText(provider_status(run.provider) + (
            f" \u00b7 {run.runtime}" if run.runtime else ""))
        self.document.set_ai_output(run.output)
        self.host.set_status(run.summary)
        self.dock.show()
        self.dock.raise_()
        self.sigRunFinished.emit(run.output)

    @guarded
    def _on_explained(self, answer: tuple[Any, Any]) -> None:
        explanation, volume = answer
        if volume is not self.document.volume:
            return
        self.document.set_explanation(explanation)
        notes = f" ({explanation.notes})" if explanation.notes else ""
        number = self.document.image_position(k=explanation.slice_index) + 1
        self.host.set_status(f"{explanation.method} on slice {number} "
                               f"in {explanation.seconds:.1f} s{notes}")
        self.dock.show()
        self.sigRunFinished.emit(explanation)

    def _on_error(self, manifest: Manifest | None, exc: BaseException) -> None:
        if isinstance(exc, ModelError):
            text = f"{manifest.title}: {exc.reason}" if manifest else exc.reason
        else:
            log.error("AI run failed", exc_info=exc)
            text = f"The AI run failed: {exc}"
        self.host.show_error(text)
        self.sigRunFailed.emit(text)

    @guarded
    def go_to_lesion(self, lesion: Any) -> None:
        """Point at a lesion (a lesion table row): its measured image, the view centred on it."""
        row, col = lesion.key_point
        self.document.set_crosshair((int(round(col)), int(round(row)), lesion.slice_index))
        centre_view_on(self.viewer.single_view, row, col)
        self.host.set_status(f"{lesion.name}: {lesion.long_axis_mm:.1f} x "
                             f"{lesion.short_axis_mm:.1f} mm, {lesion.volume_ml:.2f} mL")

    # ----------------------------------------------------------------- clear and export
    @guarded
    def clear(self) -> None:
        self.host.tasks.cancel("ai")
        self.host.tasks.cancel("explain")
        self.document.clear_ai()
        self.host.set_status("AI results cleared")

    # ----------------------------------------------------------------- follow the document
    @guarded
    def _on_volume_changed(self) -> None:
        """Another series: a run on the old one is no longer wanted; models may not apply."""
        self.host.tasks.cancel("ai")
        self.host.tasks.cancel("explain")
        self.refresh_models()

    @guarded
    def _sync_actions(self) -> None:
        menu, doc = self.menu, self.document
        chosen = self.models.get(self.chosen_id)
        ready = doc.volume is not None and chosen is not None and not self.why_not(chosen)
        menu.run_slice_action.setEnabled(ready)
        menu.run_series_action.setEnabled(ready)
        methods = explain_methods(chosen) if chosen is not None else []
        menu.explain_action.setEnabled(ready and methods != [])  # None: not known here
        menu.show_explain_reason(explain_refusal(chosen) if ready and methods == [] else "")
        menu.set_explain_methods(methods if ready and methods else [])
        menu.compare_action.setEnabled(doc.volume is not None and bool(self.comparable("fusion")))
        menu.compare_segmenters_action.setEnabled(doc.volume is not None
                                                  and bool(self.comparable("segmentation")))
        menu.clear_action.setEnabled(doc.ai_output is not None or doc.explanation is not None)
        menu.export_action.setEnabled(doc.ai_output is not None)
        result = doc.ai_result
        menu.mask_action.setEnabled(result is not None and result.label_map is not None)


def explain_refusal(manifest: Manifest) -> str:
    """Why no explanation applies to a model, in a sentence (lab 1's fully connected net)."""
    try:
        from medviewer.explain import why_not

        return why_not(manifest, None)
    except Exception:  # noqa: BLE001 - a broken explain package must not break the menu
        return f"No explanation method applies to {manifest.title}."


def explain_methods(manifest: Manifest) -> list[str] | None:
    """The explanation methods that apply to a model ([]: none), or None when this
    installation cannot tell (medviewer.explain missing: the worker will say why).
    `methods_for` reads the manifest only; torch is imported when an explanation runs."""
    try:
        from medviewer.explain import methods_for

        return list(methods_for(manifest))
    except ImportError:
        return None
    except Exception:  # noqa: BLE001 - a broken explain package must not break the menu
        log.exception("cannot list the explanation methods of %s", manifest.id)
        return None
