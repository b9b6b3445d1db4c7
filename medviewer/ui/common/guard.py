"""The slot wrapper every window-level handler uses: log and show, never crash the viewer."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """An unexpected exception in `method` is logged and shown through the owner's
    `show_error` (the window's, or its `host`'s for a feature), and returns None."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            log.exception("error in %s", method.__name__)
            show = getattr(self, "show_error", None) or self.host.show_error
            show(f"Unexpected error: {exc}")
            return None

    return wrapper
