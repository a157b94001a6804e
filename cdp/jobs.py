"""Background jobs that ``cdp serve`` runs besides the API: the daily retention run.

Each job runs in one thread of the serving (parent) process, whatever the number of API workers.
Retention is idempotent, so two hosts running it on the same day do no harm; a failed run is
logged (redacted, no locals) and tried again at the next interval. Setting ``stop`` (``cdp serve``
shutting down) also stops a run in progress between two of its steps (see
:mod:`cdp.privacy.retention`); ``cdp serve`` runs retention again as soon as it starts.
"""

from __future__ import annotations

import threading
from datetime import timedelta

from cdp.clock import Clock, utcnow
from cdp.logging import get_logger
from cdp.privacy.retention import run_retention
from cdp.runtime import Runtime

log = get_logger("cdp.jobs")
DAY = timedelta(days=1)


def retention_loop(
    *,
    runtime: Runtime,
    stop: threading.Event,
    interval: timedelta = DAY,
    clock: Clock = utcnow,
) -> None:
    """Run retention now and then every ``interval`` until ``stop`` is set."""
    while not stop.is_set():
        try:
            report = run_retention(runtime=runtime, clock=clock, stop=stop)
            log.info("retention run", **report.as_dict())
        except Exception as exc:  # keep serving; the next interval tries again
            log.error("retention run failed", error_type=type(exc).__name__, exc_info=exc)
        stop.wait(interval.total_seconds())
