"""The tool manager: one active tool owns the left mouse button on every view.

The active tool's name is document state (`StudyDocument.tool`, `sigToolChanged`), so the
toolbar, the Annotate menu and dock and the status bar all show the same one, and choosing a
tool anywhere (toolbar, dock, menu, key) ends the last one. `ToolManager` is the registry and
the dispatcher: the viewing tools (navigate, window/level, distance, rectangle and ellipse ROI)
are built in, a feature registers its own (`register`: the Annotate feature's brush, eraser,
fills and box). A view hands its left-button drags and clicks here; the active tool takes them
where it acts (`acts_on`: the painting tools only on the stack view), elsewhere the view
navigates. Right-drag is window/level whichever tool is active.

Mouse presses hit-test only the active tool's items: `may_grab(kind)` tells a measurement
whether it may take a press (its own tool, or Navigate, which moves and selects everything).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, Signal

from medviewer.ui.document.study import StudyDocument

if TYPE_CHECKING:
    from medviewer.ui.viewing.slice_view import SliceView

NAVIGATE = "navigate"


class ViewTool:
    """A mouse tool; the base class navigates. Subclasses override what they handle."""

    name = NAVIGATE
    label = "Navigate"
    grabs: str | None = None  # the kind of measurement this tool may move (its own)

    def why_not(self) -> str | None:
        """Why this tool cannot be chosen now (None: it can)."""
        return None

    def acts_on(self, view: SliceView) -> bool:
        """Whether the tool edits on `view`; elsewhere the view navigates."""
        return True

    def drag(self, view: SliceView, ev: Any) -> bool:
        """A left-button drag on `view`; False lets the view pan."""
        if view.crosshair_enabled:
            view.point_crosshair(ev.scenePos())
            return True
        return False

    def click(self, view: SliceView, ev: Any) -> None:
        """A click on `view` (left, or right for a tool with a context menu)."""
        if view.crosshair_enabled and ev.button() == Qt.MouseButton.LeftButton:
            view.point_crosshair(ev.scenePos())

    def delete_selected(self, view: SliceView) -> bool:
        """Delete / Backspace: delete this tool's selected item (False: none)."""
        return False

    def cancel(self) -> None:
        """End a gesture in progress (another tool was chosen, another series opened)."""


class WindowTool(ViewTool):
    name, label = "window", "W/L"

    def drag(self, view: SliceView, ev: Any) -> bool:
        view.drag_window_level(ev)
        return True

    def click(self, view: SliceView, ev: Any) -> None:
        pass


class MeasureTool(ViewTool):
    """Distance, rectangle or ellipse ROI: a drag draws one on the view's current image."""

    def __init__(self, kind: str, label: str) -> None:
        self.name = self.grabs = kind
        self.label = label

    def drag(self, view: SliceView, ev: Any) -> bool:
        view.measurements.handle_drag(self.name, ev)
        return True

    def click(self, view: SliceView, ev: Any) -> None:
        pass


VIEWING_TOOLS = (ViewTool(), WindowTool(), MeasureTool("distance", "Distance"),
                 MeasureTool("rect", "Rect ROI"), MeasureTool("ellipse", "Ellipse ROI"))


class ToolManager(QObject):
    """The tools every view of one document shares, and the one that is active."""

    sigToolRefused = Signal(str)  # why a tool could not be chosen

    def __init__(self, document: StudyDocument, parent: QObject | None = None) -> None:
        super().__init__(parent or document)
        self.document = document
        self.tools: dict[str, ViewTool] = {}
        for tool in VIEWING_TOOLS:
            self.register(tool)
        self._last = document.tool
        document.sigToolChanged.connect(self._on_tool_changed)
        document.sigVolumeChanged.connect(self._on_volume_changed)

    def register(self, tool: ViewTool) -> None:
        self.tools[tool.name] = tool

    @property
    def active(self) -> ViewTool:
        return self.tools.get(self.document.tool) or self.tools[NAVIGATE]

    def label(self, name: str | None = None) -> str:
        tool = self.tools.get(name or self.document.tool)
        return tool.label if tool is not None else str(name)

    def choose(self, name: str | None) -> bool:
        """Make `name` the active tool (None: navigate); False, with the reason in
        `sigToolRefused`, when it cannot be chosen now."""
        tool = self.tools.get(name or NAVIGATE)
        if tool is None:
            raise KeyError(f"no tool {name!r}")
        if (why := tool.why_not()) is not None:
            self.sigToolRefused.emit(why)
            return False
        self.document.set_tool(tool.name)
        return True

    def _on_tool_changed(self, name: str) -> None:
        last = self.tools.get(self._last)
        if last is not None and self._last != name:
            last.cancel()
        self._last = name

    def cancel(self) -> None:
        self.active.cancel()

    def _on_volume_changed(self) -> None:
        """Another series: end the gesture; a tool that cannot work on it (painting on a
        colour or 4D series) hands the mouse back to Navigate."""
        self.cancel()
        if self.active.why_not() is not None and self.document.volume is not None:
            self.document.set_tool(NAVIGATE)

    def may_grab(self, kind: str) -> bool:
        """Whether a measurement of `kind` may take a mouse press now."""
        return self.document.tool == NAVIGATE or self.active.grabs == kind

    # ----------------------------------------------------------------- from the views
    def _for(self, view: SliceView) -> ViewTool:
        tool = self.active
        return tool if tool.acts_on(view) else self.tools[NAVIGATE]

    def handle_drag(self, view: SliceView, ev: Any) -> bool:
        return self._for(view).drag(view, ev)

    def handle_click(self, view: SliceView, ev: Any) -> None:
        self._for(view).click(view, ev)

    def delete_selected(self, view: SliceView) -> bool:
        return self._for(view).delete_selected(view)
