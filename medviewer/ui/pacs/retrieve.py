"""The Query/Retrieve dialog's worker: fetch rows of studies and series, reporting each.

No Qt: it talks to the dialog only through `ctx.partial((what, row, value))` events:
("start", k, None), ("series", k, [SeriesHit]) for a whole study, ("progress", k,
(series_uid, done, total)), ("series_done", k, (series_uid, RetrieveResult | sentence)),
("failed", k, sentence) and ("done", k, RetrieveResult).
"""

from __future__ import annotations

from typing import Any


def retrieve_rows(ctx: Any, client: Any, server: Any, jobs: list[tuple[str, str | None]], *,
                  method: str, store: Any) -> None:
    """The worker: each (study, series or None) job in turn, a study series by series (so
    each has its progress); events go to the dialog as `ctx.partial((what, row, value))`.
    A failing row is reported and the next tried; a cancel stops everything."""
    from medviewer.pacs.errors import PacsCancelled, PacsError
    from medviewer.pacs.models import RetrieveResult

    def fetch(k: int, study_uid: str, series_uid: str) -> RetrieveResult:
        return client.retrieve(
            server, study_uid, series_uid, method=method, store=store,
            progress=lambda done, total: ctx.partial(("progress", k, (series_uid, done, total))),
            cancelled=ctx.is_cancelled)

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
