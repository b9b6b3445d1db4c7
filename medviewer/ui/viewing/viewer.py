"""The image panel the main window embeds: toolbar, view area, slice and time sliders, cine.

`ViewerPanel` binds widgets to a `StudyDocument` and holds no image state of its own: the
sliders, preset list and views all follow the document's signals, and every control only calls
a document or view method. Cine is a QTimer that steps the slice (or the time point of a 4D
series) at the chosen rate, wrapping at the end.

Reading-room keys act while the focus is in the panel (a view, its toolbars), never while
the reader types in the tag search: I inverts, R resets the display, O hides or shows the text
on the images, 0 is the header's window and F2..F7 the CT presets in the order of
`PRESET_KEYS`, which the preset combo also shows. The slab controls (mode and thickness in mm,
on a row of their own) set the document's thick slab, which every view of every plane shows.
The slice slider runs through the images in the document's image order (head first: image 1,
the most cranial, on the left); View ▸ Image Order chooses it (`image_order_actions`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QLabel,
    QSlider,
    QSpinBox,
    QStackedWidget,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from medviewer.core import slab as slabs
from medviewer.ui.document.reading_aids import FEET_FIRST, HEAD_FIRST, STACK
from medviewer.ui.document.study import StudyDocument
from medviewer.ui.viewing.mpr_view import MprView
from medviewer.ui.viewing.slice_view import SliceView
from medviewer.ui.viewing.tools import VIEWING_TOOLS, ToolManager

CUSTOM_WINDOW = "W/L: custom"
# CT presets on function keys, head to toe as a reading room uses them; stroke and liver stay
# in the combo without a key. 0 is the header's own window.
PRESET_KEYS: dict[str, str] = {"F2": "brain", "F3": "subdural", "F4": "lung",
                               "F5": "mediastinum", "F6": "abdomen", "F7": "bone"}
HEADER_WINDOW_KEY = "0"
INVERT_KEY, RESET_KEY, OVERLAY_KEY = "I", "R", "O"
SLAB_MM = (1.0, 100.0)  # thickness range of the slab spin box
# View ▸ Image Order: (menu text, tooltip) of each convention
IMAGE_ORDER_TEXT = {
    HEAD_FIRST: ("Head First (image 1 most cranial, wheel down to the feet)",
                 "Axial: image 1 is the most cranial, wheel down, ↓ and PgDn move towards the "
                 "feet; coronal: anterior first; sagittal: the patient's right first"),
    FEET_FIRST: ("Feet First (image 1 most caudal, wheel down to the head)",
                 "Axial: image 1 is the most caudal, wheel down, ↓ and PgDn move towards the "
                 "head; coronal: posterior first; sagittal: the patient's left first")}


class ViewerPanel(QWidget):
    """Toolbar + one SliceView (1x1) or three (MPR) + slice/time sliders, for one document."""

    sigStatusMessage = Signal(str)

    def __init__(self, document: StudyDocument | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.document = document or StudyDocument(self)
        self.tools = ToolManager(self.document, self)  # one active tool for every view
        self._layers: dict[str, Callable[[SliceView], Any]] = {}  # add_layer: for MPR too
        self.cine_timer = QTimer(self)
        self.cine_timer.timeout.connect(self.cine_tick)
        self.single_view = SliceView(self.document, tools=self.tools)
        self.single_view.sigCursorInfo.connect(self.sigStatusMessage)
        self.single_view.sigFocused.connect(self._on_view_focused)
        self._active_view: SliceView = self.single_view
        self.mpr_view: MprView | None = None  # built on first use
        self.stack = QStackedWidget()
        self.stack.addWidget(self.single_view)
        self._build_toolbar()
        self._build_key_actions()
        self._build_image_order_actions()
        self._build_sliders()
        self._build_layout()
        self._connect_document()
        self._on_volume_changed()

    # ----------------------------------------------------------------- construction
    def _build_toolbar(self) -> None:
        self.toolbar = QToolBar("Viewer")
        group = QActionGroup(self)  # none checked while an Annotate tool is active
        group.setExclusionPolicy(QActionGroup.ExclusionPolicy.ExclusiveOptional)
        self.tool_actions: dict[str, QAction] = {}
        for tool in VIEWING_TOOLS:
            action = QAction(tool.label, self, checkable=True)
            action.triggered.connect(lambda _=False, t=tool.name: self.set_tool(t))
            group.addAction(action)
            self.toolbar.addAction(action)
            self.tool_actions[tool.name] = action
        self._sync_tool_actions(self.document.tool)
        # Display controls on a second row, so that nothing hides behind the overflow arrow
        # when the docks leave the image panel narrow.
        self.display_toolbar = QToolBar("Display")
        bar = self.display_toolbar
        self.preset_combo = QComboBox()
        self.preset_combo.setMinimumContentsLength(14)
        self.preset_combo.setToolTip("Window/level presets: the header's, then CT presets")
        self.preset_combo.activated.connect(self._on_preset_chosen)
        bar.addWidget(self.preset_combo)
        self.layout_combo = QComboBox()
        self.layout_combo.addItems(["1x1", "MPR"])
        self.layout_combo.activated.connect(
            lambda i: self.set_layout(("1x1", "mpr")[i]))
        bar.addWidget(self.layout_combo)
        bar.addAction("Fit", self.fit).setToolTip("Whole image in view (F)")
        bar.addAction("1:1", self.actual_size).setToolTip("One screen pixel per pixel")
        self.invert_action = self._key_action("Invert", INVERT_KEY, self.set_inverted,
                                              "Grey scale flipped for display only")
        self.invert_action.setCheckable(True)
        self.reset_action = self._key_action("Reset", RESET_KEY, self.reset_view,
                                             "Header window, fit, no invert; measurements stay")
        bar.addAction(self.invert_action)
        bar.addAction(self.reset_action)
        self.overlays_action = self._key_action(
            "Text Overlays", OVERLAY_KEY, self.set_overlays_visible,
            "Patient, series and image text on the images")
        self.overlays_action.setCheckable(True)
        self.overlays_action.setChecked(self.document.overlays_visible)
        # the slab on a row of its own, kept wide enough for both controls: in the tools row a
        # wide dock pushed the mm box into the overflow menu
        self.slab_toolbar = QToolBar("Slab")
        self._build_slab_controls(self.slab_toolbar)
        self.slab_toolbar.setMinimumWidth(self.slab_toolbar.sizeHint().width())
        self.cine_action = QAction("Cine ▶", self, checkable=True)
        self.cine_action.toggled.connect(self.set_cine)
        self.cine_button = QToolButton()  # beside the slice slider it drives
        self.cine_button.setDefaultAction(self.cine_action)
        self.fps_spin = QSpinBox(minimum=1, maximum=60, value=10, suffix=" fps")
        self.fps_spin.valueChanged.connect(self._on_fps_changed)

    def _build_slab_controls(self, bar: QToolBar) -> None:
        """Thick slab: mode (Off / MIP / MinIP / Avg) and thickness in mm, for every view."""
        self.slab_combo = QComboBox()
        for mode in slabs.SLAB_MODES:
            self.slab_combo.addItem(f"Slab: {slabs.MODE_LABELS[mode]}", mode)
        self.slab_combo.setToolTip("Thick slab: maximum (MIP), minimum (MinIP) or average "
                                   "intensity over the thickness, in every view")
        self.slab_combo.activated.connect(
            lambda i: self.set_slab(self.slab_combo.itemData(i)))
        bar.addWidget(self.slab_combo)
        self.slab_spin = QDoubleSpinBox(minimum=SLAB_MM[0], maximum=SLAB_MM[1], decimals=1,
                                        singleStep=1.0, suffix=" mm")
        self.slab_spin.setValue(self.document.slab_mm)
        self.slab_spin.setToolTip("Slab thickness, converted to images with each plane's "
                                  "slice spacing")
        self.slab_spin.valueChanged.connect(lambda mm: self.set_slab(thickness_mm=mm))
        bar.addWidget(self.slab_spin)

    def _key_action(self, text: str, key: str, slot: object, tip: str = "") -> QAction:
        """An action whose key works anywhere inside the panel (views, toolbars) but not in
        other docks, so typing in the tag search never inverts the image."""
        action = QAction(text, self)
        action.setShortcut(QKeySequence(key))
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.setToolTip(f"{tip} ({key})" if tip else f"{text} ({key})")
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_key_actions(self) -> None:
        self.preset_actions: dict[str, QAction] = {}
        for key in (HEADER_WINDOW_KEY, *PRESET_KEYS):
            name = PRESET_KEYS.get(key, "header window").capitalize()
            self.preset_actions[key] = self._key_action(
                name, key, lambda _=False, k=key: self.apply_preset_key(k))
        keys = ", ".join(f"{k} {n}" for k, n in PRESET_KEYS.items())
        self.preset_combo.setToolTip("Window/level presets: the header's (key 0), then CT "
                                     f"presets ({keys})")

    def _build_image_order_actions(self) -> None:
        """View ▸ Image Order: head first (the PACS default) or feet first."""
        group = QActionGroup(self)
        self.image_order_actions: dict[str, QAction] = {}
        for order, (text, tip) in IMAGE_ORDER_TEXT.items():
            action = QAction(text, self, checkable=True)
            action.setToolTip(tip)
            action.setChecked(order == self.document.image_order)
            action.triggered.connect(lambda _=False, o=order: self.set_image_order(o))
            group.addAction(action)
            self.image_order_actions[order] = action

    def _build_sliders(self) -> None:
        self.slice_slider = QSlider(Qt.Orientation.Horizontal)
        # the slider runs through the images in their reading order (image 1 on the left)
        self.slice_slider.valueChanged.connect(
            lambda p: self.document.go_to_position(STACK, p))
        self.slice_label = QLabel()
        self.time_slider = QSlider(Qt.Orientation.Horizontal)
        self.time_slider.valueChanged.connect(self.document.set_time)
        self.time_label = QLabel()

    def _build_layout(self) -> None:
        sliders = QGridLayout()
        sliders.addWidget(QLabel("Slice"), 0, 0)
        sliders.addWidget(self.slice_slider, 0, 1)
        sliders.addWidget(self.slice_label, 0, 2)
        sliders.addWidget(self.cine_button, 0, 3)
        sliders.addWidget(self.fps_spin, 0, 4)
        self.time_row = (QLabel("Time"), self.time_slider, self.time_label)
        for col, widget in enumerate(self.time_row):
            sliders.addWidget(widget, 1, col)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.toolbar)
        layout.addWidget(self.display_toolbar)
        layout.addWidget(self.slab_toolbar)
        layout.addWidget(self.stack, 1)
        layout.addLayout(sliders)

    def _connect_document(self) -> None:
        doc = self.document
        doc.sigVolumeChanged.connect(self._on_volume_changed)
        doc.sigSliceChanged.connect(self._sync_slice_slider)
        doc.sigTimeChanged.connect(self._sync_time_slider)
        doc.sigWindowChanged.connect(self._sync_preset_combo)
        doc.sigLayoutChanged.connect(self._on_layout_changed)
        doc.sigInvertChanged.connect(self._sync_invert_action)
        doc.sigSlabChanged.connect(self._sync_slab_controls)
        doc.sigOverlaysChanged.connect(self._sync_overlays_action)
        doc.sigImageOrderChanged.connect(self._on_image_order_changed)
        doc.sigToolChanged.connect(self._sync_tool_actions)
        self.tools.sigToolRefused.connect(self.sigStatusMessage)

    # ----------------------------------------------------------------- document -> widgets
    def _on_volume_changed(self) -> None:
        doc = self.document
        self.slice_slider.setEnabled(doc.volume is not None)
        self.slice_slider.blockSignals(True)
        self.slice_slider.setRange(0, max(doc.slice_count - 1, 0))
        self.slice_slider.blockSignals(False)
        self._fit_counter(self.slice_label, doc.slice_count)
        self._fit_counter(self.time_label, doc.time_count)
        self._sync_slice_slider(doc.slice_index)
        self.time_slider.blockSignals(True)
        self.time_slider.setRange(0, doc.time_count - 1)
        self.time_slider.blockSignals(False)
        for widget in self.time_row:
            widget.setVisible(doc.time_count > 1)
        self._sync_time_slider(doc.time_index)
        self._fill_presets()
        self._sync_invert_action()
        self._follow_header_frame_rate()

    def _follow_header_frame_rate(self) -> None:
        """A cine loop (US, XA, NM) plays at its recorded rate; otherwise the reader's choice
        stays. Clamped to what the spin box offers."""
        volume = self.document.volume
        rate = volume.frame_rate if volume is not None else None
        if rate:
            low, high = self.fps_spin.minimum(), self.fps_spin.maximum()
            self.fps_spin.setValue(int(min(high, max(low, round(rate)))))

    @staticmethod
    def _fit_counter(label: QLabel, count: int) -> None:
        """Room for "n / count" at its widest, fixed: a label of fixed size taking new text
        leaves the layouts alone, where any other asked the whole window (docks included) to
        lay itself out again on every scroll."""
        metrics = label.fontMetrics()
        widest = max("0123456789", key=metrics.horizontalAdvance)
        text = f"{widest * len(str(count))} / {count}"
        label.setFixedSize(metrics.horizontalAdvance(text) + 2 * label.margin() + 4,
                           max(label.sizeHint().height(), metrics.height()))

    def _sync_slice_slider(self, k: int) -> None:
        position = self.document.image_position(STACK, k)
        self.slice_slider.blockSignals(True)
        self.slice_slider.setValue(position)
        self.slice_slider.blockSignals(False)
        count = self.document.slice_count
        self.slice_label.setText(f"{position + 1} / {count}" if count else "")

    def _sync_time_slider(self, t: int) -> None:
        self.time_slider.blockSignals(True)
        self.time_slider.setValue(t)
        self.time_slider.blockSignals(False)
        self.time_label.setText(f"{t + 1} / {self.document.time_count}")

    def _fill_presets(self) -> None:
        """One item per preset, its key beside its name ("Lung (F4)"), and in its tooltip."""
        self.preset_combo.clear()
        self.preset_combo.addItem(CUSTOM_WINDOW)
        keys = self._preset_key_names()
        for name, window in self.document.presets().items():
            key = keys.get(name)
            label = f"{name} ({key})" if key else name
            self.preset_combo.addItem(f"{label}  (W {window.width:g} / L {window.center:g})",
                                      name)
            tip = (window.explanation or name) + (f": key {key}" if key else "")
            self.preset_combo.setItemData(self.preset_combo.count() - 1, tip,
                                          Qt.ItemDataRole.ToolTipRole)
        self._sync_preset_combo(self.document.window)

    def _preset_key_names(self) -> dict[str, str]:
        """Preset label -> its key: the header's first window on 0, CT presets on F2..F7."""
        names = list(self.document.presets())
        keys = {names[0]: HEADER_WINDOW_KEY} if names and names[0].startswith("Header") else {}
        if self.document.modality == "CT":
            keys.update({name.capitalize(): key for key, name in PRESET_KEYS.items()})
        return keys

    def _sync_invert_action(self, *_args: object) -> None:
        self.invert_action.blockSignals(True)
        self.invert_action.setChecked(self.document.display_inverted)
        self.invert_action.blockSignals(False)

    def _sync_slab_controls(self) -> None:
        doc = self.document
        for widget in (self.slab_combo, self.slab_spin):
            widget.blockSignals(True)
        self.slab_combo.setCurrentIndex(slabs.SLAB_MODES.index(doc.slab_mode))
        self.slab_spin.setValue(doc.slab_mm)
        for widget in (self.slab_combo, self.slab_spin):
            widget.blockSignals(False)

    def _on_image_order_changed(self, order: str) -> None:
        self.image_order_actions[order].setChecked(True)
        self._sync_slice_slider(self.document.slice_index)

    def _sync_overlays_action(self, *_args: object) -> None:
        self.overlays_action.blockSignals(True)
        self.overlays_action.setChecked(self.document.overlays_visible)
        self.overlays_action.blockSignals(False)

    def _sync_preset_combo(self, window: object) -> None:
        presets = self.document.presets() if self.document.volume is not None else {}
        for i in range(1, self.preset_combo.count()):
            found = presets.get(self.preset_combo.itemData(i))
            if found and (found.center, found.width) == (window.center, window.width):
                self.preset_combo.setCurrentIndex(i)
                return
        self.preset_combo.setCurrentIndex(0)

    def set_layout(self, layout: str) -> None:
        if not self.document.set_layout(layout):
            self.sigStatusMessage.emit("MPR needs a volume: these images have no patient "
                                       "geometry, a single slice, or several orientations.")
            self.layout_combo.setCurrentIndex(0)

    def _on_layout_changed(self, layout: str) -> None:
        if layout == "mpr" and self.mpr_view is None:
            self.mpr_view = MprView(self.document, tools=self.tools)
            self.mpr_view.sigCursorInfo.connect(self.sigStatusMessage)
            self.stack.addWidget(self.mpr_view)
            for view in self.mpr_view.slice_views():
                for name, make in self._layers.items():
                    view.add_layer(name, make)
                view.sigFocused.connect(self._on_view_focused)
        self.stack.setCurrentWidget(self.mpr_view if layout == "mpr" else self.single_view)
        self.layout_combo.setCurrentIndex(1 if layout == "mpr" else 0)
        self.fit()

    # ----------------------------------------------------------------- widgets -> actions
    def views(self) -> list[SliceView]:
        """The SliceViews on screen now."""
        if self.document.layout == "mpr" and self.mpr_view is not None:
            return self.mpr_view.slice_views()
        return [self.single_view]

    def _on_view_focused(self, view: SliceView) -> None:
        self._active_view = view

    def active_view(self) -> SliceView:
        """The view the reader last clicked or typed in, if on screen; else the first."""
        views = self.views()
        return self._active_view if self._active_view in views else views[0]

    def add_layer(self, name: str, make: Callable[[SliceView], Any]) -> None:
        """Draw `make(view)` over every view, the MPR planes made later included."""
        self._layers[name] = make
        for view in self.all_views():
            view.add_layer(name, make)

    def all_views(self) -> list[SliceView]:
        """Every SliceView made so far, on screen or not."""
        return [self.single_view, *(self.mpr_view.slice_views() if self.mpr_view else [])]

    def set_tool(self, tool: str | None) -> bool:
        """Choose the mouse tool of every view (None: navigate); False when it cannot be
        chosen now (the status bar says why)."""
        if not self.tools.choose(tool):
            self._sync_tool_actions(self.document.tool)
            return False
        self.sigStatusMessage.emit(f"Tool: {self.tools.label()}")
        return True

    def _sync_tool_actions(self, name: str) -> None:
        for tool, action in self.tool_actions.items():
            action.setChecked(tool == name)

    def _on_preset_chosen(self, index: int) -> None:
        name = self.preset_combo.itemData(index)
        if name:
            window = self.document.apply_preset(name)
            self.sigStatusMessage.emit(f"Window {name}: W {window.width:g} L {window.center:g}")

    def set_inverted(self, on: bool) -> None:
        """Invert (I): flip the grey scale on screen, on top of MONOCHROME1."""
        self.document.set_display_inverted(on)
        self._sync_invert_action()
        self.sigStatusMessage.emit("Inverted" if on else "Not inverted")

    def set_slab(self, mode: str | None = None, thickness_mm: float | None = None) -> None:
        """Thick slab for every view: 'off', 'mip', 'minip' or 'avg' over `thickness_mm`."""
        self.document.set_slab(mode, thickness_mm)
        self._sync_slab_controls()
        doc = self.document
        label = doc.slab_label() if doc.volume is not None else ""
        chosen = f"{slabs.MODE_LABELS[doc.slab_mode]} {doc.slab_mm:.1f} mm"
        self.sigStatusMessage.emit("Slab off" if doc.slab_mode == slabs.OFF
                                   else f"Slab: {label or chosen}")

    def set_image_order(self, order: str) -> None:
        """Number and scroll the images head first (image 1 most cranial, wheel down towards
        the feet) or feet first; the voxels keep their order."""
        self.document.set_image_order(order)
        self.sigStatusMessage.emit(f"Image order: {IMAGE_ORDER_TEXT[order][0]}")

    def set_overlays_visible(self, on: bool) -> None:
        """O: all text on the images off or on, remembered for the session."""
        self.document.set_overlays_visible(on)
        self._sync_overlays_action()
        self.sigStatusMessage.emit("Text overlays shown" if on else "Text overlays hidden")

    def reset_view(self) -> None:
        """Reset (R): the header's window, no invert, whole image in view. Measurements stay."""
        self.document.reset_display()
        self.fit()
        w = self.document.window
        self.sigStatusMessage.emit(f"Display reset: W {w.width:g} L {w.center:g}")

    def apply_preset_key(self, key: str) -> None:
        """0: the header's first window (or the default); F2..F7: a CT preset, CT only."""
        doc = self.document
        if not doc.has_image:
            return
        if key == HEADER_WINDOW_KEY:
            window, name = doc.header_window(), "from the header"
            doc.set_window(window)
        elif doc.modality != "CT":
            self.sigStatusMessage.emit(f"{key}: CT presets apply to CT images only")
            return
        else:
            name = PRESET_KEYS[key]
            window = doc.apply_preset(name)
        self.sigStatusMessage.emit(f"Window {name}: W {window.width:g} L {window.center:g}")

    def fit(self) -> None:
        for view in self.views():
            view.fit()

    def actual_size(self) -> None:
        for view in self.views():
            view.actual_size()

    def set_cine(self, playing: bool) -> None:
        """Start or stop cine at the spin box's rate."""
        if playing and self.document.volume is not None:
            self.cine_timer.start(int(round(1000 / self.fps_spin.value())))
        else:
            self.cine_timer.stop()
        self.cine_action.blockSignals(True)
        self.cine_action.setChecked(self.cine_timer.isActive())
        self.cine_action.blockSignals(False)

    def _on_fps_changed(self, fps: int) -> None:
        if self.cine_timer.isActive():
            self.cine_timer.start(int(round(1000 / fps)))

    def cine_tick(self) -> None:
        """Next frame, wrapping: the time point for a 4D series, else the slice."""
        doc = self.document
        if doc.time_count > 1:
            doc.set_time((doc.time_index + 1) % doc.time_count)
        elif doc.slice_count > 1:
            doc.go_to_position(STACK, (doc.image_position() + 1) % doc.slice_count)
