"""Background jobs that ``cdp serve`` runs besides the API: retention and the traits job.

Each job runs in a thread of the serving (parent) process, whatever the number of API workers.
A failed run is logged (redacted, no locals); retention tries again at the next interval, the
traits job sooner (below).

Retention runs now and then once a day. It is idempotent, so two hosts running it on the same
day do no harm. Setting ``stop`` (``cdp serve`` shutting down) also stops a run in progress
between two of its steps (see :mod:`cdp.privacy.retention`); ``cdp serve`` runs retention again
as soon as it starts.

The traits job (:class:`TraitsJob`) recomputes every subject's traits
(:func:`cdp.traits.compute.compute_traits`) when the stored ones are ``CDP_TRAITS_INTERVAL`` old
or were never computed (:func:`cdp.traits.freshness.traits_computed_at`), so a restart does not
recompute traits that are still fresh, and a recompute made meanwhile by ``cdp traits compute``
or another host counts. ``cdp serve`` runs it at the start of every pass of the export
scheduler's thread (:func:`cdp.exports.schedule.scheduler_loop`), so it never overlaps a
scheduled export and runs before the exports due with it (``cdp serve --no-scheduler`` runs
neither). Two hosts recomputing at once is harmless: the recompute's writes are serialised
(:mod:`cdp.traits.recompute_lock`) and the later one rewrites the same rows. A run is not cut
short by ``stop``: its steps are transactions of their own, and one still running at the end of
the shutdown grace period is rolled back with the process. A failed run is tried again sooner
than an interval later (:data:`FIRST_RETRY`, doubling after each failure in a row, at most
``CDP_TRAITS_INTERVAL``), and in full even if its first steps committed (they made the traits
look fresh).
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from cdp.clock import Clock, utcnow
from cdp.logging import get_logger
from cdp.privacy.retention import run_retention
from cdp.runtime import Runtime
from cdp.traits.compute import ComputeReport, compute_traits
from cdp.traits.freshness import traits_computed_at

log = get_logger("cdp.jobs")
DAY = timedelta(days=1)
FIRST_RETRY = timedelta(minutes=1)
"""How long the traits job waits after a failed run; doubled after each further failure."""


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


class TraitsJob:
    """Recompute the traits when they are ``interval`` old (see the module doc); call
    :meth:`run_if_due` as often as you like: between two due times it reads nothing."""

    def __init__(self, *, runtime: Runtime, interval: timedelta, clock: Clock = utcnow) -> None:
        self.runtime = runtime
        self.interval = interval
        self.clock = clock
        self.next_check: datetime | None = None
        """Before this time the traits are known to be fresh (or the last run failed)."""
        self.failures = 0
        """Failed runs in a row (0 after a run that succeeded)."""

    def retry_delay(self) -> timedelta:
        """The wait after the current run of failures: :data:`FIRST_RETRY`, doubled after
        each further failure, at most the interval."""
        doublings = min(self.failures - 1, 32)  # 2**32 minutes is past any interval
        delay: timedelta = FIRST_RETRY * (1 << max(doublings, 0))
        return min(delay, self.interval)

    def run_if_due(self) -> ComputeReport | None:
        """Recompute the traits if they are due, or if the last run failed; the report of the
        run, or None when the traits were fresh or the run failed (logged with the error's
        type only: its message could quote a database row; the next try comes after
        :meth:`retry_delay`)."""
        now = self.clock()
        if self.next_check is not None and now < self.next_check:
            return None
        last = None
        try:
            with self.runtime.data_engine.connect().execution_options(
                sqlite_begin="DEFERRED"
            ) as conn:
                last = traits_computed_at(conn)
            # After a failure the steps that committed made the traits look fresh: run in full.
            if not self.failures and last is not None and now - last < self.interval:
                self.next_check = last + self.interval
                return None
            report = compute_traits(runtime=self.runtime, clock=self.clock)
        except Exception as exc:  # keep serving; try again after a short wait
            self.failures += 1
            delay = self.retry_delay()
            self.next_check = now + delay
            log.error(
                "traits run failed",
                error_type=type(exc).__name__,
                failures=self.failures,
                retry_in_seconds=int(delay.total_seconds()),
            )
            return None
        self.failures = 0
        self.next_check = now + self.interval
        log.info(
            "traits run",
            computed_at=now.isoformat(),
            previous=last.isoformat() if last is not None else None,
            subjects=report.subjects,
            tier_changes=report.tier_changes,
            points_lines=report.points_lines,
            clv_subjects=report.clv_subjects,
            clv_skipped=report.clv_skipped is not None,
            clv_removed=report.clv_removed,
            seconds=report.seconds,
        )
        return report
