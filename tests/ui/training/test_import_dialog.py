"""Model -> Import Model... in the real window: a notebook's torch.save state dict becomes a model
of the AI menu (guessed fields, Preview on the slice before anything is saved, Import, run),
and a checkpoint that does not fit is a sentence with its key report in a dialog still usable.

The network is a tiny `test.import_thresholds` architecture registered here (a 1x1 conv whose
argmax labels the HU of the chest phantom), so the whole journey takes seconds.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medviewer.inference import Box, Result, list_models, registry, versions
from medviewer.labs.architectures import ARCHITECTURES, Architecture
from medviewer.training import importing
from medviewer.training.importing import similar_model
from medviewer.ui.training.import_tasks import describe, thumbnail
from tests.ui.gui import _open, _run

# the installed lab 4 segmenter whose input spec the dialog copies: with no architecture of
# its own to match (TinySeg is none of the shipped ones), the first by id
LIKE = min(p.parent.name for p in (Path(__file__).resolve().parents[3] / "models")
           .glob("lab4-chest-*/manifest.json"))
WINDOW, MEAN, STD = (-300.0, 2000.0), 0.5, 0.25  # LIKE's input spec
SOFT_HU, BONE_HU = -500.5, 300.5
NEW_ID = "my-thresholds"


def _normalised(hu: float) -> float:
    return ((hu - (WINDOW[0] - WINDOW[1] / 2)) / WINDOW[1] - MEAN) / STD


class Thresholds(nn.Module):
    """argmax: 0 below SOFT_HU, 1 up to BONE_HU, 2 above, on LIKE's normalised input."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.score = nn.Conv2d(1, num_classes, 1)  # a name of its own among test networks

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.score(image)


def thresholds(num_classes: int = 3) -> Thresholds:
    model = Thresholds(num_classes)
    a, s, b = 50.0, _normalised(SOFT_HU), _normalised(BONE_HU)
    with torch.no_grad():  # c1 = a (x - s); c2 = c1 + a (x - b): crosses c1 exactly at b
        model.score.weight.copy_(torch.tensor([0.0, a, 2 * a]).view(3, 1, 1, 1))
        model.score.bias.copy_(torch.tensor([0.0, -a * s, -a * s - a * b]))
    return model


def _classes(state: dict) -> dict:
    return {"num_classes": int(state["score.weight"].shape[0])}


