"""The one exception type of the inference layer."""

from __future__ import annotations

from pathlib import Path


class ModelError(Exception):
    """A model that cannot be loaded or run, with its path and a sentence a user can act on."""

    def __init__(self, path: str | Path | None, reason: str) -> None:
        self.path = str(path) if path is not None else None
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)
