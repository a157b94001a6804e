"""Where an export stops when it is asked to: ``cdp serve``'s scheduler passes a ``stop`` event,
and the pipeline (:mod:`cdp.exports.run`) and the webhook sink (:mod:`cdp.exports.delivery`)
check it before each step that would send or stage more."""

from __future__ import annotations

import threading

from cdp.errors import ExportInterruptedError


def check_stop(stop: threading.Event | None, export_id: str) -> None:
    """Raise ``ExportInterruptedError`` once ``stop`` is set."""
    if stop is not None and stop.is_set():
        raise ExportInterruptedError(export_id)
