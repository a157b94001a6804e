"""Scheduled exports: a segment to a destination every N seconds, run by ``cdp serve``.

Schedules are rows of ``export_schedules`` (``cdp export schedule create|list|delete``). Each
runs as the principal who created it: at every run that principal must still be active and the
policy must still allow it to run exports for the destination's purpose (a revoked marketer's
schedules stop). :func:`run_due_exports` runs the due schedules one at a time, oldest due first;
before running one it *claims* it by moving ``next_run_at`` forward with a compare-and-set, so
two ``cdp serve`` processes never run the same occurrence. Missed occurrences (the server was
down) are not replayed: the next run is the first occurrence after now. Every run is logged
(schedule, export id, status, counts) and recorded on the schedule (last run, export, status).

An occurrence whose destination is disabled (``cdp destinations disable``) is skipped: claimed
like a run (so it is logged once, by one process, and the schedule moves on to its next
occurrence), no export run is stored, and the schedule records ``destination_disabled``. Once
the destination is enabled again the next occurrence runs.

An occurrence whose export is refused because the same segment is being exported to the same
destination right now (a manual ``cdp export run``; :mod:`cdp.exports.pair_lock`) is skipped
and stays due: its claim is undone, the schedule records ``export_running`` and the next poll
tries again.

An occurrence that did not complete is run again: when ``cdp serve`` stops (``stop`` is set)
the running export stops between two chunks or batches and is closed as ``interrupted``, and
the claim is undone (``next_run_at`` back to the occurrence, if nobody moved it since), so the
schedule is due at once on the next start; a run whose process was killed is closed by
:func:`cdp.exports.recovery.recover_interrupted`, which makes its schedule due again the same
way.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa

from cdp.access.context import AccessContext
from cdp.access.principals import get_by_name
from cdp.clock import Clock, utcnow
from cdp.db.conflicts import taken_name_is_conflict
from cdp.errors import (
    AudienceTooSmallError,
    CdpError,
    ConflictError,
    DestinationDisabledError,
    ExportInterruptedError,
    ExportRunningError,
    InvalidInputError,
    NotFoundError,
)
from cdp.exports.audience import AudienceResolver, segment_audience
from cdp.exports.destinations import get_destination
from cdp.exports.models import ExportSchedule
from cdp.exports.recovery import recover_interrupted
from cdp.exports.run import run_export
from cdp.exports.webhook import RetryPolicy
from cdp.intervals import MAX_EVERY_SECONDS, MIN_EVERY_SECONDS
from cdp.intervals import parse_every as parse_duration
from cdp.logging import get_logger
from cdp.runtime import Runtime
from cdp.segments.service import get_segment

SCHEDULES = cast(sa.Table, ExportSchedule.__table__)  # type: ignore[attr-defined]
log = get_logger("cdp.exports.schedule")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}\Z")


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule as shown."""

    id: int
    name: str
    segment: str
    destination: str
    principal_name: str
    every_seconds: int
    next_run_at: datetime
    last_run_at: datetime | None
    last_export_id: str | None
    last_status: str | None
    enabled: bool


@dataclass(frozen=True, slots=True)
class ScheduledRun:
    """One schedule run by :func:`run_due_exports`."""

    schedule: str
    export_id: str | None
    status: str


