"""File ▸ PACS Servers…: the DIMSE peers and DICOMweb endpoints MedViewer talks to.

A list of servers on the left, the chosen one's fields on the right (those of its kind only),
and Verify (C-ECHO or a QIDO probe, in a worker) with the answer in words. Save writes the
list through `servers.save_servers` (no secret in it): a password or token goes to
`servers.set_secret` (the OS keyring when there is one, else memory for this run only).
Below, "MedViewer's receiver": whether a PACS may push studies to this window, as which AE
title on which port (the window's settings; Apply saves and restarts it).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from medviewer.ui.common.host import Host
from medviewer.ui.pacs.common import backend, error_text, have_secret, no_secret

KINDS = (("dimse", "DICOM network (DIMSE)"), ("dicomweb", "DICOMweb"))
AUTHS = (("none", "None"), ("basic", "Basic (user name and password)"),
         ("bearer", "Bearer token"))


def _port(value: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(1, 65535)
    box.setValue(value)
    return box


class ServersDialog(QDialog):
    """Add, edit, remove and verify servers; `sigSaved` after the list is written."""

    sigSaved = Signal()
    sigVerified = Signal(str)  # the sentence shown (success or why not)

    def __init__(self, host: Host, *, client: Any = None, servers: Any = None,
                 receiver: Any = None) -> None:
        super().__init__(host.dialog_parent())
        self.host = host
        self.client = backend(client, "client")
        self.servers_module = backend(servers, "servers")
        self.setWindowTitle("PACS Servers")
        self.setObjectName("pacsServersDialog")
        self.resize(720, 460)
        self.servers: list[Any] = list(self.servers_module.load_servers())
        self._verifying = None
        self._row = -1  # the row the form shows (the list's current row may be moving on)
        self.receiver_service = receiver  # ui.pacs.receiving.ReceiverService, or None
        self._build()
        self._fill_list()

    # ----------------------------------------------------------------- construction
    def _build(self) -> None:
        self.list = QListWidget()
        self.list.currentRowChanged.connect(self._show_row)
        self.add_button = QPushButton("&Add")
        self.remove_button = QPushButton("&Remove")
        self.add_button.clicked.connect(lambda: self.add_server())
        self.remove_button.clicked.connect(lambda: self.remove_server())
        left = QVBoxLayout()
        left.addWidget(self.list)
        row = QHBoxLayout()
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        left.addLayout(row)

        self.name = QLineEdit()
        self.kind = QComboBox()
        for key, label in KINDS:
            self.kind.addItem(label, key)
        self.kind.currentIndexChanged.connect(lambda i: self.pages.setCurrentIndex(i))
        top = QFormLayout()
        top.addRow("Name", self.name)
        top.addRow("Kind", self.kind)

        dimse = QWidget()
        form = QFormLayout(dimse)
        self.ae_title, self.host_edit = QLineEdit(), QLineEdit()
        self.port, self.receive_port = _port(104), _port(11112)
        self.calling_ae = QLineEdit("MEDVIEWER")
        for widget, tip in ((self.ae_title, "The server's AE title, e.g. ORTHANC"),
                            (self.calling_ae, "MedViewer's own AE title, as the server "
                             "knows it (C-MOVE sends to it)")):
            widget.setMaxLength(16)
            widget.setToolTip(tip)
        form.addRow("Server AE title", self.ae_title)
        form.addRow("Host", self.host_edit)
        form.addRow("Port", self.port)
        form.addRow("MedViewer's AE title", self.calling_ae)
        form.addRow("MedViewer's receive port", self.receive_port)

        web = QWidget()
        form = QFormLayout(web)
        self.base_url = QLineEdit()
        self.base_url.setPlaceholderText("https://pacs.example.org/dicom-web")
        self.qido_path, self.wado_path, self.stow_path = QLineEdit(), QLineEdit(), QLineEdit()
        for widget in (self.qido_path, self.wado_path, self.stow_path):
            widget.setPlaceholderText("(the base URL)")
        self.auth = QComboBox()
        for key, label in AUTHS:
            self.auth.addItem(label, key)
        self.auth.currentIndexChanged.connect(lambda _i: self._sync_auth())
        self.username = QLineEdit()
        self.secret = QLineEdit()
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.secret.setPlaceholderText("unchanged")
        self.secret.setToolTip("Kept in the system keyring (or for this run only), never in "
                               "the settings file")
        self.verify_tls = QCheckBox("Verify the server's TLS certificate")
        self.verify_tls.setChecked(True)
        form.addRow("Base URL", self.base_url)
        form.addRow("QIDO-RS path", self.qido_path)
        form.addRow("WADO-RS path", self.wado_path)
        form.addRow("STOW-RS path", self.stow_path)
        form.addRow("Authentication", self.auth)
        form.addRow("User name", self.username)
        self.secret_label = QLabel("Password")
        form.addRow(self.secret_label, self.secret)
        form.addRow("", self.verify_tls)

        self.pages = QStackedWidget()
        self.pages.addWidget(dimse)
        self.pages.addWidget(web)
        self.verify_button = QPushButton("&Verify")
        self.verify_button.setToolTip("C-ECHO (DIMSE) or a QIDO-RS query (DICOMweb) with "
                                      "these settings")
        self.verify_button.clicked.connect(lambda: self.verify())
        self.save_button = QPushButton("&Save")
        self.save_button.clicked.connect(lambda: self.save())
        self.answer = QLabel()
        self.answer.setObjectName("verifyAnswer")
        self.answer.setWordWrap(True)
        self.answer.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        actions = QHBoxLayout()
        actions.addWidget(self.verify_button)
        actions.addWidget(self.save_button)
        actions.addStretch(1)
        right = QVBoxLayout()
        right.addLayout(top)
        right.addWidget(self.pages)
        right.addLayout(actions)
        right.addWidget(self.answer)
        right.addStretch(1)
        self.form_widgets = QWidget()
        self.form_widgets.setLayout(right)
        body = QHBoxLayout()
        body.addLayout(left, 1)
        body.addWidget(self.form_widgets, 2)
        outer = QVBoxLayout(self)
        outer.addLayout(body)
        if self.receiver_service is not None:
            outer.addWidget(self._receiver_box())
        outer.addWidget(buttons)
        self._sync_auth()

    def _receiver_box(self) -> QGroupBox:
        service = self.receiver_service
        enabled, ae_title, port = service.settings()
        box = QGroupBox("MedViewer's receiver")
        self.receiver_enabled = QCheckBox("Accept studies a PACS sends (C-STORE)")
        self.receiver_enabled.setChecked(enabled)
        self.receiver_ae = QLineEdit(ae_title)
        self.receiver_ae.setMaxLength(16)
        self.receiver_ae.setToolTip("The AE title the PACS sends to (it must know it)")
        self.receiver_port = _port(port)
        self.receiver_apply = QPushButton("Apply")
        self.receiver_apply.setToolTip("Save these settings and start or stop the receiver")
        self.receiver_apply.clicked.connect(lambda: self.apply_receiver())
        self.receiver_state = QLabel(service.state)
        self.receiver_state.setObjectName("receiverState")
        self.receiver_state.setWordWrap(True)
        service.sigChanged.connect(self.receiver_state.setText)
        row = QHBoxLayout()
        row.addWidget(self.receiver_enabled)
        row.addWidget(QLabel("AE title"))
        row.addWidget(self.receiver_ae)
        row.addWidget(QLabel("Port"))
        row.addWidget(self.receiver_port)
        row.addWidget(self.receiver_apply)
        layout = QVBoxLayout(box)
        layout.addLayout(row)
        layout.addWidget(self.receiver_state)
        return box

    def apply_receiver(self) -> str:
        """Save the receiver's settings and start or stop it; the sentence shown."""
        return self.receiver_service.apply(self.receiver_enabled.isChecked(),
                                           self.receiver_ae.text(), self.receiver_port.value())

    def _sync_auth(self) -> None:
        auth = self.auth.currentData()
        self.username.setEnabled(auth == "basic")
        self.secret.setEnabled(auth != "none")
        self.secret_label.setText("Token" if auth == "bearer" else "Password")

    def _fill_list(self, row: int = 0) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        self.list.addItems([s.name for s in self.servers])
        self.list.blockSignals(False)
        self.list.setCurrentRow(min(row, len(self.servers) - 1))
        self._show_row(self.list.currentRow())

    # ----------------------------------------------------------------- the form
    def _select(self, row: int) -> None:
        self.list.blockSignals(True)
        self.list.setCurrentRow(row)
        self.list.blockSignals(False)

    def _show_row(self, row: int) -> None:
        if row != self._row:
            target = self.servers[row] if 0 <= row < len(self.servers) else None
            if not self._settle("choosing another server"):
                self._select(self._row)  # stay on the server being edited
                return
            if target is not None:  # a discarded new server above it moves it up
                row = next(i for i, s in enumerate(self.servers) if s is target)
            if self.list.currentRow() != row:
                self._select(row)
        self._row = row
        self.answer.clear()
        has = 0 <= row < len(self.servers)
        self.form_widgets.setEnabled(has)
        self.remove_button.setEnabled(has)
        if has:
            self.set_form(self.servers[row])

    def set_form(self, s: Any) -> None:
        self.name.setText(s.name)
        self.kind.setCurrentIndex(max(0, self.kind.findData(s.kind)))
        self.ae_title.setText(s.ae_title)
        self.host_edit.setText(s.host)
        self.port.setValue(int(s.port))
        self.calling_ae.setText(s.calling_ae)
        self.receive_port.setValue(int(s.receive_port))
        self.base_url.setText(s.base_url)
        self.qido_path.setText(s.qido_path)
        self.wado_path.setText(s.wado_path)
        self.stow_path.setText(s.stow_path)
        self.auth.setCurrentIndex(max(0, self.auth.findData(s.auth)))
        self.username.setText(s.username)
        self.secret.clear()
        self.verify_tls.setChecked(bool(s.verify_tls))

    def form_server(self) -> Any:
        """The Server the form describes (not saved yet)."""
        return self.servers_module.Server(
            name=self.name.text().strip(), kind=self.kind.currentData(),
            ae_title=self.ae_title.text().strip(), host=self.host_edit.text().strip(),
            port=self.port.value(), calling_ae=self.calling_ae.text().strip(),
            receive_port=self.receive_port.value(), base_url=self.base_url.text().strip(),
            qido_path=self.qido_path.text().strip(), wado_path=self.wado_path.text().strip(),
            stow_path=self.stow_path.text().strip(), auth=self.auth.currentData(),
            username=self.username.text().strip(), verify_tls=self.verify_tls.isChecked())

    def unsaved(self) -> str:
        """The name of the server whose edits are not saved yet ("" when none): the form
        differs from it, a password was typed, or it was added and never saved."""
        row = self._row
        if not 0 <= row < len(self.servers):
            return ""
        stored = self.servers[row]
        on_disk = any(s == stored for s in self._on_disk())
        if self.form_server() != stored or self.secret.text() or not on_disk:
            return self.form_server().name or stored.name
        return ""

    def _on_disk(self) -> list[Any]:
        try:
            return list(self.servers_module.load_servers())
        except Exception:  # noqa: BLE001 - an unreadable list: every server counts as unsaved
            return []

    def _settle(self, doing: str) -> bool:
        """Before the form is left: ask whether to save unsaved edits. False: stay."""
        name = self.unsaved()
        if not name:
            return True
        buttons = QMessageBox.StandardButton
        answer = QMessageBox.question(
            self, "Unsaved server settings",
            f"The settings of '{name}' are not saved. Save them before {doing}?",
            buttons.Save | buttons.Discard | buttons.Cancel, buttons.Save)
        if answer == buttons.Save:
            return self.save()  # a refused form (no host...) stays open with its sentence
        if answer == buttons.Discard:
            self._discard()
            return True
        return False

    def _discard(self) -> None:
        """Forget the form's edits; a server added and never saved goes away."""
        row = self._row
        if not any(s == self.servers[row] for s in self._on_disk()):
            del self.servers[row]
            self._select(-1)
            self.list.blockSignals(True)
            self.list.takeItem(row)
            self.list.blockSignals(False)
            self._row = -1
        else:
            self.set_form(self.servers[row])

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        if self._settle("closing"):
            event.accept()
        else:
            event.ignore()

    def reject(self) -> None:  # Esc: the same question as the Close button
        self.close()

    def _problem(self, server: Any) -> str:
        """What keeps the form from being saved or verified ("" when nothing)."""
        others = [s.name for i, s in enumerate(self.servers) if i != self._row]
        if server.name in others:
            return f"There is already a server called '{server.name}': choose another name."
        return server.problem() or ""

    def _store_secret(self, server: Any) -> str:
        """The typed password or token to the keyring (never the settings): what became of it."""
        if server.auth == "none" or not self.secret.text():
            return ""
        if self.servers_module.set_secret(server, self.secret.text()):
            return " The password is in the system keyring."
        return " No system keyring: the password is kept until MedViewer closes."

    # ----------------------------------------------------------------- commands
    def add_server(self) -> None:
        if not self._settle("adding a server"):
            return
        names = {s.name for s in self.servers}
        name = next(n for n in (f"PACS {k}" for k in range(1, len(names) + 2)) if n not in names)
        self.servers.append(self.servers_module.Server(name=name))
        self._fill_list(len(self.servers) - 1)
        self.name.setFocus()
        self.name.selectAll()

    def remove_server(self) -> None:
        row = self.list.currentRow()
        if 0 <= row < len(self.servers):
            del self.servers[row]
            self._row = -1  # nothing left to ask about: it is gone
            self._write(f"Removed; {len(self.servers)} server(s) left.")
            self._fill_list(row)

    def save(self) -> bool:
        """The form into the chosen server, the list to the settings, the secret aside."""
        row = self._row
        if not 0 <= row < len(self.servers):
            return False
        server = self.form_server()
        problem = self._problem(server)
        if problem:
            self.answer.setText(problem)
            return False
        self.servers[row] = server
        kept = self._store_secret(server)
        if not self._write(f"Saved '{server.name}'.{kept}"):
            return False
        self.secret.clear()  # in the keyring (or this run's memory) now, not in the form
        self.list.item(row).setText(server.name)
        return True

    def _write(self, done: str) -> bool:
        try:
            self.servers_module.save_servers(self.servers)
        except Exception as exc:  # PacsError or a disk error: a sentence, never a crash
            self.answer.setText(f"Could not save the servers: {error_text(exc)}")
            return False
        self.answer.setText(done)
        self.host.set_status(done)
        self.sigSaved.emit()
        return True

    def verify(self) -> None:
        """C-ECHO or a QIDO probe with the form's settings, in a worker."""
        server = self.form_server()
        problem = self._problem(server)
        if problem:
            self._verified(problem)
            return
        self._store_secret(server)
        if not have_secret(self, self.servers_module, server):
            self._verified(no_secret(server))
            return
        self.verify_button.setEnabled(False)
        self.answer.setText(f"Verifying '{server.name}'\u2026")
        echo = self.client.echo
        self._verifying = self.host.pool.start(
            lambda _ctx: echo(server),
            on_result=lambda text: self._verified(str(text)),
            on_error=lambda exc: self._verified(error_text(exc)))

    def _verified(self, text: str) -> None:
        self.verify_button.setEnabled(True)
        self.answer.setText(text)
        self.sigVerified.emit(text)

