"""What the GUI tests do as a reader would: open a folder in a shown window, drag on a view,
paint, run a model and wait for it."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

RADIUS = 12.0  # mm: about 2 pixels of the 5.5 mm phantom


def _slice_view(qtbot, volume, *, window=None, plane: str = "stack",
                size: tuple[int, int] = (400, 400), fit: bool = True):
    """A SliceView of `volume` in its own document, shown at `size` (and fitted)."""
    from medviewer.ui.document.study import StudyDocument
    from medviewer.ui.viewing.slice_view import SliceView

    doc = StudyDocument()
    doc.set_volume(volume, window=window)
    view = SliceView(doc, plane)
    qtbot.addWidget(view)
    view.resize(*size)
    view.show()
    qtbot.waitExposed(view)
    if fit:
        view.fit()
    return view


def _window(make_main_window, qtbot, folder, **kwargs):
    """A shown main window (the size the drag coordinates assume) with `folder` open."""
    win = make_main_window(**kwargs)
    win.resize(1300, 850)
    win.show()
    qtbot.waitExposed(win)
    _open(win, qtbot, folder)
    return win


def _open(win, qtbot, folder) -> None:
    with qtbot.waitSignal(win.volume_loaded, timeout=10_000):
        win.open_path(folder, auto_select=True)


def _screen(view, col: float, row: float) -> QPoint:
    scene = view.view_box.mapViewToScene(view.pixel_to_view(col, row))
    return view.graphics.mapFromScene(scene)


def _drag(view, points: list[tuple[float, float]]) -> None:
    """Move to the first (col, row) as a mouse does (what lies under it sees the hover), press,
    move through the others with the button held, release."""
    viewport, left = view.graphics.viewport(), Qt.MouseButton.LeftButton

    def send(kind, pos, button, buttons):
        QApplication.sendEvent(viewport, QMouseEvent(
            kind, QPointF(pos), QPointF(viewport.mapToGlobal(pos)), button, buttons,
            Qt.KeyboardModifier.NoModifier))

    screen = [_screen(view, c, r) for c, r in points]
    send(QMouseEvent.Type.MouseMove, screen[0], Qt.MouseButton.NoButton, Qt.MouseButton.NoButton)
    QTest.qWait(12)
    send(QMouseEvent.Type.MouseButtonPress, screen[0], left, left)
    for pos in screen[1:]:
        QTest.qWait(12)  # pyqtgraph drops moves closer than 10 ms apart
        send(QMouseEvent.Type.MouseMove, pos, Qt.MouseButton.NoButton, left)
    send(QMouseEvent.Type.MouseButtonRelease, screen[-1], left, Qt.MouseButton.NoButton)
    QApplication.processEvents()


def _wheel(view, notches: int, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    """Notches of the wheel over the middle of a view: negative is wheel down."""
    viewport = view.graphics.viewport()
    pos = QPointF(viewport.width() / 2, viewport.height() / 2)
    QApplication.sendEvent(viewport, QWheelEvent(
        pos, QPointF(viewport.mapToGlobal(pos.toPoint())), QPoint(0, 0),
        QPoint(0, 120 * notches), Qt.MouseButton.NoButton, modifiers,
        Qt.ScrollPhase.NoScrollPhase, False))
    QApplication.processEvents()


def _run(window, qtbot, trigger, timeout=10_000):
    with qtbot.waitSignal(window.ai.sigRunFinished, timeout=timeout) as blocker:
        assert trigger() is not False
    return blocker.args[0]


def _paint(win, path) -> tuple[np.ndarray, np.ndarray]:
    """A brush drag along `path` on the current slice: (map before, map after)."""
    view, doc = win.viewer.single_view, win.document
    before = doc.ensure_annotation().labelmap.array.copy()
    _drag(view, path)
    return before, doc.labelmap.array.copy()
