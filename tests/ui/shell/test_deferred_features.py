"""Issue 17 item 4: the real start's window (`defer_features=True`) builds its AI, Model,
Annotate, PACS and Export Dataset features on the tick after its first paint; once built they
are the same as in a window that built them at once, and they take up a study opened before."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QApplication

from tests.ui.gui import RADIUS, _open, _paint, _run, _window


def _menus(window) -> dict[str, list[str]]:
    """Each menu of the menu bar, in order, with its items' texts."""
    return {a.text(): [item.text() for item in a.menu().actions()]
            for a in window.menuBar().actions()}


def _painted(win) -> np.ndarray:
    """A brush stroke of a new label on the open series: the label map after it."""
    win.document.add_label("lesion")
    win.annotate.set_tool("brush")
    win.annotate.set_brush(radius_mm=RADIUS)
    _, after = _paint(win, [(20, 20), (40, 40)])
    assert after.any()
    return after


def _ready(window, qtbot) -> None:
    with qtbot.waitSignal(window.sigFeaturesReady, timeout=10_000):
        window.show()
    assert window.features_ready


def test_after_the_first_paint_every_menu_is_there_as_in_a_direct_build(
        make_main_window, qtbot, models_dir, monkeypatch):
    monkeypatch.setenv("MEDVIEWER_MODELS_DIR", str(models_dir))
    direct = make_main_window()
    window = make_main_window(defer_features=True)
    assert not window.features_ready and list(_menus(window)) == ["&File", "&View", "&Help"]
    _ready(window, qtbot)
    assert _menus(window) == _menus(direct)  # same menus, same order, same items
    assert "Export &Dataset\u2026" in _menus(window)["&File"]
    assert "PACS &Servers\u2026" in _menus(window)["&File"]
    assert window.ai.menu.model_actions.keys() == direct.ai.menu.model_actions.keys()
    assert window.ai.menu.model_actions  # the AI menu lists the installed models
    window.dataset.export_action.trigger()  # works: no study yet, the reader is told why
    assert "Open a folder first" in window.last_error
    docks = {d.objectName() for d in (window.ai.dock, window.annotate.dock)}
    assert docks == {"aiDock", "annotateDock"}
    qtbot.waitUntil(window.ai.dock.isVisible, timeout=2_000)  # laid out in the shown window


def test_a_series_opened_before_the_features_gets_them(make_main_window, qtbot, models_dir,
                                                        monkeypatch, ct_series_dir):
    """Its saved annotations load and the AI runs on it, as in a window built at once."""
    monkeypatch.setenv("MEDVIEWER_MODELS_DIR", str(models_dir))
    direct = _window(make_main_window, qtbot, ct_series_dir)
    painted = _painted(direct)
    with qtbot.waitSignal(direct.annotate.sigSaved, timeout=15_000):
        direct.annotate.save()
    expected = _run(direct, qtbot, lambda: direct.ai.run_model("test-seg", scope="series"))
    window = make_main_window(defer_features=True)
    window.resize(1300, 850)
    _open(window, qtbot, ct_series_dir)  # not shown yet: no paint, no features
    assert not window.features_ready and window.document.annotation is None
    _ready(window, qtbot)
    qtbot.waitUntil(lambda: window.document.annotation is not None, timeout=10_000)
    np.testing.assert_array_equal(window.document.labelmap.array, painted)
    got = _run(window, qtbot, lambda: window.ai.run_model("test-seg", scope="series"))
    np.testing.assert_array_equal(got.results[0].label_map, expected.results[0].label_map)


def test_the_recovery_check_runs_when_the_features_come_after_the_show(
        fast_autosave, make_main_window, qtbot, ct_series_dir, temp_settings):
    win = _window(make_main_window, qtbot, ct_series_dir)
    _painted(win)
    with qtbot.waitSignal(win.annotate.safety.sigAutosaved, timeout=5_000) as saved:
        pass
    new = make_main_window(settings=temp_settings(), defer_features=True)
    _ready(new, qtbot)
    new.annotate.safety.prompt_recovery = lambda item: None
    with qtbot.waitSignal(new.annotate.safety.sigRecoverable, timeout=5_000) as found:
        pass
    assert saved.args[0] in [r.path for r in found.args[0]]


class _CloseOnFirstPaint(QObject):
    """Closes the window on the tick after its first paint, before the features are built:
    installed on the application after the window's own watch, so it sees the paint first."""

    def __init__(self, window) -> None:
        super().__init__()
        self.window = window
        QApplication.instance().installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt
        if event.type() == QEvent.Type.Paint and watched.window() is self.window:
            QApplication.instance().removeEventFilter(self)
            QTimer.singleShot(0, self.window.close)  # queued before the window's next tick
        return False


@pytest.mark.parametrize("when", ["before the first paint", "after the first paint"])
def test_closed_before_the_features_it_never_builds_them(make_main_window, qtbot, when):
    window = make_main_window(defer_features=True)
    if when == "after the first paint":
        closer = _CloseOnFirstPaint(window)  # noqa: F841 - kept alive until the paint
    window.show()
    if when == "before the first paint":
        window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=2_000)
    qtbot.wait(50)
    assert not window.features_ready


def test_the_readers_dock_layout_comes_back_for_docks_built_later(
        make_main_window, qtbot, temp_settings):
    first = make_main_window()
    first.show()
    first.ai.dock.hide()
    first.close()
    again = make_main_window(settings=temp_settings(), defer_features=True)
    _ready(again, qtbot)
    assert again.ai.dock.isHidden() and not again.annotate.dock.isHidden()
    again.reset_layout()  # the features' docks get their default places again
    assert not again.ai.dock.isHidden()
    assert again.dockWidgetArea(again.ai.dock) == Qt.DockWidgetArea.RightDockWidgetArea
    assert again.dockWidgetArea(again.annotate.dock) == Qt.DockWidgetArea.LeftDockWidgetArea


def test_the_real_starts_demo_study_gets_ai_results(make_main_window, qtbot, demo_study):
    """As `app.run` does: show, open the demo study at once; the features come meanwhile,
    and the AI runs on the series it opened."""
    window = make_main_window(defer_features=True)
    window.resize(1300, 850)
    with qtbot.waitSignal(window.volume_loaded, timeout=60_000):
        window.show()
        window.open_demo()
    qtbot.waitUntil(lambda: window.features_ready, timeout=10_000)
    out = _run(window, qtbot, lambda: window.ai.run_model("lab4-chest-unet", scope="slice"),
               timeout=60_000)
    k = window.document.plane_index()  # the stack view's slice
    assert out.results[0].label_map[k].any()  # lungs found on the slice on screen
