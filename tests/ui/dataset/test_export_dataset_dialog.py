"""File ▸ Export Dataset… in the real window: the chosen series go out as nnU-Net / MONAI."""

from __future__ import annotations

import json

from PySide6.QtWidgets import QApplication

from tests.core.dataset.studies import make_studies
from tests.ui.gui import _window


def _file_action(win, text):
    return next(a for a in win.file_menu.actions() if a.text().replace("&", "") == text)


def _export(qtbot, dialog, timeout=20_000):
    with qtbot.waitSignal(dialog.sigFinished, timeout=timeout) as blocker:
        dialog.export_button.click()
    return blocker.args[0]


def test_file_export_dataset_writes_every_annotated_series(make_main_window, qtbot, tmp_path):
    studies = make_studies(tmp_path)
    win = _window(make_main_window, qtbot, studies.data)
    names = [a.text().replace("&", "") for a in win.file_menu.actions()]
    assert names.index("Export Dataset\u2026") == names.index("Export View as PNG\u2026") + 1
    _file_action(win, "Export Dataset\u2026").trigger()
    dialog = win.dataset.dialog
    assert dialog is not None and dialog.isVisible()
    dialog.all_annotated.setChecked(True)
    dialog.deid.setChecked(False)
    dialog.out.setText(str(studies.out))
    dialog.grab().save(str(tmp_path / "export-dataset.png"))
    report = _export(qtbot, dialog)
    assert not isinstance(report, str), report
    root = studies.out / "Dataset001_MedViewer"
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["numTraining"] == 2 and set(meta["labels"]) == {"background", "lung", "nodule"}
    assert "Exported 2 case(s)" in dialog.status.text()
    assert dialog.export_button.isEnabled() and not dialog.cancel_button.isEnabled()


def test_the_open_series_alone_and_a_bad_folder_said_in_a_sentence(make_main_window, qtbot,
                                                                  tmp_path):
    studies = make_studies(tmp_path)
    win = _window(make_main_window, qtbot, studies.folders["PAT-9182"])
    dialog = win.dataset.open_dialog()
    assert dialog.this_series.isChecked()
    dialog.deid.setChecked(False)
    dialog.out.setText(str(studies.folders["PAT-9182"] / "inside"))
    said = _export(qtbot, dialog)
    assert isinstance(said, str) and "inside the source folder" in said
    assert "inside the source folder" in dialog.status.text()
    dialog.out.setText(str(studies.out))
    report = _export(qtbot, dialog)
    assert len(report.cases) == 1
    QApplication.processEvents()


def test_cancel_stops_the_export_and_keeps_only_whole_files(make_main_window, qtbot, tmp_path,
                                                            monkeypatch):
    from medviewer.core.dataset import layout as export_module

    studies = make_studies(tmp_path)
    win = _window(make_main_window, qtbot, studies.data)
    dialog = win.dataset.open_dialog()
    dialog.all_annotated.setChecked(True)
    dialog.deid.setChecked(False)
    dialog.out.setText(str(studies.out))
    real = export_module.write_nifti

    def write_then_cancel(*args, **kwargs):  # the reader presses Cancel after the first file
        path = real(*args, **kwargs)
        dialog.worker.cancel()
        return path

    monkeypatch.setattr(export_module, "write_nifti", write_then_cancel)
    said = _export(qtbot, dialog)
    assert "Cancelled" in dialog.status.text(), said
    root = studies.out / "Dataset001_MedViewer"
    assert not (root / "dataset.json").exists()
    assert not [p for p in studies.out.rglob("*") if p.name.startswith(".")]


def test_de_identified_export_from_the_dialog_needs_a_key_and_names_no_one(
        make_main_window, qtbot, tmp_path):
    studies = make_studies(tmp_path)
    win = _window(make_main_window, qtbot, studies.data)
    dialog = win.dataset.open_dialog()
    dialog.all_annotated.setChecked(True)
    assert dialog.deid.isChecked()  # on unless the reader turns it off
    dialog.out.setText(str(studies.out))
    said = _export(qtbot, dialog)
    assert isinstance(said, str) and "needs a key" in said
    dialog.key.setText("site secret")
    dialog.dates.setCurrentIndex(dialog.dates.findData("remove"))
    report = _export(qtbot, dialog)
    assert [c["case"][:5] for c in report.cases] == ["ANON-", "ANON-"]
    assert "PAT-7731" in report.pseudonym_table.read_text()
    names = " ".join(str(p) for p in studies.out.rglob("*"))
    assert "PAT-" not in names and "Doe" not in names
    assert "pseudonym table" in dialog.report.toPlainText()


def test_export_dataset_without_an_open_folder_says_what_to_do(make_main_window, qtbot):
    win = make_main_window()
    assert win.dataset.open_dialog() is None
    assert "Open a folder first" in win.last_error


def test_the_dialog_keeps_a_training_runs_split(make_main_window, qtbot, tmp_path):
    studies = make_studies(tmp_path)
    win = _window(make_main_window, qtbot, studies.data)
    dialog = win.dataset.open_dialog()
    dialog.all_annotated.setChecked(True)
    dialog.deid.setChecked(False)
    dialog.formats["nnunet"].setChecked(False)
    dialog.out.setText(str(studies.out))
    dialog.split.setText(str(tmp_path / "missing-split.json"))
    dialog.export_button.click()
    assert "cannot be read" in dialog.status.text() and dialog.export_button.isEnabled()
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["PAT-7731"], "validation": ["PAT-9182"]}))
    dialog.split.setText(str(split))
    _export(qtbot, dialog)
    datalist = json.loads((studies.out / "Dataset001_MedViewer" / "datalist.json").read_text())
    assert (len(datalist["training"]), len(datalist["validation"])) == (1, 1)
