"""Annotate ▸ Send to PACS… and AI ▸ Send Results to PACS…: store DICOM SEG / SR on a server.

The Annotate command sends the saved SEG and SR of the open series (its workspace's newest,
as Annotate ▸ Save wrote them); the AI command first writes the AI's results as DICOM (in a
worker, into `<user data folder>/pacs-outbox/`): each segmentation as a SEG, detections and
class verdicts as an SR; then sends those. The send
(C-STORE or STOW-RS) runs in a worker; the dialog says what the server accepted, and a
failure keeps every local file and says why.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QVBoxLayout,
)

from medviewer.ui.common.host import Host
from medviewer.ui.pacs.common import ServerCombo, backend, error_text, have_secret, no_secret

OUTBOX = "pacs-outbox"


def annotation_files(volume: Any) -> list[Path]:
    """The saved SEG and SR of the series of `volume` (what Annotate ▸ Save wrote)."""
    from medviewer.core.annotations.workspace import Workspace

    workspace = Workspace.for_series(volume)
    return [p for p in (workspace.newest("seg"), workspace.newest("sr")) if p is not None]


def has_ai_results(output: Any) -> bool:
    """Whether the AI output holds anything write_ai_results would write."""
    return any(_sendable(r) for r in getattr(output, "results", ()) or ())


def _classifies(result: Any) -> bool:
    """A classifier's or fusion method's result: its verdicts go as SR class labels."""
    return result.task in ("classification", "fusion") and result.scores is not None


def _sendable(result: Any) -> bool:
    if result.task == "segmentation":
        return result.label_map is not None and bool(result.label_map.any())
    return bool(result.boxes) or _classifies(result) or bool(result.measurements)


def write_ai_results(output: Any, volume: Any, folder: Path) -> list[Path]:
    """The AI's results as DICOM in `folder` (no Qt: a worker's): each segmentation with
    voxels as a SEG, and its lesions (if any) as an SR of TID 1500 groups; the detections
    (boxes, as proposed by the model), measured ratios (lab 5's cardiothoracic ratio) and the
    class verdicts of each other model as an SR, like Annotate ▸ Save writes them."""
    from medviewer.core.annotations import write_seg
    from medviewer.core.annotations.boxes import (
        boxes_from_model,
        classes_from_model,
        model_source,
    )
    from medviewer.core.annotations.sr import write_sr
    from medviewer.core.annotations.sr_ratios import RatioFinding

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k, result in enumerate(output.results):
        if not _sendable(result):
            continue
        name = f"{k}-{result.model_id}".replace("/", "_")
        algorithm = (result.model_id, result.model_version)
        model = model_source(*algorithm)  # as AI > Export Results names it
        if result.task == "segmentation":
            files.append(write_seg(
                result.label_map, volume, result.labels, folder / f"{name}.seg.dcm",
                series_description=f"AI {result.title or result.model_id}",
                algorithm=algorithm, colours=result.colours,
                slices=result.slice_indices or None))
            lesions = getattr(output, "lesions", ()) if result is output.results[0] else ()
            if lesions:  # the lesions are those of the first result's map
                files.append(write_sr(folder / f"{name}.lesions.sr.dcm", volume, [],
                                      annotator="MedViewer AI", model=model,
                                      lesions=lesions))
            continue
        boxes = boxes_from_model(result.boxes, volume, source=model)
        ratios = [RatioFinding(m.name, m.value, m.slice_index, m.lines)
                  for m in result.measurements if m.unit == "ratio"]
        files.append(write_sr(folder / f"{name}.sr.dcm", volume, boxes,
                              annotator="MedViewer AI", model=model, ratios=ratios,
                              class_labels=classes_from_model(result, volume)
                              if _classifies(result) else ()))
    return files


def describe(result: Any, server_name: str, files: list[Path]) -> tuple[str, bool]:
    """(The sentence for a SendResult, whether everything was accepted)."""
    accepted, failed = len(result.accepted), list(result.failed)
    if not failed:
        return (f"'{server_name}' accepted {accepted} of {len(files)} file(s): "
                f"{', '.join(p.name for p in files)}.", True)
    why = "; ".join(f"{Path(what).name}: {reason}" for what, reason in failed[:3])
    return (f"'{server_name}' accepted {accepted} of {len(files)} file(s) and refused "
            f"{len(failed)} ({why}). The local files are kept.", False)


class SendDialog(QDialog):
    """Choose a server and send `files` (or what `prepare(ctx)` writes in a worker)."""

    sigSent = Signal(str, bool)  # the sentence shown, whether everything was accepted

    def __init__(self, host: Host, title: str, files: list[Path], *, client: Any = None,
                 servers: Any = None, prepare: Any = None, keep: Path | None = None) -> None:
        super().__init__(host.dialog_parent())
        self.host, self.files, self.prepare, self.keep = host, list(files), prepare, keep
        self.client = backend(client, "client")
        self.setWindowTitle(title)
        self.setObjectName("pacsSendDialog")
        self.resize(560, 320)
        self.servers_module = backend(servers, "servers")
        self.server = ServerCombo(self.servers_module)
        self.list = QListWidget()
        for path in self.files:  # the name, and where it is when the mouse rests on it
            self.list.addItem(f"{path.name}  \u2014  {path.parent.name}")
            self.list.item(self.list.count() - 1).setToolTip(str(path))
        if not self.files:
            self.list.addItem("(written as DICOM SEG / SR when you press Send)")
        self.send_button = QPushButton("&Send")
        self.send_button.setDefault(True)
        self.send_button.clicked.connect(lambda: self.send())
        self.send_button.setEnabled(self.server.count() > 0)
        self.status = QLabel("" if self.server.count() else
                             "No PACS server yet: add one in File \u25b8 PACS Servers\u2026")
        self.status.setObjectName("sendStatus")
        self.status.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        row = QHBoxLayout()
        row.addWidget(QLabel("Server"))
        row.addWidget(self.server, 1)
        row.addWidget(self.send_button)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Files to store on the server:"))
        layout.addWidget(self.list, 1)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(buttons)

    def send(self) -> None:
        server = self.server.server()
        if server is None:
            return
        if not have_secret(self, self.servers_module, server):
            self._say(no_secret(server), False)
            return
        self.send_button.setEnabled(False)
        self.status.setText(f"Sending to '{server.name}'\u2026")
        client, prepare, files = self.client, self.prepare, self.files

        def run(ctx: Any) -> tuple[Any, list[Path]]:
            paths = prepare(ctx) if prepare is not None else files
            if not paths:
                raise ValueError("There is nothing to send.")
            return client.send(server, [str(p) for p in paths]), paths

        self.host.pool.start(run, on_result=lambda r: self._sent(server.name, *r),
                             on_error=self._failed)

    def _sent(self, name: str, result: Any, paths: list[Path]) -> None:
        text, ok = describe(result, name, paths)
        if ok and self.keep is not None:  # the AI's SEG files were only written to be sent
            shutil.rmtree(self.keep, ignore_errors=True)
        elif self.keep is not None:
            text += f" They are in {self.keep}."
        self._say(text, ok)

    def _failed(self, exc: BaseException) -> None:
        reason = error_text(exc)
        where = f" They are in {self.keep}." if self.keep is not None and self.keep.exists() \
            else ""
        self._say(f"Nothing was sent: {reason} The local files are kept.{where}", False)

    def _say(self, text: str, ok: bool) -> None:
        self.send_button.setEnabled(True)
        self.status.setText(text)
        self.host.set_status(text)
        self.sigSent.emit(text, ok)
