"""Issue 11.22 in the real window with the shipped models: the fusion comparison's per-row
CSV buttons are real buttons, the lab 5 box table shows its last column, Explain greyed out
for lab 1 says why, and model tooltips are wrapped lines."""

from __future__ import annotations

from PySide6.QtCore import Qt

from medviewer.core.dicom import scan
from medviewer.ui.ai.menu import TOOLTIP_COLUMNS
from tests.ui.gui import _run, _window

DOCK_WIDTH = 360  # the right docks' width the window starts with (tags, AI results)


def _fits(table) -> bool:
    """Every column whole inside the table's viewport (nothing behind a scroll bar)."""
    last = table.columnCount() - 1
    header = table.horizontalHeader()
    return header.sectionViewportPosition(0) >= 0 and \
        header.sectionViewportPosition(last) + header.sectionSize(last) <= \
        table.viewport().width()


def test_fusion_csv_buttons_and_the_box_table_fit_the_dock(make_main_window, qtbot,
                                                           ct_series_dir, demo_study):
    win = _window(make_main_window, qtbot, ct_series_dir)
    win.resizeDocks([win.ai.dock], [DOCK_WIDTH], Qt.Orientation.Horizontal)
    _run(win, qtbot, lambda: win.ai.compare_fusion(), timeout=120_000)
    qtbot.wait(20)
    table = win.ai.panel.verdicts_table
    assert table.rowCount() == 4 and _fits(table)
    for row in range(table.rowCount()):
        button = table.cellWidget(row, 3)
        assert button.isVisible() and not button.icon().isNull()
        assert "CSV" in button.toolTip() and button.text() == "CSV"
        assert button.width() >= button.sizeHint().width()  # not squeezed to a stub
        assert button.height() >= button.sizeHint().height() - 2
        assert button.geometry().right() <= table.viewport().width()

    dx = next(s for s in scan(demo_study).all_series() if s.modality == "DX")
    with qtbot.waitSignal(win.volume_loaded, timeout=60_000):
        win.open_series(dx)
    _run(win, qtbot, lambda: win.ai.run_model("lab5-heart-frcnn", scope="slice"),
         timeout=120_000)
    qtbot.wait(20)
    boxes = win.ai.panel.boxes_table
    assert boxes.rowCount() >= 1 and _fits(boxes)
    header = boxes.horizontalHeader()
    last = boxes.columnCount() - 1
    assert header.sectionSize(last) >= header.sectionSizeFromContents(last).width()
    x0, y0, x1, y1 = (win.document.ai_result.boxes[0].x0, win.document.ai_result.boxes[0].y0,
                      win.document.ai_result.boxes[0].x1, win.document.ai_result.boxes[0].y1)
    assert boxes.item(0, last).text() == f"{x0:.0f},{y0:.0f}\u2013{x1:.0f},{y1:.0f}"


def test_explain_greyed_for_lab1_says_why_and_tooltips_are_wrapped(make_main_window, qtbot,
                                                                    demo_study):
    win = make_main_window()
    digits = next(s for s in scan(demo_study).all_series() if s.modality == "OT")
    with qtbot.waitSignal(win.volume_loaded, timeout=60_000):
        win.open_series(digits)
    win.ai.choose("lab1-digits-mlp")
    explain = win.ai.menu.explain_action
    assert not explain.isEnabled()
    assert "not for this model" in explain.text()
    assert "no class activation map" in explain.toolTip().replace("\n", " ")
    assert explain.statusTip() and "no class activation map" in explain.statusTip()
    win.ai.choose("lab5-heart-frcnn")  # reads DX, not these digits: greyed for that reason
    assert explain.text() == "&Explain (Heatmap)"

    win.ai.refresh_models()
    tips = {i: a.toolTip() for i, a in win.ai.menu.model_actions.items()}
    assert len(tips) >= 8
    for model_id, tip in tips.items():
        manifest = win.ai.models[model_id]
        assert max(len(line) for line in tip.splitlines()) <= TOOLTIP_COLUMNS, model_id
        if manifest.description:  # all of it still there, only wrapped
            assert " ".join(manifest.description.split()) in " ".join(tip.split())
