"""File ▸ Query/Retrieve…: search a PACS for studies, expand them to series, retrieve.

Search (C-FIND or QIDO-RS) and each study's series run in workers; Retrieve fetches the
selected studies or series one after another in one worker (C-GET, C-MOVE or WADO-RS) into
the local store, with each row's progress; Cancel stops it, keeping only whole instances.
Each finished row's study folder is opened in the window (the study browser lists it), and
retrieving again fetches only what is missing.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QDate, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
)

from medviewer.ui.common.host import Host
from medviewer.ui.pacs.common import ServerCombo, backend, error_text, have_secret, no_secret
from medviewer.ui.pacs.retrieve import retrieve_rows

METHODS = (("get", "C-GET"), ("move", "C-MOVE"), ("wado", "WADO-RS"))
MODALITIES = ("", "CT", "MR", "CR", "DX", "US", "PT", "NM", "MG", "XA", "SEG", "SR")
COLUMNS = ("Patient / Series", "Patient ID", "Date", "Accession", "Modality", "Description",
           "Images", "Retrieve")
PROGRESS_COLUMN = len(COLUMNS) - 1
HIT = Qt.ItemDataRole.UserRole


def _count(value: int | None) -> str:
    return "" if value is None else str(value)


def _date(text: str) -> str:
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else text


def _plural(n: int, word: str, words: str = "") -> str:
    return f"{n} {word if n == 1 else words or word + 's'}"


class QueryDialog(QDialog):
    """Search, browse and retrieve; `sigSearched`, `sigRetrieved` for tests and callers."""

    sigSearched = Signal(object)  # list of StudyHit, or the error sentence (str)
    sigSeriesListed = Signal(object)  # the study item whose series were listed
    sigRetrieved = Signal(str)  # the closing sentence of a retrieve (done, failed, cancelled)

    def __init__(self, host: Host, *, client: Any = None, servers: Any = None,
                 store: Any = None, receiver: Any = None, opened: list[str] | None = None,
                 ) -> None:
        super().__init__(host.dialog_parent())
        self.host = host
        self.client = backend(client, "client")
        self.servers_module = backend(servers, "servers")
        self._store = store
        self.receiver = receiver  # () -> the window's running Receiver or None (C-MOVE uses it)
        self.worker: Any = None  # the running retrieve
        # PACS study folders listed in the window (shared with the receiver: each adds its own)
        self.opened: list[str] = opened if opened is not None else []
        self.outcome = {"done": 0, "failed": 0}  # rows of the running retrieve
        self.select_when_done = False  # open the first whole row's series on screen
        self.setWindowTitle("Query / Retrieve")
        self.setObjectName("pacsQueryDialog")
        self.resize(980, 600)
        self._build()

    @property
    def store(self) -> Any:
        if self._store is None:
            from medviewer.pacs.store import LocalStore

            self._store = LocalStore()
        return self._store

    # ----------------------------------------------------------------- construction
    def _build(self) -> None:
        self.server = ServerCombo(self.servers_module)
        self.server.currentIndexChanged.connect(lambda _i: self._server_changed())
        self.method = QComboBox()
        for key, label in METHODS:
            self.method.addItem(label, key)
        self.method.setToolTip("C-GET: fetched on this connection (preferred); C-MOVE: the "
                               "PACS sends to MedViewer's receiver; WADO-RS: DICOMweb")
        top = QHBoxLayout()
        top.addWidget(QLabel("Server"))
        top.addWidget(self.server, 1)
        top.addWidget(QLabel("Retrieve with"))
        top.addWidget(self.method)

        self.patient_name, self.patient_id, self.accession = QLineEdit(), QLineEdit(), QLineEdit()
        self.patient_name.setPlaceholderText("e.g. DOE^J*  (* and ? are wildcards)")
        self.modality = QComboBox()
        self.modality.setEditable(True)
        self.modality.addItems(MODALITIES)
        self.use_dates = QCheckBox("Study date from")
        self.date_from, self.date_to = QDateEdit(), QDateEdit()
        today = QDate.currentDate()
        self.date_from.setDate(today.addYears(-1))
        self.date_to.setDate(today)
        for edit in (self.date_from, self.date_to):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
            edit.setEnabled(False)
        self.use_dates.toggled.connect(self.date_from.setEnabled)
        self.use_dates.toggled.connect(self.date_to.setEnabled)
        for edit in (self.patient_name, self.patient_id, self.accession):
            edit.returnPressed.connect(self.search)
        self.search_button = QPushButton("&Search")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(lambda: self.search())
        grid = QGridLayout()
        grid.addWidget(QLabel("Patient name"), 0, 0)
        grid.addWidget(self.patient_name, 0, 1)
        grid.addWidget(QLabel("Patient ID"), 0, 2)
        grid.addWidget(self.patient_id, 0, 3)
        grid.addWidget(QLabel("Accession"), 0, 4)
        grid.addWidget(self.accession, 0, 5)
        grid.addWidget(QLabel("Modality"), 1, 0)
        grid.addWidget(self.modality, 1, 1)
        grid.addWidget(self.use_dates, 1, 2)
        grid.addWidget(self.date_from, 1, 3)
        grid.addWidget(QLabel("to"), 1, 4, Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.date_to, 1, 5)
        grid.addWidget(self.search_button, 0, 6, 2, 1)

        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setAlternatingRowColors(True)
        self.tree.itemExpanded.connect(self._expanded)
        self.tree.itemSelectionChanged.connect(self._sync_buttons)
        self.tree.setColumnWidth(0, 220)

        self.retrieve_button = QPushButton("&Retrieve")
        self.retrieve_button.setToolTip("Fetch the selected studies or series into the local "
                                        "store and open them; again: only what is missing")
        self.retrieve_button.clicked.connect(lambda: self.retrieve())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(lambda: self.cancel())
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("Choose a server and search.")
        self.status.setObjectName("queryStatus")
        self.status.setWordWrap(True)
        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.progress)
        bottom.addWidget(self.retrieve_button)
        bottom.addWidget(self.cancel_button)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(grid)
        layout.addWidget(self.tree, 1)
        layout.addLayout(bottom)
        self._default_method()
        self._sync_buttons()
        if self.server.count() == 0:
            self.status.setText("No PACS server yet: add one in File \u25b8 PACS Servers\u2026")

    def _server_changed(self) -> None:
        """Results belong to the server that found them: another server starts afresh."""
        self.tree.clear()
        self._default_method()
        self._sync_buttons()

    def _default_method(self) -> None:
        server = self.server.server()
        if server is not None:  # DICOMweb: WADO-RS only; DIMSE: C-GET or C-MOVE
            web = server.kind == "dicomweb"
            for k, (key, _label) in enumerate(METHODS):
                self.method.model().item(k).setEnabled((key == "wado") == web)
            self.method.setCurrentIndex(self.method.findData("wado" if web else "get"))

    def _sync_buttons(self) -> None:
        running = self.worker is not None
        self.retrieve_button.setEnabled(not running and bool(self.tree.selectedItems()))
        self.cancel_button.setEnabled(running)
        self.search_button.setEnabled(not running and self.server.server() is not None)
        self.server.setEnabled(not running)
        self.method.setEnabled(not running)

    def reload_servers(self) -> None:
        self.server.reload()
        self._sync_buttons()

    # ----------------------------------------------------------------- search
    def query(self) -> dict[str, Any]:
        """The find_studies keywords the fields ask for."""
        dates: dict[str, Any] = {"date_from": None, "date_to": None}
        if self.use_dates.isChecked():
            dates = {"date_from": self.date_from.date().toPython(),
                     "date_to": self.date_to.date().toPython()}
        return {"patient_name": self.patient_name.text().strip(),
                "patient_id": self.patient_id.text().strip(),
                "accession": self.accession.text().strip(),
                "modality": self.modality.currentText().strip().upper(), **dates}

    def search(self) -> None:
        server = self.server.server()
        if server is None:
            return
        if not have_secret(self, self.servers_module, server):
            self.status.setText(no_secret(server))
            return
        query = self.query()
        self.search_button.setEnabled(False)
        self.status.setText(f"Searching '{server.name}'\u2026")
        find = self.client.find_studies
        self.host.pool.start(lambda _ctx: find(server, **query),
                             on_result=self._show_studies, on_error=self._search_failed)

    def _show_studies(self, hits: list[Any]) -> None:
        self._sync_buttons()
        self.tree.clear()
        for hit in hits:
            item = QTreeWidgetItem([
                hit.patient_name.replace("^", " ").strip() or "(no name)", hit.patient_id,
                _date(hit.study_date), hit.accession, "/".join(hit.modalities),
                hit.description, _count(hit.instance_count), ""])
            item.setData(0, HIT, ("study", hit, None))
            item.setToolTip(0, hit.study_uid)
            item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator)
            self.tree.addTopLevelItem(item)
        self.status.setText(f"{_plural(len(hits), 'study', 'studies')} found." if hits else
                            "No study matches; * and ? are wildcards in the patient name.")
        self.sigSearched.emit(hits)

    def _search_failed(self, exc: BaseException) -> None:
        self._sync_buttons()
        self.status.setText(error_text(exc))
        self.sigSearched.emit(error_text(exc))

    # ----------------------------------------------------------------- series
    def _expanded(self, item: QTreeWidgetItem) -> None:
        kind, study, _series = item.data(0, HIT)
        if kind != "study" or item.data(1, HIT):  # listed already, or being listed
            return
        item.setData(1, HIT, True)
        server = self.server.server()
        loading = QTreeWidgetItem(["Listing series\u2026"])
        loading.setFlags(Qt.ItemFlag.NoItemFlags)
        item.addChild(loading)
        find = self.client.find_series
        self.host.pool.start(lambda _ctx: find(server, study.study_uid),
                             on_result=lambda hits: self._show_series(item, hits),
                             on_error=lambda exc: self._series_failed(item, exc))

    def _show_series(self, item: QTreeWidgetItem, hits: list[Any]) -> None:
        if not _alive(item):  # a new search replaced the rows meanwhile
            return
        item.takeChildren()
        study = item.data(0, HIT)[1]
        for hit in sorted(hits, key=lambda h: (h.number is None, h.number or 0)):
            number = "" if hit.number is None else f"#{hit.number} "
            child = QTreeWidgetItem([f"{number}{hit.description}".strip() or hit.series_uid,
                                     "", "", "", hit.modality, hit.description,
                                     _count(hit.instance_count), ""])
            child.setData(0, HIT, ("series", study, hit))
            child.setToolTip(0, hit.series_uid)
            item.addChild(child)
        if not hits:
            item.addChild(QTreeWidgetItem(["(no series)"]))
        self.sigSeriesListed.emit(item)

    def _series_failed(self, item: QTreeWidgetItem, exc: BaseException) -> None:
        if not _alive(item):
            return
        item.takeChildren()
        item.setData(1, HIT, False)  # expanding again tries again
        item.setExpanded(False)
        self.status.setText(error_text(exc))
        self.sigSeriesListed.emit(item)

    # ----------------------------------------------------------------- retrieve
    def targets(self) -> list[QTreeWidgetItem]:
        """The selected rows to fetch; a series whose study is selected too goes with it."""
        chosen = [i for i in self.tree.selectedItems() if i.data(0, HIT)]
        return [i for i in chosen if not (i.parent() is not None and i.parent() in chosen)]

    def retrieve(self) -> None:
        server, items = self.server.server(), self.targets()
        if server is None or not items or self.worker is not None:
            return
        if not have_secret(self, self.servers_module, server):
            self.status.setText(no_secret(server))
            return
        method, store, client = self.method.currentData(), self.store, self.client
        receiver = self.receiver() if self.receiver is not None and method == "move" else None
        jobs = [(study.study_uid, series.series_uid if series is not None else None)
                for _kind, study, series in (i.data(0, HIT) for i in items)]
        for item in items:
            item.setText(PROGRESS_COLUMN, "waiting")

        def run(ctx: Any) -> None:
            retrieve_rows(ctx, client, server, jobs, method=method, store=store,
                          receiver=receiver)

        self.outcome = {"done": 0, "failed": 0}
        self.select_when_done = self.host.scan_result is None  # the window shows nothing yet
        self.progress.setRange(0, len(jobs))
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.status.setText(f"Retrieving {_plural(len(jobs), 'item')} with "
                            f"{self.method.currentText()} from '{server.name}'\u2026")
        self.worker = self.host.pool.start(
            run, on_partial=lambda event: self._retrieve_event(items, event),
            on_result=lambda _r: self._retrieve_over(None),
            on_error=lambda exc: self._retrieve_over(error_text(exc)),
            on_cancelled=lambda: self._retrieve_over("cancelled"))
        self._sync_buttons()

    def _retrieve_event(self, items: list[QTreeWidgetItem], event: tuple) -> None:
        what, k, value = event
        item = items[k]
        if what == "start":
            item.setText(PROGRESS_COLUMN, "starting\u2026")
        elif what == "series":  # a whole study: its series, each with its own progress
            if item.data(1, HIT) is not True or not _series_rows(item):
                item.setData(1, HIT, True)
                self._show_series(item, value)
        elif what == "progress":
            series_uid, done, total = value
            text = f"{done} / {total}" if total else f"{done}"
            row = _series_rows(item).get(series_uid)
            if row is not None:
                row.setText(PROGRESS_COLUMN, text)
                text = f"{row.text(0)}: {text}"
            item.setText(PROGRESS_COLUMN, text)
            study_uid = item.data(0, HIT)[1].study_uid
            if done and str(self.store.study_folder(study_uid)) not in self.opened:
                self._open(study_uid, select=False)  # listed from its first instance on
        elif what == "retry":  # a transient failure: this series is tried again
            series_uid, attempt, retries, why = value
            text = f"retry {attempt} of {retries}"
            for row in (_series_rows(item).get(series_uid), item):
                if row is not None:
                    row.setText(PROGRESS_COLUMN, text)
                    row.setToolTip(PROGRESS_COLUMN, why)
        elif what == "series_done":
            series_uid, outcome = value
            row = _series_rows(item).get(series_uid)
            if row is not None:
                _show_outcome(row, outcome)
        elif what == "failed":
            self.outcome["failed"] += 1
            _show_outcome(item, value)
            self.status.setText(value)
            self.progress.setValue(k + 1)
        elif what == "done":
            self.outcome["done"] += 1
            _show_outcome(item, value)
            self.progress.setValue(k + 1)
            self._open(item.data(0, HIT)[1].study_uid)

    def _open(self, study_uid: str, select: bool = True) -> None:
        """Show the retrieved studies in the window's browser (each retrieve adds its own);
        `select`: a whole row has arrived, so its largest series may open on screen when the
        window showed nothing before this retrieve."""
        folder = str(self.store.study_folder(study_uid))
        if folder not in self.opened:
            self.opened.append(folder)
        paths = self.opened[0] if len(self.opened) == 1 else list(self.opened)
        self.host.open_path(paths, auto_select=select and self.select_when_done)
        if select:
            self.select_when_done = False

    def _retrieve_over(self, problem: str | None) -> None:
        self.worker = None
        self.progress.setVisible(False)
        done, failed = self.outcome["done"], self.outcome["failed"]
        if problem == "cancelled":
            text = ("Retrieve cancelled: what had fully arrived is kept; Retrieve again "
                    "fetches only what is missing.")
        elif problem:
            text = problem
        elif failed:
            text = (f"{_plural(done, 'item')} retrieved, {failed} failed (hover over "
                    "'failed' for why); Retrieve again fetches only what is missing.")
        else:
            text = f"{_plural(done, 'item')} retrieved into the local store and opened."
        self.status.setText(text)
        self.host.set_status(text)
        self._sync_buttons()
        self.sigRetrieved.emit(text)

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.status.setText("Cancelling\u2026")

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        self.cancel()  # a retrieve does not go on behind a closed dialog
        super().closeEvent(event)



def _series_rows(item: QTreeWidgetItem) -> dict[str, QTreeWidgetItem]:
    """A study row's listed series rows by series UID."""
    rows = (item.child(i) for i in range(item.childCount()))
    return {row.data(0, HIT)[2].series_uid: row for row in rows if row.data(0, HIT)}


def _show_outcome(row: QTreeWidgetItem, outcome: Any) -> None:
    """A row's Retrieve column: what came (a RetrieveResult) or why not (a sentence)."""
    if isinstance(outcome, str):
        row.setText(PROGRESS_COLUMN, "failed")
        row.setToolTip(PROGRESS_COLUMN, outcome)
        return
    row.setToolTip(PROGRESS_COLUMN, "")  # e.g. the reason of a retry that then worked
    text = f"{len(outcome.stored)} new"
    if outcome.skipped:
        text += f", {outcome.skipped} already here"
    if outcome.failed:
        text += f", {len(outcome.failed)} failed"
        row.setToolTip(PROGRESS_COLUMN, "; ".join(outcome.failed[:5]))
    row.setText(PROGRESS_COLUMN, text)


def _alive(item: QTreeWidgetItem) -> bool:
    try:
        item.text(0)
    except RuntimeError:  # "Internal C++ object already deleted" (the tree was cleared)
        return False
    return True
