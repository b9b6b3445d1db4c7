"""Model -> Versions in the real window: the table, rolling back with the button, and the run
that follows using the version now active; the Model menu's place and its Retrain entry."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from medviewer.core.dicom import scan
from medviewer.inference import manifest as mf
from medviewer.inference import registry, versions
from medviewer.ui.training.versions_dialog import ACTIVE_TEXT, FIXED_COLUMNS

LAB1 = "lab1-digits-mlp"


@pytest.fixture
def store(demo_study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A model store of this test only (the demo study was made before, in the session's)."""
    monkeypatch.setenv("MEDVIEWER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv(registry.MODELS_ENV, raising=False)
    return versions.store_dir()


def _candidate(tmp_path: Path, version: str = "1.1.0") -> Path:
    """The shipped digits model with other weights bytes (the ONNX graph is the same)."""
    folder = tmp_path / f"candidate-{version}"
    shutil.copytree(registry.shipped_models_dir() / LAB1, folder)
    weights = folder / mf.WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    m = mf.load_manifest(folder, verify=False)
    metrics = {**m.metrics, "accuracy": 0.5, "roc_auc": 0.75}
    mf.write_manifest(replace(m, version=version, metrics=metrics,
                              provenance={"init": "current", "epochs": 1}), folder)
    return folder


def _open_digits(window, demo_study, qtbot):
    digits = next(s for s in scan(demo_study).all_series()
                  if "DEMO-0004" in s.patient_key and s.modality == "OT")
    with qtbot.waitSignal(window.volume_loaded, timeout=60_000):
        window.open_series(digits)


def _run_lab1(window, qtbot) -> str:
    with qtbot.waitSignal(window.ai.sigRunFinished, timeout=60_000) as blocker:
        assert window.ai.run_model(LAB1, "slice") is True
    return blocker.args[0].results[0].model_version


def _column(dialog, name: str) -> list[str]:
    headers = [dialog.table.horizontalHeaderItem(c).text()
               for c in range(dialog.table.columnCount())]
    c = headers.index(name)
    return [dialog.table.item(r, c).text() for r in range(dialog.table.rowCount())]


def test_roll_back_with_the_button_and_the_next_run_uses_that_version(
        make_main_window, store, demo_study, tmp_path, qtbot):
    window = make_main_window()
    _open_digits(window, demo_study, qtbot)
    window.ai.choose(LAB1)
    assert _run_lab1(window, qtbot) == "1.0.0"
    old = window.ai.models[LAB1]
    versions.publish(_candidate(tmp_path))
    window.model_menu.models_changed()  # what the Retrain dialog does after publishing
    assert window.ai.models[LAB1].version == "1.1.0"
    assert window.ai.cache.cached(old) is None, "the old session was dropped"
    assert _run_lab1(window, qtbot) == "1.1.0"

    window.model_menu.versions_action.trigger()
    dialog = window.model_menu.versions_dialog
    assert dialog.isVisible() and dialog.model_id == LAB1  # the AI menu's model
    assert _column(dialog, "Version") == ["1.0.0", "1.1.0"]
    assert _column(dialog, "In use") == ["", ACTIVE_TEXT]
    assert _column(dialog, "Source")[0] == "shipped (read-only)"
    shipped = mf.load_manifest(registry.shipped_models_dir() / LAB1, verify=False)
    n = shipped.metrics["n"]  # the candidate kept the shipped split: one set, comparable
    assert _column(dialog, "accuracy") == [
        f"{shipped.metrics['accuracy']:.4g} ({n} samples, set A)", f"0.5 ({n} samples, set A)"]
    assert _column(dialog, "roc_auc") == ["", f"0.75 ({n} samples, set A)"]
    assert dialog.sets_label.text().startswith("All versions were measured on one validation")
    assert "init: current" in _column(dialog, "Training")[1]
    assert not dialog.use_button.isEnabled(), "the active row is selected"
    dialog.table.selectRow(0)
    assert dialog.use_button.isEnabled()
    with qtbot.waitSignal(dialog.sigActiveChanged) as changed:
        qtbot.mouseClick(dialog.use_button, Qt.MouseButton.LeftButton)
    assert changed.args == [LAB1, "1.0.0"]
    assert "now using version 1.0.0" in window.status_label.text()
    assert _column(dialog, "In use") == [ACTIVE_TEXT, ""]
    assert registry.find_model(LAB1).folder == registry.shipped_models_dir() / LAB1
    assert window.ai.models[LAB1].version == "1.0.0"
    assert _run_lab1(window, qtbot) == "1.0.0"


def test_a_broken_pointer_is_explained_and_can_be_repaired(make_main_window, store, tmp_path):
    versions.publish(_candidate(tmp_path))
    versions.pointer_path(LAB1).write_text(json.dumps({"version": "0.5.0"}))
    window = make_main_window()
    dialog = window.model_menu.open_versions(LAB1)
    assert dialog.message.isVisible()
    assert "0.5.0" in dialog.message.text() and "no longer installed" in dialog.message.text()
    assert _column(dialog, "In use") == ["", ACTIVE_TEXT], "the newest runs meanwhile"
    assert dialog.use_version("1.0.0") is True
    assert not dialog.message.isVisible()
    assert window.ai.models[LAB1].version == "1.0.0"


def test_a_damaged_version_is_refused_in_the_dialog(make_main_window, store, tmp_path):
    published = versions.publish(_candidate(tmp_path))
    versions.set_active(LAB1, "1.0.0")
    (published.folder / mf.ONNX_FILE).write_bytes(b"damaged")
    window = make_main_window()
    dialog = window.model_menu.open_versions(LAB1)
    assert dialog.use_version("1.1.0") is False
    assert "checksum" in dialog.message.text()
    assert _column(dialog, "In use") == [ACTIVE_TEXT, ""]


def test_the_model_menu_follows_the_ai_menu(make_main_window, store):
    window = make_main_window()
    titles = [a.text() for a in window.menuBar().actions()]
    assert titles[titles.index("&AI") + 1] == "&Model"
    texts = [a.text() for a in window.model_menu.menu.actions()]
    assert texts == ["&Retrain\u2026", "&Versions\u2026", "&Import Model\u2026"]


def test_retrain_opens_the_dialog_for_the_chosen_model(make_main_window, store, qtbot):
    window = make_main_window()
    window.ai.choose(LAB1)
    window.model_menu.retrain_action.trigger()
    dialog = window.model_menu.retrain_dialog
    qtbot.add_widget(dialog)
    assert dialog.isVisible() and dialog.model_id == LAB1
    dialog.hide()
    window.model_menu.retrain_action.trigger()
    assert window.model_menu.retrain_dialog is dialog, "one dialog per window, shown again"
    assert dialog.isVisible()
    window.model_menu.shutdown()  # what closing the window calls
    assert not dialog.process.running


def test_the_table_has_one_row_per_version_of_any_model(make_main_window, store):
    window = make_main_window()
    dialog = window.model_menu.open_versions("lab4-chest-unet")
    assert dialog.model_id == "lab4-chest-unet"
    assert dialog.table.rowCount() == 1 and dialog.table.columnCount() > len(FIXED_COLUMNS)
    headers = [dialog.table.horizontalHeaderItem(c).text()
               for c in range(dialog.table.columnCount())]
    assert "final_train_loss" not in headers  # held-out only
    # per-label scores: a table of their own (labels as rows), not one column per label
    assert "dice_lung" not in headers
    labels = dialog.labels_table
    assert labels.isVisibleTo(dialog)
    names = [labels.item(r, 0).text() for r in range(labels.rowCount())]
    assert set(names) == {"body", "lung", "nodule", "spine"}
    columns = [labels.horizontalHeaderItem(c).text() for c in range(labels.columnCount())]
    assert columns[:3] == ["Label", "Dice", "IoU"]
    manifest = dialog.rows[0].manifest
    lung = names.index("lung")
    assert labels.item(lung, 1).text() == f"{manifest.metrics['dice_lung']:.4g}"
    dialog.grab().save("/tmp/s21/h2_versions.png")
    assert _column(dialog, "Measured on")[0].startswith("set A: 716 samples: 16 random phantoms")
    ids = [dialog.model_combo.itemData(i) for i in range(dialog.model_combo.count())]
    assert {LAB1, "lab4-chest-unet", "lab5-heart-frcnn"} <= set(ids)


def test_the_dialogs_start_on_a_model_that_reads_the_open_series(make_main_window, store,
                                                                 demo_study, ct_series_dir,
                                                                 qtbot):
    """Issue 11.19: the digits model chosen last in the AI menu is no default for a chest
    CT; one that reads CT is, the segmenter once the reader has painted a label map."""
    from tests.ui.gui import RADIUS, _open, _paint

    window = make_main_window()
    window.resize(1300, 850)
    window.show()
    qtbot.waitExposed(window)
    _open_digits(window, demo_study, qtbot)
    window.ai.choose(LAB1)
    assert window.model_menu.open_versions().model_id == LAB1  # it reads these digits
    _open(window, qtbot, ct_series_dir)
    retrain = window.model_menu.open_retrain()
    qtbot.add_widget(retrain)
    chosen = window.ai.models[retrain.model_id]
    assert retrain.model_id != LAB1 and "CT" in chosen.input.modalities
    assert window.model_menu.open_versions().model_id == retrain.model_id
    window.annotate.set_tool("brush")
    window.annotate.set_brush(radius_mm=RADIUS)
    _paint(window, [(20, 20), (24, 24)])  # a label map: the segmenter's kind of truth
    retrain.hide()
    retrain = window.model_menu.open_retrain()
    segmenter = retrain.model_id
    assert window.ai.models[segmenter].task == "segmentation"  # lab 4's (first by id)
    assert "CT" in window.ai.models[segmenter].input.modalities
    assert window.model_menu.open_versions().model_id == segmenter
    retrain.hide()
    window.ai.choose("lab4-chest-unet")  # the AI menu's segmenter wins among segmenters
    assert window.model_menu.open_retrain().model_id == "lab4-chest-unet"
    window.model_menu.shutdown()


def test_a_rollback_in_versions_updates_the_retrain_dialog(make_main_window, store, tmp_path,
                                                          qtbot, monkeypatch):
    """Issue 11.19: after "Use this version" in Retrain and a rollback in Versions, Retrain
    no longer says "Now using ... 1.1.0" nor shows the curves of the run it came from."""
    from tests.ui.training.test_retrain_dialog import FAKE, WAIT_MS

    monkeypatch.setenv("FAKE_TRAIN_STEP_S", "0.01")
    window = make_main_window()
    window.ai.choose(LAB1)
    menu = window.model_menu
    retrain = menu.open_retrain()
    qtbot.add_widget(retrain)
    retrain.process.command = FAKE
    retrain.demo_spin.setValue(6)
    with qtbot.waitSignal(retrain.sigRunFinished, timeout=WAIT_MS):
        retrain.start_button.click()
    retrain.history.done["candidate"] = str(_candidate(tmp_path))  # a real model folder
    with qtbot.waitSignal(retrain.sigPublished, timeout=WAIT_MS):
        retrain.use_button.click()
    assert "Now using lab1-digits-mlp 1.1.0" in retrain.status_label.text()
    assert len(retrain.curves["steps"].getData()[0]) == 8  # the run stays on screen
    assert retrain.model_combo.currentText().endswith("v1.1.0")

    versions_dialog = menu.open_versions(LAB1)
    versions_dialog.table.selectRow(0)
    qtbot.mouseClick(versions_dialog.use_button, Qt.MouseButton.LeftButton)
    assert window.ai.models[LAB1].version == "1.0.0"
    status = retrain.status_label.text()
    assert "Now using lab1-digits-mlp 1.0.0" in status and "1.1.0" not in status
    assert retrain.model_combo.currentText().endswith("v1.0.0")
    xs = retrain.curves["steps"].getData()[0]
    assert xs is None or len(xs) == 0
    assert not retrain.tabs.isTabEnabled(1) and retrain.compare_view.cases_table.rowCount() == 0
    assert not retrain.use_button.isEnabled() and retrain.start_button.isEnabled()
    menu.shutdown()


def test_created_is_the_manifests_date_and_other_sets_are_not_compared(make_main_window, store,
                                                                       tmp_path):
    """Issue 11.20: the shipped version was made when its manifest says, not when this machine
    installed it; numbers measured on 360 held-out digits and on a 24-sample training split
    are labelled with n and their set, and said not to compare."""
    folder = _candidate(tmp_path)
    m = mf.load_manifest(folder, verify=False)
    split = "validation split of training run lab1-digits-mlp-20261204: 2 cases of 2 patients"
    versus = {"version": "1.0.0", "metric": "accuracy", "baseline": 0.9, "candidate": 0.95,
              "cases": 2, "verdict": "too few cases", "mean_difference": 0.05, "ci": None}
    mf.write_manifest(replace(m, metrics={"accuracy": 0.95, "n": 24, "split": split,
                                          "versus_baseline": versus}), folder)
    versions.publish(folder)
    window = make_main_window()
    dialog = window.model_menu.open_versions(LAB1)
    shipped = mf.load_manifest(registry.shipped_models_dir() / LAB1, verify=False)
    assert _column(dialog, "Created") == [shipped.provenance["created"], "unknown"]
    n = shipped.metrics["n"]
    assert _column(dialog, "accuracy") == [
        f"{shipped.metrics['accuracy']:.4g} ({n} samples, set A)", "0.95 (24 samples, set B)"]
    note = dialog.sets_label.text()
    assert note.startswith("Not comparable across sets: 1.0.0 on set A; 1.1.0 on set B")
    assert f"set A: {shipped.metrics['split']}" in note and f"set B: {split}" in note
    # the one comparison on a single set: the training run's, old and new on set B
    assert _column(dialog, "Versus its baseline (same set)") == [
        "", "vs 1.0.0: accuracy 0.9 \u2192 0.95, not enough validation cases to tell (2 cases)"]
