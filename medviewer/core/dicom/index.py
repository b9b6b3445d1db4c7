"""Header scan of a folder, a DICOMDIR or files into patients / studies / series stacks.

CONTRACT (implementation in progress):

    scan(paths, *, progress=None, cancel=None, cache=True, workers=None) -> ScanResult

`paths`: a folder (recursive), a DICOMDIR file, a file, or a list of any of these.
Headers only, in parallel; progress(done, total); cancel() -> True stops early and returns
what was found with `cancelled=True`. Index cached in SQLite (platformdirs user cache) keyed
by path, size and mtime; `cache` may be False or a path to a database file.
Non-DICOM files are counted in `files_skipped`; corrupt DICOM becomes a `FileProblem`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from medviewer.core.dicom.model import ScanResult


def scan(
    paths: str | Path | Sequence[str | Path],
    *,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    cache: bool | str | Path = True,
    workers: int | None = None,
) -> ScanResult:
    raise NotImplementedError
