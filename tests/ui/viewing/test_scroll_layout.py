"""Scrolling redraws the image and its text, and nothing else: no label taking new text asks
the main window (docks, separators, every panel) to lay itself out again."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QApplication

from tests.ui.gui import _window


class _LayoutRequests(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.LayoutRequest:
            self.seen.append(type(obj).__name__)
        return False


def test_scrolling_lays_out_nothing(make_main_window, qtbot, ct_series_dir):
    win = _window(make_main_window, qtbot, ct_series_dir)
    doc, viewer = win.document, win.viewer
    doc.set_slice(doc.slice_count - 1)
    qtbot.wait(300)  # what follows a scroll once it stops (the tag dock shows that file)
    requests = _LayoutRequests()
    for widget in (win, viewer, viewer.single_view):
        widget.installEventFilter(requests)
    texts = set()
    for k in range(doc.slice_count):
        doc.set_slice(k)
        QApplication.processEvents()
        texts.add(viewer.slice_label.text())
    assert len(texts) == doc.slice_count and requests.seen == []
    label = viewer.slice_label  # the fixed size still holds the widest number
    widest = max(label.fontMetrics().horizontalAdvance(text) for text in texts)
    assert label.contentsRect().width() >= widest
