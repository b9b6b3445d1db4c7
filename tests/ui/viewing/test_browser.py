"""Study browser and tag panel, on hand-built scan results and real headers."""

from __future__ import annotations

from pathlib import Path

import pydicom
from PySide6.QtCore import Qt

from medviewer.core.dicom import scan
from medviewer.core.dicom.model import FileProblem, Instance, Patient, ScanResult, Series, Study
from medviewer.ui.viewing import browser as browser_mod
from medviewer.ui.viewing.tags import TagRow, dataset_rows

WAIT_MS = 30_000  # generous: costs nothing when the event comes early (a shared 2-core CI)


def _series(uid: str, modality: str, n: int, description: str, **kw: object) -> Series:
    instances = [Instance(path=f"/nowhere/{uid}_{i}.dcm") for i in range(n)]
    return Series(uid, modality=modality, description=description, instances=instances, **kw)


def _scan() -> ScanResult:
    ct = _series("1.2.1", "CT", 120, "Thorax", series_number=2, date="20240102")
    split = [_series("1.2.2", "MR", 20, "Localizer", stack_index=i, stack_count=3)
             for i in range(3)]
    jane = Patient("P1", "DOE^JANE", "19700101", "F",
                   [Study("1.2", "20240102", description="CHEST CT", accession_number="A7",
                          series=[ct, *split])])
    richard = Patient("P2", "ROE^RICHARD", studies=[
        Study("1.3", series=[_series("1.3.1", "DX", 1, "PA chest")])])
    problems = [FileProblem("/data/x/bad.dcm", "truncated pixel data")]
    return ScanResult([jane, richard], problems, files_seen=126)


def _top_items(tree) -> list:
    return [tree.topLevelItem(i) for i in range(tree.topLevelItemCount())]


def test_tree_lists_patients_studies_series_and_problems(make_browser):
    browser = make_browser()
    browser.set_scan(_scan())
    tops = _top_items(browser.tree)
    assert [t.text(0) for t in tops] == ["DOE JANE (F)", "ROE RICHARD", "Problems (1)"]
    study = tops[0].child(0)
    assert (study.text(0), study.text(browser_mod.COL_ID)) == ("CHEST CT", "A7")
    assert study.childCount() == 4 and tops[1].child(0).childCount() == 1
    ct = study.child(0)
    assert ct.text(browser_mod.COL_MODALITY) == "CT"
    assert ct.text(browser_mod.COL_IMAGES) == "120"
    assert ct.text(browser_mod.COL_DATE) == "2024-01-02"
    assert "stack 2/3" in study.child(2).text(0)
    assert len(browser.series_items()) == 5


def test_problem_rows_carry_file_and_reason(make_browser):
    browser = make_browser()
    browser.set_scan(_scan())
    problem = _top_items(browser.tree)[-1].child(0)
    assert "bad.dcm" in problem.text(0) and "truncated pixel data" in problem.text(0)
    assert "/data/x/bad.dcm" in problem.toolTip(0)


def test_click_and_enter_activate_a_series(make_browser, qtbot):
    browser = make_browser()
    result = _scan()
    browser.set_scan(result)
    browser.show()
    ct = result.all_series()[0]
    item = browser.series_items()[ct.key]
    with qtbot.waitSignal(browser.sigSeriesActivated, timeout=WAIT_MS) as blocker:
        browser.tree.itemClicked.emit(item, 0)
    assert blocker.args[0] is ct
    browser.tree.setCurrentItem(item)
    with qtbot.waitSignal(browser.sigSeriesActivated, timeout=WAIT_MS) as blocker:
        qtbot.keyClick(browser.tree, Qt.Key.Key_Return)
    assert blocker.args[0].key == ct.key


def test_patient_rows_do_not_activate(make_browser, qtbot):
    browser = make_browser()
    browser.set_scan(_scan())
    with qtbot.assertNotEmitted(browser.sigSeriesActivated):
        browser.tree.itemClicked.emit(browser.tree.topLevelItem(0), 0)


def test_filter_by_description_and_patient_name(make_browser, qtbot):
    browser = make_browser()
    browser.set_scan(_scan())
    items = browser.series_items()
    browser.filter_edit.setText("localizer")
    qtbot.waitUntil(lambda: items["1.2.1#0"].isHidden(), timeout=WAIT_MS)
    assert not items["1.2.2#1"].isHidden()
    assert browser.tree.topLevelItem(1).isHidden()  # ROE has no localizer
    browser.filter_edit.setText("roe")
    qtbot.waitUntil(lambda: not browser.tree.topLevelItem(1).isHidden(), timeout=WAIT_MS)
    assert browser.tree.topLevelItem(0).isHidden()
    assert not items["1.3.1#0"].isHidden()


