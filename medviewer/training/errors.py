"""The one exception type of the training layer."""

from __future__ import annotations

from pathlib import Path


class TrainingError(Exception):
    """A job that cannot run, with its path and a sentence the user can act on."""

    def __init__(self, path: str | Path | None, reason: str) -> None:
        self.path = str(path) if path is not None else None
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class TrainingCancelled(BaseException):  # noqa: N818 - a signal, like KeyboardInterrupt
    """SIGTERM from the parent (the dialog's Cancel): stop now, write no candidate."""