ARCH = ARCHITECTURES.setdefault("test.import_thresholds", Architecture(
    name="test.import_thresholds", lab=4, task="segmentation", build=thresholds,
    example_inputs=lambda: (torch.rand(2, 1, 16, 16),), input_names=("image",),
    output_names=("logits",), dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
    options_from_weights=_classes))


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A model store of this test only; the shipped models stay installed."""
    monkeypatch.setenv("MEDVIEWER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv(registry.MODELS_ENV, raising=False)
    return versions.store_dir()


@pytest.fixture
def window(make_main_window, qtbot, ct_series_dir, store):
    win = make_main_window()
    win.resize(1300, 850)
    win.show()
    qtbot.waitExposed(win)
    _open(win, qtbot, ct_series_dir)
    win.document.set_slice(10)  # mid-chest: lung, soft tissue and spine on screen
    return win


def _dialog(win):
    win.model_menu.import_action.trigger()
    dialog = win.model_menu.import_dialog
    assert dialog is not None and dialog.isVisible()
    return dialog


def _choose(dialog, qtbot, path: Path):
    with qtbot.waitSignal(dialog.sigInspected, timeout=60_000) as inspected:
        assert dialog.choose_file(path)
    return inspected.args[0]


def _outcome(dialog, qtbot, button):
    """Click `button` and wait for its worker: Preview, Manifest, or the error sentence."""
    got: list = []
    signals = (dialog.sigPreviewed, dialog.sigImported, dialog.sigFailed)
    for signal in signals:
        signal.connect(got.append)
    try:
        assert button.isEnabled()
        button.click()
        qtbot.waitUntil(lambda: bool(got), timeout=60_000)
    finally:
        for signal in signals:
            signal.disconnect(got.append)
    return got[0]


def _installed_ids() -> set[str]:
    return {m.id for m in list_models()[0]}


def test_a_notebook_state_dict_is_previewed_imported_and_run(window, qtbot, tmp_path, store):
    checkpoint = tmp_path / "My Thresholds.pth"
    torch.save(thresholds().state_dict(), checkpoint)  # what a course notebook writes
    dialog = _dialog(window)
    assert _choose(dialog, qtbot, checkpoint) is not None
    # guessed from the file, prefilled from the installed lab 4 segmenter
    assert (dialog.lab_combo.currentData(), dialog.task_combo.currentText(),
            dialog.arch_combo.currentData()) == (4, "segmentation", ARCH.name)
    labels = dialog.labels_box
    assert labels.classes_spin.value() == 3 and not labels.classes_spin.isEnabled()
    assert labels.labels()[0] == ["class 1", "class 2", "class 3"]
    assert labels.placeholders() == [0, 1, 2] and "class N" in labels.warning.text()
    assert dialog.id_edit.text() == "my-thresholds" and LIKE in dialog.input_box.like_label.text()
    spec = dialog.input_box.spec()
    assert (spec["size"], spec["window"], spec["mean"], dialog.plugin_edit.text()) == (
        [128, 128], list(WINDOW), [MEAN], "lab4")
    assert "2 of 2 tensors loaded" in dialog.report_view.toPlainText()
    for row, name in enumerate(("background", "soft", "bone")):
        labels.table.item(row, 0).setText(name)
    assert labels.placeholders() == [] and labels.warning.text() == ""

    preview = _outcome(dialog, qtbot, dialog.preview_button)
    assert not isinstance(preview, str), preview
    assert "soft:" in dialog.result_label.text() and "bone:" in dialog.result_label.text()
    assert not dialog.thumb_label.pixmap().isNull()
    assert NEW_ID not in _installed_ids() and not (store / NEW_ID).exists()  # nothing saved

    manifest = _outcome(dialog, qtbot, dialog.import_button)
    assert not isinstance(manifest, str), manifest
    assert manifest.folder == store / NEW_ID / "1.0.0"
    assert str(manifest.folder) in dialog.status_label.text()
    assert NEW_ID in window.ai.menu.model_actions  # listed without a restart
    assert manifest.label_names == ["background", "soft", "bone"]

    output = _run(window, qtbot, lambda: window.ai.run_model(NEW_ID, scope="slice"))
    k = window.document.slice_index
    got = output.results[0].label_map[k]
    np.testing.assert_array_equal(got, preview.result.label_map[k])  # what Preview showed
    hu = window.document.volume.voxels[k]
    truth = (hu > SOFT_HU).astype(np.uint8) + (hu > BONE_HU)
    assert (got == truth).mean() > 0.95 and {1, 2} <= set(np.unique(got))
    window.close()  # the import's temporary folders go with the window
    assert not dialog.temp.exists()


def test_a_checkpoint_that_does_not_fit_is_a_sentence_and_the_dialog_stays_usable(
        window, qtbot, tmp_path, store):
    wrong = tmp_path / "wrong.pth"
    torch.save({"score.weight": torch.zeros(3, 1, 3, 3), "score.bias": torch.zeros(3)}, wrong)
    dialog = _dialog(window)
    assert not dialog.choose_file(tmp_path / "missing.pth")
    assert "is not a file" in dialog.status_label.text()
    _choose(dialog, qtbot, wrong)
    if dialog.arch_combo.currentData() != ARCH.name:  # read again with the chosen one
        with qtbot.waitSignal(dialog.sigInspected, timeout=60_000):
            dialog.arch_combo.setCurrentIndex(dialog.arch_combo.findData(ARCH.name))
    report = dialog.report_view.toPlainText()
    assert "score.weight" in report and "(3, 1, 3, 3)" in report  # the key report names it
    failed = _outcome(dialog, qtbot, dialog.preview_button)
    assert isinstance(failed, str) and "score.weight" in failed and "Traceback" not in failed
    assert dialog.status_label.text() == failed
    assert dialog.preview_button.isEnabled() and not dialog.busy
    assert not (store / dialog.id_edit.text()).exists()

    dialog.maps_edit.setPlainText("no equals sign")
    assert not dialog.preview() and "not OLD=NEW" in dialog.status_label.text()
    dialog.maps_edit.clear()

    whole = tmp_path / "whole.pt"
    torch.save(thresholds(), whole)  # a pickled module: unpickling it would run code
    assert _choose(dialog, qtbot, whole) is None and not dialog.trust_check.isChecked()
    assert "pickled model" in dialog.report_view.toPlainText()
    assert "'Trust this pickle' under Advanced" in dialog.status_label.text()
    assert not dialog.preview_button.isEnabled()
    with qtbot.waitSignal(dialog.sigInspected, timeout=60_000) as trusted:
        dialog.trust_check.setChecked(True)  # the reader trusts it: the same dialog reads it
    assert trusted.args[0].kind == "pickled-module" and dialog.preview_button.isEnabled()
    assert dialog.arch_combo.currentData() == ARCH.name
    assert "2 of 2 tensors loaded" in dialog.report_view.toPlainText()


def test_a_model_file_needs_no_architecture_and_a_preview_can_be_cancelled(
        window, qtbot, tmp_path, store, monkeypatch):
    onnx_file = tmp_path / "exported.onnx"
    torch.onnx.export(thresholds().eval(), (torch.rand(1, 1, 64, 64),), str(onnx_file),
                      input_names=["x"], output_names=["y"], dynamo=False,
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    dialog = _dialog(window)
    assert _choose(dialog, qtbot, onnx_file).kind == "onnx"
    assert not dialog.model_box.form.isRowVisible(dialog.arch_combo)  # self-contained
    assert dialog.task_combo.isEnabled() and dialog.task_combo.currentText() == "segmentation"
    assert dialog.input_box.spec()["size"] == [64, 64]  # the graph's, not the similar model's
    assert dialog.import_options()["arch"] is None

    real = importing.import_model
    steps = []

    def endless(path, fields, out, *, progress, **options):
        for _ in range(3000):  # 30 s at most: the dialog's Cancel ends it at a progress call
            progress("exporting", 0.5)
            steps.append(out)
            time.sleep(0.01)
        return real(path, fields, out, progress=progress, **options)

    monkeypatch.setattr(importing, "import_model", endless)
    dialog.preview_button.click()
    qtbot.waitUntil(lambda: dialog.progress_bar.value() == 50, timeout=10_000)
    assert "Exporting" in dialog.status_label.text() and not dialog.import_button.isEnabled()
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: "Cancelled" in dialog.status_label.text(), timeout=10_000)
    assert dialog.preview_button.isEnabled() and not dialog.cancel_button.isEnabled()
    count = len(steps)
    qtbot.wait(100)
    assert len(steps) == count < 3000  # the export stopped

    dialog.import_button.click()  # no preview: Import exports straight into the store
    qtbot.waitUntil(lambda: dialog.progress_bar.value() == 50, timeout=10_000)
    assert not dialog.choose_file(onnx_file) and "An import is running" in (
        dialog.status_label.text())  # the form stays as the running import read it
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: "Cancelled; nothing was saved" in dialog.status_label.text(),
                    timeout=10_000)
    assert not (store / "exported").exists() and dialog.inspection is not None

    monkeypatch.setattr(importing, "import_model", real)
    preview = _outcome(dialog, qtbot, dialog.preview_button)
    assert not isinstance(preview, str), preview
    assert "class 2:" in dialog.result_label.text()
    assert preview.manifest.arch.startswith("external") and not (store / "exported").exists()


def _result(task: str, labels: list[str], **fields) -> Result:
    return Result("mine", "1.0.0", task, labels, ["#000000", "#ff0000", "#00ff00"][
        :len(labels)], provider="CPUExecutionProvider", title="Mine", **fields)


def test_the_preview_says_what_a_classifier_a_detector_and_a_fusion_model_found():
    scores = _result("classification", ["benign", "malignant"], slice_indices=[4],
                     scores=np.array([[0.2, 0.8]]))
    text = describe(scores, 4, None, 5, 0.012)
    assert text.splitlines() == ["Mine on image 5 (12 ms, CPU):", "  malignant: 0.800",
                                 "  benign: 0.200"]
    fusion = _result("fusion", ["no nodule", "nodule"], scores=np.array([[0.9, 0.1]]))
    assert describe(fusion, 4, None, 5, 1.5).startswith("Mine on the whole series (1.5 s")
    boxes = _result("detection", ["background", "nodule"], slice_indices=[4], boxes=[
        Box(2, 3, 6, 8, "nodule", 0.9, 4), Box(0, 0, 2, 2, "nodule", 0.2, 5)])
    assert describe(boxes, 4, None, 5, 0.5).splitlines()[1:] == [
        "  1 box(es)", "  nodule 0.90 at (2, 3)-(6, 8)"]  # the other box is on slice 5
    frame = np.zeros((10, 10), np.int16)
    rgb = thumbnail(frame, boxes, 4)
    assert rgb.shape == (10, 10, 3) and rgb.dtype == np.uint8
    outline = np.zeros((10, 10), bool)
    outline[3:8, [2, 5]] = outline[[3, 7], 2:6] = True  # x1, y1 exclusive
    assert (rgb[outline] == [255, 0, 0]).all() and (rgb[~outline] == 0).all()


def test_the_similar_model_is_of_the_same_lab_and_task_and_architecture_first(store):
    models = list_models()[0]
    assert similar_model(4, "segmentation", None, models).id == LIKE
    # the same network first: a U-Net borrows the shipped light U-Net's spec, a ResUNet++ its own
    assert similar_model(4, "segmentation", "lab4.unet", models).id == "lab4-chest-unet"
    assert similar_model(4, "segmentation", "lab4.resunetplusplus", models).arch == (
        "lab4.resunetplusplus_small")
    assert similar_model(5, "detection", "lab5.fasterrcnn_resnet50_fpn", models).arch == (
        "lab5.fasterrcnn_light")  # the shipped light variant of the same network
    fusion = similar_model(3, "fusion", "lab3.late_fusion", models)
    assert fusion.arch.startswith("lab3.late_fusion")
    assert similar_model(2, "segmentation", None, models).task == "segmentation"  # task first
    assert similar_model(4, "segmentation", None, []) is None
