"""Retries of a retrieve (issue 14 item 2): a series that fails on a transient error (a
dropped connection, a timeout: PacsTransient) is tried again, fetching only what is missing,
and its row says "retry 1 of 2"; a permanent error (refused, unknown study) is not retried.
The worker (ui/pacs/retrieve.py, no Qt) with a fake context, then the dialog in a window."""

from __future__ import annotations

import pytest

from medviewer.pacs import servers
from medviewer.pacs.errors import PacsCancelled, PacsError, PacsTransient
from medviewer.ui.pacs import retrieve
from tests.ui.pacs.conftest import dimse_server

DROPPED = "The PACS ORTHANC at 127.0.0.1:4242 stopped answering during the retrieve."
REFUSED = "The PACS ORTHANC at 127.0.0.1:4242 is not called 'ORTHANX'."


class Ctx:
    """The worker's context: events collected; cancelled once an event `cancel_on` came."""

    def __init__(self, cancel_on: str = "") -> None:
        self.events: list[tuple] = []
        self.cancel_on = cancel_on

    def partial(self, event: tuple) -> None:
        self.events.append(event)

    def is_cancelled(self) -> bool:
        return bool(self.cancel_on) and any(e[0] == self.cancel_on for e in self.events)


@pytest.fixture(autouse=True)
def short_pause(monkeypatch):
    monkeypatch.setattr(retrieve, "RETRY_PAUSE", 0.05)


def _run(pacs_env, ctx, series_uid):
    client = pacs_env.client
    retrieve.retrieve_rows(ctx, client, dimse_server(), [(client.study.study_uid, series_uid)],
                           method="get", store=pacs_env.store)
    return [e for e in ctx.events if e[0] != "progress"]


def test_a_transient_failure_is_retried_and_fetches_only_what_is_missing(pacs_env):
    client = pacs_env.client
    client.breaks = [(5, PacsTransient(DROPPED)), (3, PacsTransient(DROPPED))]
    events = _run(pacs_env, Ctx(), client.series.series_uid)
    uid = client.series.series_uid
    assert [e for e in events if e[0] == "retry"] == [("retry", 0, (uid, 1, 2, DROPPED)),
                                                     ("retry", 0, (uid, 2, 2, DROPPED))]
    done = events[-1]
    assert done[0] == "done"
    assert (len(done[2].stored), done[2].skipped) == (12, 8)  # 5 + 3 came before the drops
    assert len([c for c in client.calls if c[0] == "retrieve"]) == 3
    assert len(list(pacs_env.store.study_folder(client.study.study_uid).glob("*/*.dcm"))) == 20


def test_a_transient_failure_that_stays_fails_the_row_after_the_retries(pacs_env):
    client = pacs_env.client
    client.breaks = [(1, PacsTransient(DROPPED))] * 3
    events = _run(pacs_env, Ctx(), None)  # a whole study, series by series
    assert [e[2][1] for e in events if e[0] == "retry"] == [1, 2]
    assert ("series_done", 0, (client.series.series_uid, DROPPED)) in events
    assert events[-1] == ("failed", 0, DROPPED)
    # one instance came before each drop, and whole ones are kept for the next Retrieve
    assert len(list(pacs_env.store.study_folder(client.study.study_uid).glob("*/*.dcm"))) == 3
    assert len([c for c in client.calls if c[0] == "retrieve"]) == 3


def test_a_permanent_failure_is_not_retried(pacs_env):
    client = pacs_env.client
    client.breaks = [(0, PacsError(REFUSED))]
    events = _run(pacs_env, Ctx(), client.series.series_uid)
    assert events == [("start", 0, None), ("failed", 0, REFUSED)]
    assert len([c for c in client.calls if c[0] == "retrieve"]) == 1


def test_cancel_during_the_pause_stops_without_retrying(pacs_env, monkeypatch):
    monkeypatch.setattr(retrieve, "RETRY_PAUSE", 30.0)  # a cancel ends the wait at once
    client = pacs_env.client
    client.breaks = [(2, PacsTransient(DROPPED))]
    with pytest.raises(PacsCancelled):
        _run(pacs_env, Ctx(cancel_on="retry"), client.series.series_uid)
    assert len([c for c in client.calls if c[0] == "retrieve"]) == 1


def test_the_row_says_retry_1_of_2_then_what_came(pacs_window, pacs_env, qtbot, monkeypatch):
    monkeypatch.setattr(retrieve, "RETRY_PAUSE", 0.5)  # long enough to see the row say it
    client = pacs_env.client
    client.breaks = [(4, PacsTransient(DROPPED))]
    servers.save_servers([dimse_server()])
    pacs_window.pacs.query_action.trigger()
    dialog = pacs_window.pacs.dialogs["query"]
    with qtbot.waitSignal(dialog.sigSearched, timeout=5000):
        dialog.search_button.click()
    study = dialog.tree.topLevelItem(0)
    study.setSelected(True)
    with qtbot.waitSignal(dialog.sigRetrieved, timeout=10_000) as blocker:
        dialog.retrieve_button.click()
        qtbot.waitUntil(lambda: study.childCount() == 1
                        and study.child(0).text(7) == "retry 1 of 2", timeout=5000)
        assert study.text(7) == "retry 1 of 2"
        assert study.child(0).toolTip(7) == DROPPED
    assert blocker.args[0] == "1 item retrieved into the local store and opened."
    assert study.child(0).text(7) == "16 new, 4 already here"
    assert study.child(0).toolTip(7) == ""
