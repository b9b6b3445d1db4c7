"""File ▸ PACS Servers… in the real window: add, edit, save (never a secret in the file),
remove, and Verify in a worker with the answer in words."""

from __future__ import annotations

from medviewer.pacs import servers
from tests.ui.pacs.conftest import dimse_server


def _open(win):
    win.pacs.servers_action.trigger()
    dialog = win.pacs.dialogs["servers"]
    assert dialog.isVisible()
    return dialog


def test_add_a_dimse_server_and_save_it(pacs_window, pacs_env):
    dialog = _open(pacs_window)
    assert dialog.list.count() == 0 and not dialog.form_widgets.isEnabled()
    dialog.add_button.click()
    dialog.name.setText("Orthanc")
    dialog.ae_title.setText("ORTHANC")
    dialog.host_edit.setText("127.0.0.1")
    dialog.port.setValue(4242)
    dialog.receive_port.setValue(11113)
    dialog.save_button.click()
    assert "Saved 'Orthanc'" in dialog.answer.text()
    [saved] = servers.load_servers()
    assert (saved.name, saved.kind, saved.ae_title, saved.host, saved.port,
            saved.calling_ae, saved.receive_port) == ("Orthanc", "dimse", "ORTHANC",
                                                      "127.0.0.1", 4242, "MEDVIEWER", 11113)
    assert dialog.list.item(0).text() == "Orthanc"


def test_a_server_without_host_is_refused_with_a_sentence(pacs_window, pacs_env):
    dialog = _open(pacs_window)
    dialog.add_button.click()
    dialog.ae_title.setText("ORTHANC")
    assert dialog.save() is False
    assert "needs a host" in dialog.answer.text()
    assert servers.load_servers() == []


def test_dicomweb_token_goes_to_the_secret_store_not_the_file(pacs_window, pacs_env):
    servers.save_servers([dimse_server()])
    dialog = _open(pacs_window)
    assert dialog.list.count() == 1 and dialog.ae_title.text() == "ORTHANC"
    dialog.add_button.click()
    dialog.name.setText("Cloud")
    dialog.kind.setCurrentIndex(dialog.kind.findData("dicomweb"))
    assert dialog.pages.currentIndex() == 1
    assert dialog.verify_tls.isChecked()  # on by default
    dialog.base_url.setText("https://pacs.example.org/dicom-web")
    dialog.auth.setCurrentIndex(dialog.auth.findData("bearer"))
    assert dialog.secret_label.text() == "Token" and not dialog.username.isEnabled()
    dialog.secret.setText("s3cret-token")
    assert dialog.save()
    assert "kept until MedViewer closes" in dialog.answer.text()  # no keyring here
    text = servers.servers_path().read_text()
    assert "s3cret-token" not in text
    cloud = servers.get_server("Cloud")
    assert (cloud.kind, cloud.auth, cloud.verify_tls) == ("dicomweb", "bearer", True)
    assert servers.get_secret(cloud) == "s3cret-token"
    dialog.list.setCurrentRow(0)  # back to the first: its own fields
    assert dialog.kind.currentData() == "dimse" and dialog.host_edit.text() == "127.0.0.1"
    dialog.remove_button.click()
    assert [s.name for s in servers.load_servers()] == ["Cloud"]


def test_verify_answers_in_words_from_a_worker(pacs_window, pacs_env, qtbot):
    servers.save_servers([dimse_server()])
    dialog = _open(pacs_window)
    with qtbot.waitSignal(dialog.sigVerified, timeout=5000) as blocker:
        dialog.verify_button.click()
    assert blocker.args[0] == "ORTHANC answered the echo in 2 ms."
    assert dialog.answer.text() == blocker.args[0]
    assert pacs_env.client.calls[-1][1].port == 4242  # the form's settings were verified
    pacs_env.client.fail["echo"] = "ORTHANC at 127.0.0.1:4242 refused the association."
    with qtbot.waitSignal(dialog.sigVerified, timeout=5000) as blocker:
        dialog.verify_button.click()
    assert dialog.answer.text() == "ORTHANC at 127.0.0.1:4242 refused the association."
    assert dialog.verify_button.isEnabled()


def _answer_next_question(button, asked: list[str]) -> None:
    """Click `button` in the next modal question, as the user would, noting its text."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    def click():
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox), box
        asked.append(box.text())
        box.button(button).click()

    QTimer.singleShot(0, click)


def test_closing_with_unsaved_edits_asks_and_keeps_them_until_answered(pacs_window, pacs_env):
    from PySide6.QtWidgets import QMessageBox

    servers.save_servers([dimse_server()])
    dialog = _open(pacs_window)
    dialog.host_edit.setText("10.0.0.7")
    asked: list[str] = []
    _answer_next_question(QMessageBox.StandardButton.Cancel, asked)
    dialog.close()
    assert asked == ["The settings of 'Orthanc' are not saved. Save them before closing?"]
    assert dialog.isVisible() and dialog.host_edit.text() == "10.0.0.7"  # nothing lost
    _answer_next_question(QMessageBox.StandardButton.Save, asked)
    dialog.close()
    assert len(asked) == 2 and not dialog.isVisible()
    assert servers.load_servers()[0].host == "10.0.0.7"
    # saved: closing again asks nothing
    dialog = _open(pacs_window)
    dialog.close()
    assert not dialog.isVisible() and len(asked) == 2


def test_leaving_a_new_server_unsaved_asks_and_discard_removes_it(pacs_window, pacs_env):
    from PySide6.QtWidgets import QMessageBox

    servers.save_servers([dimse_server()])
    dialog = _open(pacs_window)
    dialog.add_button.click()
    dialog.name.setText("Second")
    asked: list[str] = []
    _answer_next_question(QMessageBox.StandardButton.Discard, asked)
    dialog.list.setCurrentRow(0)
    assert asked == ["The settings of 'Second' are not saved. Save them before choosing "
                     "another server?"]
    assert [dialog.list.item(i).text() for i in range(dialog.list.count())] == ["Orthanc"]
    assert dialog.list.currentRow() == 0 and dialog.name.text() == "Orthanc"
    assert [s.name for s in servers.load_servers()] == ["Orthanc"]
    # an edited existing server: Discard brings back what is saved
    dialog.port.setValue(1111)
    _answer_next_question(QMessageBox.StandardButton.Discard, asked)
    dialog.close()
    assert not dialog.isVisible() and servers.load_servers()[0].port == 4242
    assert dialog.port.value() == 4242