def parse_every(text: str) -> int:
    """``"30m"``, ``"6h"``, ``"1d"`` -> seconds (at least one minute, at most 366 days)."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise InvalidInputError(f"every {exc}", field="every") from None


def _info(row: Any) -> ScheduleInfo:
    m = row._mapping
    return ScheduleInfo(
        id=m["id"],
        name=m["name"],
        segment=m["segment"],
        destination=m["destination_name"],
        principal_name=m["principal_name"],
        every_seconds=m["every_seconds"],
        next_run_at=m["next_run_at"],
        last_run_at=m["last_run_at"],
        last_export_id=m["last_export_id"],
        last_status=m["last_status"],
        enabled=bool(m["enabled"]),
    )


def _select() -> sa.Select[Any]:
    from cdp.exports.destinations import DESTINATIONS

    return sa.select(SCHEDULES, DESTINATIONS.c.name.label("destination_name")).select_from(
        SCHEDULES.join(DESTINATIONS, DESTINATIONS.c.id == SCHEDULES.c.destination_id)
    )


def create_schedule(
    *,
    runtime: Runtime,
    ctx: AccessContext,
    name: str,
    segment: str,
    destination: str,
    every_seconds: int,
    start_at: datetime | None = None,
    clock: Clock = utcnow,
) -> ScheduleInfo:
    """Schedule ``segment`` -> ``destination`` every ``every_seconds``, run as ``ctx``'s
    principal; the first run is at ``start_at`` (default: now)."""
    if not _NAME.match(name):
        raise InvalidInputError("a schedule name is 1-64 lower-case letters, digits, _ . -")
    if every_seconds < MIN_EVERY_SECONDS:
        raise InvalidInputError("a schedule runs at most once a minute", field="every")
    if every_seconds > MAX_EVERY_SECONDS:
        raise InvalidInputError("a schedule runs at least once a year", field="every")
    get_segment(runtime=runtime, name=segment)  # NotFoundError now, not at every run
    dest = get_destination(runtime=runtime, name=destination)
    if dest.purpose != ctx.purpose:
        raise InvalidInputError(
            f"destination {dest.name!r} serves purpose {dest.purpose}", field="purpose"
        )
    now = clock()
    with (
        taken_name_is_conflict(f"a schedule named {name!r} already exists"),
        runtime.data_engine.begin() as conn,
    ):
        if conn.execute(sa.select(SCHEDULES.c.id).where(SCHEDULES.c.name == name)).first():
            raise ConflictError(f"a schedule named {name!r} already exists")
        conn.execute(
            sa.insert(SCHEDULES).values(
                name=name,
                segment=segment,
                destination_id=dest.id,
                principal_name=ctx.principal_name,
                every_seconds=every_seconds,
                next_run_at=start_at or now,
                enabled=True,
                created_at=now,
            )
        )
        row = conn.execute(_select().where(SCHEDULES.c.name == name)).one()
    return _info(row)


def list_schedules(*, runtime: Runtime) -> list[ScheduleInfo]:
    """Every schedule, by name."""
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        return [_info(r) for r in conn.execute(_select().order_by(SCHEDULES.c.name))]


def delete_schedule(*, runtime: Runtime, name: str) -> None:
    """Delete the schedule ``name`` (its past exports stay)."""
    with runtime.data_engine.begin() as conn:
        gone = conn.execute(sa.delete(SCHEDULES).where(SCHEDULES.c.name == name)).rowcount
    if not gone:
        raise NotFoundError(f"no schedule named {name!r}")


def interval(every_seconds: int) -> timedelta:
    """A schedule's step (an interval stored before MAX_EVERY_SECONDS existed is read as at most
    that: a next run past the calendar would stop every schedule due after this one)."""
    return timedelta(seconds=min(max(every_seconds, MIN_EVERY_SECONDS), MAX_EVERY_SECONDS))


def _claim(runtime: Runtime, info: ScheduleInfo, now: datetime) -> datetime | None:
    """Move ``next_run_at`` past now, if nobody else did first; return where it went."""
    step = interval(info.every_seconds)
    missed = max(0, int((now - info.next_run_at) / step))
    following = info.next_run_at + step * (missed + 1)
    with runtime.data_engine.begin() as conn:
        moved = conn.execute(
            sa.update(SCHEDULES)
            .where(SCHEDULES.c.id == info.id, SCHEDULES.c.next_run_at == info.next_run_at)
            .values(next_run_at=following)
        ).rowcount
    return following if moved == 1 else None


def _context(runtime: Runtime, info: ScheduleInfo, purpose: str, clock: Clock) -> AccessContext:
    principal = get_by_name(runtime=runtime, name=info.principal_name)
    if principal.state(clock()) != "active":
        raise ConflictError(f"the principal of schedule {info.name!r} is not active")
    return AccessContext(
        principal_id=principal.id,
        principal_name=principal.name,
        roles=principal.roles,
        purpose=purpose,
        request_id=f"schedule-{info.id}",
        client="scheduler",
    )


def run_due_exports(
    *,
    runtime: Runtime,
    clock: Clock = utcnow,
    retry: RetryPolicy | None = None,
    resolver: AudienceResolver = segment_audience,
    stop: threading.Event | None = None,
) -> list[ScheduledRun]:
    """Run every enabled schedule that is due, one at a time; return what ran. Once ``stop`` is
    set no schedule is claimed, and the running export stops (its occurrence stays due)."""
    now = clock()
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        due = [
            _info(r)
            for r in conn.execute(
                _select()
                .where(SCHEDULES.c.enabled.is_(True), SCHEDULES.c.next_run_at <= now)
                .order_by(SCHEDULES.c.next_run_at, SCHEDULES.c.id)
            )
        ]
    done: list[ScheduledRun] = []
    for info in due:
        if stop is not None and stop.is_set():
            break
        claimed = _claim(runtime, info, now)
        if claimed is None:
            continue
        export_id: str | None = None
        undo = False
        try:
            dest = get_destination(runtime=runtime, name=info.destination)
            if not dest.enabled:  # before anything else: no export run is stored
                raise DestinationDisabledError(dest.name)
            ctx = _context(runtime, info, dest.purpose, clock)
            result = run_export(
                runtime=runtime,
                ctx=ctx,
                segment=info.segment,
                destination=info.destination,
                clock=clock,
                retry=retry,
                resolver=resolver,
                schedule_id=info.id,
                stop=stop,
            )
            export_id, status = result.export_id, result.status
            log.info(
                "scheduled export ran",
                schedule=info.name,
                export_id=export_id,
                status=status,
                **result.counts.as_dict(),
            )
        except AudienceTooSmallError as exc:  # no adds; removes sent if there were any
            export_id, status = exc.export_id, exc.code
            log.warning(
                "scheduled export below its minimum audience",
                schedule=info.name,
                export_id=export_id,
                status=exc.status,
                **exc.counts,
            )
        except ExportInterruptedError as exc:  # cdp serve is stopping: this occurrence stays due
            export_id, status, undo = exc.export_id, exc.code, True
            log.warning("scheduled export interrupted", schedule=info.name, export_id=export_id)
        except ExportRunningError as exc:  # the same export runs (manually): due again later
            status, undo = exc.code, True
            log.warning(
                "scheduled export skipped: the same export is running; it stays due",
                schedule=info.name,
                code=exc.code,
            )
        except DestinationDisabledError as exc:  # an admin switched it off: skipped, not a fault
            status = exc.code
            log.info(
                "scheduled export skipped: its destination is disabled",
                schedule=info.name,
                destination=exc.destination,
            )
        except CdpError as exc:
            status = exc.code
            log.warning("scheduled export did not run", schedule=info.name, code=exc.code)
        except Exception as exc:  # one broken schedule must not stop the others
            status = "failed"
            log.error("scheduled export failed", schedule=info.name, error_type=type(exc).__name__)
        with runtime.data_engine.begin() as conn:
            if undo:  # (unless the schedule was changed since: then its new time stands)
                conn.execute(
                    sa.update(SCHEDULES)
                    .where(SCHEDULES.c.id == info.id, SCHEDULES.c.next_run_at == claimed)
                    .values(next_run_at=info.next_run_at)
                )
            conn.execute(
                sa.update(SCHEDULES)
                .where(SCHEDULES.c.id == info.id)
                .values(last_run_at=clock(), last_export_id=export_id, last_status=status[:32])
            )
        done.append(ScheduledRun(info.name, export_id, status))
    return done


def scheduler_loop(
    *,
    runtime: Runtime,
    stop: threading.Event,
    poll_seconds: float,
    clock: Clock = utcnow,
    before_exports: Callable[[], object] | None = None,
) -> None:
    """Run due exports every ``poll_seconds`` until ``stop`` is set (``cdp serve``'s thread);
    setting it also stops the export running (see :func:`run_due_exports`).

    ``before_exports`` (``cdp serve``'s traits job, :class:`cdp.jobs.TraitsJob`) runs first in
    every pass, in this thread: a traits recompute that is due runs before the exports due with
    it, and no scheduled export runs while it does."""
    log.info(
        "export scheduler started", poll_seconds=poll_seconds, traits_job=before_exports is not None
    )
    while not stop.is_set():
        if before_exports is not None:
            before_exports()  # (logs its own failures)
        if stop.is_set():
            break
        try:
            recover_interrupted(runtime, clock=clock)  # runs a dead process left (cheap: no wait)
            run_due_exports(runtime=runtime, clock=clock, stop=stop)
        except Exception as exc:  # keep the loop alive; the next poll tries again
            log.error("export scheduler pass failed", error_type=type(exc).__name__)
        stop.wait(poll_seconds)
    log.info("export scheduler stopped")
