"""The Qt binding must keep Python's reference counts: PySide6 6.12.0 under Python 3.11 drops a
reference to None on every void call (setChecked, setVisible, ...), so a viewer session aborts
with 'none_dealloc' after enough clicks and slice changes. This fails fast instead."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QCheckBox


class _Emitter(QObject):
    sigFlag = Signal(bool)


def test_void_calls_and_bool_signals_keep_reference_counts(qtbot):
    box = QCheckBox()
    qtbot.addWidget(box)
    emitter, received = _Emitter(), []
    emitter.sigFlag.connect(received.append)
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(2000):
        box.setChecked(True)
        emitter.sigFlag.emit(True)
    assert len(received) == 2000
    assert sys.getrefcount(None) - none_before > -100, "the Qt binding leaks None references"
    assert sys.getrefcount(True) - true_before >= 2000 - 100, "it leaks True references"
