"""The PACS layer's one exception type: its str is a sentence a user can act on."""

from __future__ import annotations


class PacsError(Exception):
    """A PACS operation failed; str(error) says what went wrong and what to do."""


class PacsCancelled(PacsError):
    """The user cancelled a retrieve or a send; nothing half-written is left in the store."""

    def __init__(self, message: str = "The transfer was cancelled; what had fully arrived is "
                 "kept, and retrieving again fetches only what is missing.") -> None:
        super().__init__(message)


class PacsTransient(PacsError):
    """A failure that may pass by itself (a dropped connection, a timeout, a busy server):
    trying again makes sense. Other PacsErrors (refused, wrong AE title, unknown study) do not
    change by retrying."""
