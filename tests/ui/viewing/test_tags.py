"""The tag panel's copy commands: right-click Copy value / tag / row, and Ctrl+C on rows."""

from __future__ import annotations

import pydicom
import pytest
from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtGui import QContextMenuEvent, QGuiApplication
from PySide6.QtWidgets import QApplication

from medviewer.ui.viewing.tags import MAX_VALUE_CHARS, TagRow


@pytest.fixture
def ct_panel(make_tag_panel, qtbot, ct_file):
    """The tag panel on screen with pydicom's bundled CT header read."""
    panel = make_tag_panel()
    panel.resize(600, 500)
    panel.show()
    qtbot.waitExposed(panel)
    panel.show_file(ct_file)
    qtbot.waitUntil(lambda: panel.model.rowCount() > 0, timeout=3000)
    return panel


def right_click(panel, index) -> None:
    """What the platform sends on a right click over a row."""
    viewport = panel.view.viewport()
    pos = panel.view.visualRect(index).center()
    event = QContextMenuEvent(QContextMenuEvent.Reason.Mouse, pos, viewport.mapToGlobal(pos))
    QApplication.sendEvent(viewport, event)


def choose(panel, qtbot, text: str) -> str:
    """Pick a context-menu entry as the reader would, and return the clipboard."""
    menu = panel.context_menu
    qtbot.waitUntil(menu.isVisible)
    action = next(a for a in menu.actions() if a.text() == text)
    menu.setActiveAction(action)
    qtbot.keyClick(menu, Qt.Key.Key_Return)
    return QGuiApplication.clipboard().text()


def test_right_click_copies_value_tag_and_row(ct_panel, qtbot, ct_file):
    ds = pydicom.dcmread(ct_file, stop_before_pixels=True)
    (name,) = ct_panel.find_rows("PatientName")
    right_click(ct_panel, name)
    assert [a.text() for a in ct_panel.context_menu.actions()] == [
        "Copy value", "Copy tag", "Copy row"]
    assert choose(ct_panel, qtbot, "Copy value") == str(ds.PatientName)
    right_click(ct_panel, name)
    assert choose(ct_panel, qtbot, "Copy tag") == "(0010,0010)"
    right_click(ct_panel, name)
    row = choose(ct_panel, qtbot, "Copy row")
    assert row == f"(0010,0010)\tPatient's Name\tPN\t{ds.PatientName}"


def test_right_click_on_empty_space_offers_nothing(ct_panel):
    ct_panel.search_edit.setText("no element has this")
    viewport = ct_panel.view.viewport()
    pos = viewport.rect().center()
    QApplication.sendEvent(viewport, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, pos,
                                                       viewport.mapToGlobal(pos)))
    assert ct_panel.context_menu is None


def test_ctrl_c_copies_the_selected_rows_as_tab_separated_lines(ct_panel, qtbot, ct_file):
    ds = pydicom.dcmread(ct_file, stop_before_pixels=True)
    (name,) = ct_panel.find_rows("PatientName")
    (modality,) = ct_panel.find_rows("Modality")
    selection = ct_panel.view.selectionModel()
    flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
    selection.select(name, flags)  # selected out of order: the copy follows the tree
    selection.select(modality, flags)
    ct_panel.view.setFocus()
    qtbot.keyClick(ct_panel.view, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    lines = QGuiApplication.clipboard().text().split("\n")
    assert lines == [f"(0008,0060)\tModality\tCS\t{ds.Modality}",
                     f"(0010,0010)\tPatient's Name\tPN\t{ds.PatientName}"]


def test_copy_gives_the_whole_value_not_the_elided_one(make_tag_panel, qtbot):
    panel = make_tag_panel()
    long_text = "CT CHEST ABDOMEN PELVIS WITH CONTRAST " * 6
    panel.set_rows([TagRow("(0008,1030)", "Study Description", "LO",
                           long_text[: MAX_VALUE_CHARS - 1] + "\u2026", "StudyDescription",
                           long_text)])
    index = panel.proxy.index(0, 0)
    assert len(panel.proxy.index(0, 3).data()) == MAX_VALUE_CHARS  # elided on screen
    panel.view.setCurrentIndex(index)
    assert panel.copy_selected_rows().split("\t")[3] == long_text
    assert QGuiApplication.clipboard().text().endswith(long_text)
