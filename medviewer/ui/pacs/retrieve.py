"""The Query/Retrieve dialog's worker: fetch rows of studies and series, reporting each.

No Qt: it talks to the dialog only through `ctx.partial((what, row, value))` events:
("start", k, None), ("series", k, [SeriesHit]) for a whole study, ("progress", k,
(series_uid, done, total)), ("series_done", k, (series_uid, RetrieveResult | sentence)),
("failed", k, sentence), ("done", k, RetrieveResult) and ("retry", k, (series_uid, attempt,
RETRIES, sentence)) before trying again after a transient failure.

A series that fails on a transient error (PacsTransient: a dropped connection, a timeout, a
busy server) is tried again RETRIES times after RETRY_PAUSE seconds; the backends skip what
the store already has, so a retry fetches only what is missing. Other errors (refused, wrong
AE title, unknown study) are reported at once.
"""

from __future__ import annotations

import time
from typing import Any

RETRIES = 2
RETRY_PAUSE = 2.0  # seconds before each retry (a cancel ends the wait)


def retrieve_rows(ctx: Any, client: Any, server: Any, jobs: list[tuple[str, str | None]], *,
                  method: str, store: Any, receiver: Any = None) -> None:
    """The worker: each (study, series or None) job in turn, a study series by series (so
    each has its progress); events go to the dialog as `ctx.partial((what, row, value))`.
    A failing row is reported and the next tried; a cancel stops everything. `receiver`:
    MedViewer's running C-STORE receiver, which a C-MOVE uses instead of starting its own."""
    from medviewer.pacs.errors import PacsCancelled, PacsError, PacsTransient
    from medviewer.pacs.models import RetrieveResult

    def once(k: int, study_uid: str, series_uid: str) -> RetrieveResult:
        return client.retrieve(
            server, study_uid, series_uid, method=method, store=store,
            progress=lambda done, total: ctx.partial(("progress", k, (series_uid, done, total))),
            cancelled=ctx.is_cancelled, receiver=receiver)

    def fetch(k: int, study_uid: str, series_uid: str) -> RetrieveResult:
        for attempt in range(1, RETRIES + 1):
            try:
                return once(k, study_uid, series_uid)
            except PacsTransient as exc:
                ctx.partial(("retry", k, (series_uid, attempt, RETRIES, str(exc))))
                _pause(ctx)
        return once(k, study_uid, series_uid)

    for k, (study_uid, series_uid) in enumerate(jobs):
        ctx.partial(("start", k, None))
        try:
            if series_uid is not None:
                ctx.partial(("done", k, fetch(k, study_uid, series_uid)))
                continue
            hits = client.find_series(server, study_uid)
            ctx.partial(("series", k, hits))
            total, problems = RetrieveResult(), []
            for hit in hits:
                try:
                    part = fetch(k, study_uid, hit.series_uid)
                except PacsCancelled:
                    raise
                except PacsError as exc:  # this series failed; the next may still come
                    ctx.partial(("series_done", k, (hit.series_uid, str(exc))))
                    problems.append(str(exc))
                    continue
                ctx.partial(("series_done", k, (hit.series_uid, part)))
                total.stored += part.stored
                total.skipped += part.skipped
                total.failed += part.failed
            if problems and not (total.stored or total.skipped):
                raise PacsError(problems[0])
            total.failed += problems
            ctx.partial(("done", k, total))
        except PacsCancelled:
            raise
        except PacsError as exc:  # this row failed; the next may still work
            ctx.partial(("failed", k, str(exc)))


def _pause(ctx: Any) -> None:
    """RETRY_PAUSE seconds, or until the user cancels (PacsCancelled)."""
    from medviewer.pacs.errors import PacsCancelled

    end = time.monotonic() + RETRY_PAUSE
    while time.monotonic() < end:
        if ctx.is_cancelled():
            raise PacsCancelled()
        time.sleep(min(0.05, max(0.0, end - time.monotonic())))
