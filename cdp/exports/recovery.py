"""Exports whose process died: close them.

A run that was killed (SIGKILL, a crash, a host restart) stays ``running`` with its staging
rows and, for a file destination, a ``.part`` file of personal data beside where its output
would have gone. Such runs are found while no export can be running: every export holds the
erasure lock shared for its whole run, so whoever holds it exclusively knows that each run still
marked ``running`` has lost its process. :func:`recover_interrupted` then, per run:

- marks it ``failed`` with the error ``interrupted`` (its staging is not applied to the sync
  state);
- deletes its ``.part`` files and its staging rows;
- keeps its recipients-ledger rows where data may have left — a webhook's (they name only the
  batches whose request had started, each committed just before its first byte was written:
  :mod:`cdp.exports.delivery`) or a file destination's whose output file was already moved into
  place — and drops them otherwise (a file export that never committed its file sent nothing);
- puts every subject the ledger keeps into the sync state *unconfirmed*, in the same
  transaction (:func:`cdp.exports.sync.hold_unconfirmed`): the destination may hold it, so the
  next run sends it again while it is eligible and withdraws it once it is not (before, a
  consent withdrawal after a killed run never became a remove for it);
- when a schedule ran it (``schedule_id``), makes that schedule due again: its ``next_run_at``,
  which the claim had moved a whole interval on, goes back to the occurrence the run was for
  (the last one at or before the run's start), unless a later run of the schedule has finished
  since. The schedule records the run as ``interrupted``.

``cdp serve`` calls it at start and before each scheduled export; ``cdp export run`` before
running. It never waits: when an export or an erasure holds the lock it does nothing.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.clock import Clock, utcnow
from cdp.exports import staging, sync
from cdp.exports.destinations import DESTINATIONS, DestinationKind
from cdp.exports.models import ExportRun, ExportSchedule
from cdp.exports.outputs import export_dir
from cdp.logging import get_logger
from cdp.privacy.erasure_lock import no_export_running
from cdp.runtime import Runtime

RUNS = ExportRun.__table__  # type: ignore[attr-defined]
SCHEDULES = ExportSchedule.__table__  # type: ignore[attr-defined]
INTERRUPTED = "interrupted"
log = get_logger("cdp.exports")


def _outputs(runtime: Runtime, destination: str, export_id: str) -> tuple[list[Path], bool]:
    """(the run's ``.part`` files, whether any of its output files was moved into place)."""
    folder = export_dir(runtime) / destination
    if not folder.is_dir():
        return [], False
    mine = [p for p in folder.glob(f"{export_id}*") if not p.name.endswith(".manifest.json")]
    parts = [p for p in mine if p.name.endswith(".part")]
    return parts, len(parts) < len(mine)


def _due_again(
    conn: Connection, schedule_id: int, export_id: str, started_at: datetime, now: datetime
) -> bool:
    """Set the schedule back to the occurrence its killed run was for; whether it was."""
    from cdp.exports.schedule import interval  # (that module imports this one)

    row = conn.execute(
        sa.select(
            SCHEDULES.c.next_run_at, SCHEDULES.c.every_seconds, SCHEDULES.c.last_run_at
        ).where(SCHEDULES.c.id == schedule_id)
    ).first()
    if row is None:
        return False  # deleted since
    next_run_at, every_seconds, last_run_at = row
    if last_run_at is not None and last_run_at > started_at:
        return False  # a later run has finished since: it sent what this one would have
    if next_run_at <= started_at:
        return False  # due already
    step = interval(every_seconds)
    due = next_run_at - step * math.ceil((next_run_at - started_at) / step)
    moved = conn.execute(
        sa.update(SCHEDULES)
        .where(SCHEDULES.c.id == schedule_id, SCHEDULES.c.next_run_at == next_run_at)
        .values(next_run_at=due, last_run_at=now, last_export_id=export_id, last_status=INTERRUPTED)
    ).rowcount
    return bool(moved)


def recover_interrupted(runtime: Runtime, *, clock: Clock = utcnow) -> int:
    """Close every run left ``running`` by a dead process; return how many (0 when an export or
    an erasure is running now: nothing can be told apart then)."""
    with no_export_running(runtime) as free:
        if not free:
            return 0
        with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            stale = conn.execute(
                sa.select(
                    RUNS.c.id,
                    DESTINATIONS.c.name,
                    DESTINATIONS.c.kind,
                    RUNS.c.schedule_id,
                    RUNS.c.started_at,
                    RUNS.c.destination_id,
                    RUNS.c.segment,
                )
                .join(DESTINATIONS, DESTINATIONS.c.id == RUNS.c.destination_id)
                .where(RUNS.c.status == "running")
                .order_by(RUNS.c.id)
            ).all()
        for export_id, destination, kind, schedule_id, started_at, dest_id, segment in stale:
            parts, committed = _outputs(runtime, destination, export_id)
            for part in parts:
                part.unlink(missing_ok=True)
            sent_something = kind == DestinationKind.WEBHOOK.value or committed
            with runtime.data_engine.begin() as conn:
                sync.lock_rows(conn, export_id=export_id)
                if not sent_something:
                    sync.forget_recipients(conn, export_id=export_id)
                sync.hold_unconfirmed(
                    conn, export_id=export_id, destination_id=dest_id, segment=segment
                )
                closed = conn.execute(
                    sa.update(RUNS)
                    .where(RUNS.c.id == export_id, RUNS.c.status == "running")
                    .values(status="failed", error_code=INTERRUPTED, finished_at=clock())
                ).rowcount
                staging.clear(conn, export_id=export_id)
                due_again = (
                    bool(closed)
                    and schedule_id is not None
                    and _due_again(conn, schedule_id, export_id, started_at, clock())
                )
            log.warning(
                "interrupted export closed",
                export_id=export_id,
                partial_files_removed=len(parts),
                ledger_kept=sent_something,
                schedule_due_again=due_again,
            )
        return len(stale)
