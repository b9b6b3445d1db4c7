"""Start the viewer: QApplication, dark clinical theme, main window, first study.

Reading rooms are dim, so the theme is dark by default: Fusion style, a dark palette and
`resources/style.qss`. A missing resource costs only looks, never the start.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtGui import QColor, QIcon, QPalette
from PySide6.QtWidgets import QApplication

if TYPE_CHECKING:
    from medviewer.ui.shell.main_window import MainWindow

log = logging.getLogger(__name__)

RESOURCES = Path(__file__).resolve().parents[3] / "resources"
APP_NAME = ORGANIZATION = "MedViewer"

_DARK = {
    QPalette.ColorRole.Window: "#1e1f22",
    QPalette.ColorRole.WindowText: "#d8dadd",
    QPalette.ColorRole.Base: "#141517",
    QPalette.ColorRole.AlternateBase: "#1b1c1f",
    QPalette.ColorRole.ToolTipBase: "#2b2d31",
    QPalette.ColorRole.ToolTipText: "#e6e6e6",
    QPalette.ColorRole.Text: "#d8dadd",
    QPalette.ColorRole.Button: "#2a2c30",
    QPalette.ColorRole.ButtonText: "#d8dadd",
    QPalette.ColorRole.BrightText: "#ff5555",
    QPalette.ColorRole.Link: "#4aa3ff",
    QPalette.ColorRole.Highlight: "#2f6db5",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.PlaceholderText: "#7c8088",
}


def dark_palette() -> QPalette:
    palette = QPalette()
    for role, colour in _DARK.items():
        palette.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText,
                 QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6b6e75"))
    return palette


def apply_dark_theme(app: QApplication, resources: Path = RESOURCES) -> None:
    """Fusion + dark palette + style sheet; the sheet is optional."""
    app.setStyle("Fusion")
    app.setPalette(dark_palette())
    qss = resources / "style.qss"
    try:
        app.setStyleSheet(qss.read_text(encoding="utf-8"))
    except OSError as exc:
        log.warning("style sheet not loaded (%s); using the plain dark palette", exc)


def configure_pyqtgraph() -> None:
    """Row-major images everywhere (numpy's (row, column) order), set once at start-up."""
    pg = import_pyqtgraph()
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)


def import_pyqtgraph() -> Any:
    """pyqtgraph, without the CUDA bindings its RawImageWidget imports for CUDA-OpenGL
    interop (0.05-0.09 s of the start; MedViewer draws with ImageItem, never RawImageWidget).
    The bindings are hidden only while pyqtgraph loads: anything else may import them later."""
    if "pyqtgraph" in sys.modules:
        return sys.modules["pyqtgraph"]
    hidden = "cuda.bindings" not in sys.modules
    if hidden:
        sys.modules["cuda.bindings"] = None  # type: ignore[assignment] - "not installed"
    try:
        import pyqtgraph
    finally:
        if hidden:
            del sys.modules["cuda.bindings"]
    return pyqtgraph


def make_application(argv: list[str] | None = None) -> QApplication:
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationDisplayName(APP_NAME)
    configure_pyqtgraph()
    apply_dark_theme(app)
    icon = RESOURCES / "icons" / "medviewer.svg"
    if icon.is_file():  # looks only: a missing icon must not stop the start
        app.setWindowIcon(QIcon(str(icon)))
    return app


def _log_unhandled(exc_type: type[BaseException], exc: BaseException, tb: object) -> None:
    """Last resort: an exception escaping a Qt slot is logged, not a silent abort."""
    log.error("unhandled exception", exc_info=(exc_type, exc, tb))  # type: ignore[arg-type]


def show_main_window() -> MainWindow:
    """The real start's window: shown with what a reader needs at once; the AI, Model,
    Annotate, PACS and Export Dataset features are built on the tick after its first paint
    (`sigFeaturesReady`). A study opened meanwhile is taken up by them when they are."""
    from medviewer.ui.shell.main_window import MainWindow

    window = MainWindow(defer_features=True)
    window.show()
    return window


def run(path: str | None = None) -> int:
    """Show the main window with `path` opened, or the built-in demo study; returns exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = make_application()
    sys.excepthook = _log_unhandled
    window = show_main_window()
    if path:
        window.open_path(path, auto_select=True)
    else:
        window.open_demo()
    return app.exec()
