"""Issue 11.17: painting on a series with an AI segmentation, the Annotate dock offers the
model's labels (name, colour, and so the SEG code), so a correction is saved under the label
the model knows instead of "segment 1"."""

from __future__ import annotations

from medviewer.core.annotations import Workspace
from medviewer.core.annotations.labelmap import default_codes
from tests.ui.gui import RADIUS, _paint, _run, _window

UNET = "lab4-chest-unet"


def test_the_dock_offers_the_models_labels_after_an_ai_segmentation(make_main_window, qtbot,
                                                                    ct_series_dir):
    win = _window(make_main_window, qtbot, ct_series_dir)
    panel = win.annotate.panel
    assert not panel.model_labels_row.isVisibleTo(panel)  # no AI result: nothing to offer
    _run(win, qtbot, lambda: win.ai.run_model(UNET, scope="slice"), timeout=60_000)
    assert panel.model_labels_row.isVisibleTo(panel)
    combo = panel.model_label_combo
    offered = [combo.itemText(i) for i in range(combo.count())]
    assert offered == ["body", "lung", "nodule", "spine"]  # the model's, background aside
    manifest = win.ai.models[UNET]
    colour = next(lab.colour for lab in manifest.labels if lab.name == "nodule")
    combo.setCurrentIndex(offered.index("nodule"))
    panel.add_model_label_button.click()
    label = win.document.labelmap.table.by_name("nodule")
    assert label is not None and label.colour == colour
    assert win.document.active_label == label.value
    assert label.type == default_codes("nodule")[1]  # SNOMED Nodule, as the model's label
    panel.add_model_label_button.click()  # again: selected, not added twice
    assert len(win.document.labelmap.table) == 1

    win.annotate.set_tool("brush")
    win.annotate.set_brush(radius_mm=RADIUS)
    _paint(win, [(20, 20), (24, 24)])
    with qtbot.waitSignal(win.annotate.sigSaved, timeout=10_000):
        win.annotate.save()
    _, table = Workspace.for_series(win.document.volume).load_seg_table(win.document.volume)
    assert [lab.name for lab in table] == ["nodule"]
    win.ai.clear()
    assert not panel.model_labels_row.isVisibleTo(panel)