def test_thumbnail_image_is_64_pixels_and_keeps_aspect():
    import numpy as np

    image = browser_mod.thumbnail_image(np.arange(200 * 100).reshape(200, 100) - 500)
    assert (image.width(), image.height()) == (32, 64)
    assert image.pixelColor(0, 0).value() < image.pixelColor(31, 63).value()


def test_thumbnails_arrive_for_real_series(make_browser, qtbot, dicom_folder):
    result = scan(dicom_folder, cache=False)
    browser = make_browser()
    browser.set_scan(result)
    keys = [s.key for s in result.all_series()]
    qtbot.waitUntil(lambda: all(browser.has_thumbnail(k) for k in keys), timeout=WAIT_MS)
    assert not browser.series_items()[keys[0]].icon(0).isNull()


# -------------------------------------------------------------------------- tag panel


def _wait_rows(panel, qtbot) -> None:
    qtbot.waitUntil(lambda: panel.model.rowCount() > 0, timeout=WAIT_MS)


def test_tag_panel_shows_every_element_with_names(make_tag_panel, qtbot, ct_file):
    panel = make_tag_panel()
    panel.show_file(ct_file)
    _wait_rows(panel, qtbot)
    ds = pydicom.dcmread(ct_file, stop_before_pixels=True)
    assert panel.model.rowCount() == len(ds) + len(ds.file_meta)
    (name,) = panel.find_rows("PatientName")
    row = name.row()
    value = panel.proxy.index(row, 3, name.parent()).data()
    assert value == str(ds.PatientName)
    assert panel.proxy.index(row, 0, name.parent()).data() == "(0010,0010)"


def test_private_tags_show_their_creator(make_tag_panel, qtbot, ct_file):
    panel = make_tag_panel()
    panel.show_file(ct_file)
    _wait_rows(panel, qtbot)
    panel.search_edit.setText("0009,1002")
    assert panel.proxy.rowCount() == 1
    assert "GEMS_IDEN_01" in panel.proxy.index(0, 1).data()


def test_sequence_expands_to_numbered_items(make_tag_panel, qtbot, dicom_folder):
    panel = make_tag_panel()
    panel.show_file(next(dicom_folder.glob("a/*.dcm")))
    _wait_rows(panel, qtbot)
    (seq,) = panel.find_rows("ProcedureCodeSequence")
    assert panel.proxy.rowCount(seq) == 1
    assert panel.proxy.index(0, 1, seq).data() == "Item 1"
    item = panel.proxy.index(0, 0, seq)
    panel.view.expand(seq)
    assert panel.view.isExpanded(seq)
    keywords = {panel.proxy.index(r, 0, item).data(Qt.ItemDataRole.UserRole)
                for r in range(panel.proxy.rowCount(item))}
    assert {"CodeValue", "CodeMeaning"} <= keywords


def test_search_keeps_parents_of_matching_children(make_tag_panel, qtbot, dicom_folder):
    panel = make_tag_panel()
    panel.show_file(next(dicom_folder.glob("a/*.dcm")))
    _wait_rows(panel, qtbot)
    total = panel.proxy.rowCount()
    panel.search_edit.setText("codemeaning")
    assert panel.proxy.rowCount() == 1  # only the sequence survives at the top
    assert panel.find_rows("CodeMeaning") and panel.find_rows("ProcedureCodeSequence")
    assert not panel.find_rows("PatientName")
    panel.search_edit.setText("doe^jane")  # by value
    assert [i.data(Qt.ItemDataRole.UserRole) for i in panel.find_rows("PatientName")] == [
        "PatientName"]
    panel.search_edit.setText("")
    assert panel.proxy.rowCount() == total


def test_unreadable_file_is_a_row_not_a_crash(make_tag_panel, qtbot, tmp_path: Path):
    gone = tmp_path / "moved_away.dcm"  # e.g. the folder changed after the scan
    panel = make_tag_panel()
    panel.show_file(gone)
    _wait_rows(panel, qtbot)
    assert panel.model.item(0, 1).text() == "Could not read header"
    assert "moved_away.dcm" in panel.model.item(0, 3).text()


def test_binary_and_long_values_are_summarised():
    ds = pydicom.Dataset()
    ds.add_new(0x00431028, "OB", bytes(range(40)))
    ds.ImageComments = "x" * 500
    rows: list[TagRow] = dataset_rows(ds)
    by_tag = {r.tag: r for r in rows}
    assert by_tag["(0043,1028)"].value.startswith("<40 bytes>")
    comment = by_tag["(0020,4000)"]
    assert len(comment.value) < 120 and comment.value.endswith("\u2026")
    assert len(comment.full_value) == 500
