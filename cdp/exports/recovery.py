"""Exports whose process died: close them.

A run that was killed (SIGKILL, a crash, a host restart) stays ``running`` with its staging
rows and, for a file destination, a ``.part`` file of personal data beside where its output
would have gone. Such runs are found while no export can be running: every export holds the
erasure lock shared for its whole run, so whoever holds it exclusively knows that each run still
marked ``running`` has lost its process. :func:`recover_interrupted` then, per run:

- marks it ``failed`` with the error ``interrupted`` (its sync state is not applied: the next
  run sends its subjects again);
- deletes its ``.part`` files and its staging rows;
- keeps its recipients-ledger rows where data may have left — a webhook's (batches may have
  been delivered) or a file destination's whose output file was already moved into place — and
  drops them otherwise (a file export that never committed its file sent nothing).

``cdp serve`` calls it at start and before each scheduled export; ``cdp export run`` before
running. It never waits: when an export or an erasure holds the lock it does nothing.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from cdp.clock import Clock, utcnow
from cdp.exports import staging, sync
from cdp.exports.destinations import DESTINATIONS, DestinationKind
from cdp.exports.models import ExportRun
from cdp.exports.outputs import export_dir
from cdp.logging import get_logger
from cdp.privacy.erasure_lock import no_export_running
from cdp.runtime import Runtime

RUNS = ExportRun.__table__  # type: ignore[attr-defined]
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


def recover_interrupted(runtime: Runtime, *, clock: Clock = utcnow) -> int:
    """Close every run left ``running`` by a dead process; return how many (0 when an export or
    an erasure is running now: nothing can be told apart then)."""
    with no_export_running(runtime) as free:
        if not free:
            return 0
        with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            stale = conn.execute(
                sa.select(RUNS.c.id, DESTINATIONS.c.name, DESTINATIONS.c.kind)
                .join(DESTINATIONS, DESTINATIONS.c.id == RUNS.c.destination_id)
                .where(RUNS.c.status == "running")
                .order_by(RUNS.c.id)
            ).all()
        for export_id, destination, kind in stale:
            parts, committed = _outputs(runtime, destination, export_id)
            for part in parts:
                part.unlink(missing_ok=True)
            sent_something = kind == DestinationKind.WEBHOOK.value or committed
            with runtime.data_engine.begin() as conn:
                sync.lock_rows(conn, export_id=export_id)
                if not sent_something:
                    sync.forget_recipients(conn, export_id=export_id)
                conn.execute(
                    sa.update(RUNS)
                    .where(RUNS.c.id == export_id, RUNS.c.status == "running")
                    .values(status="failed", error_code=INTERRUPTED, finished_at=clock())
                )
                staging.clear(conn, export_id=export_id)
            log.warning(
                "interrupted export closed",
                export_id=export_id,
                partial_files_removed=len(parts),
                ledger_kept=sent_something,
            )
        return len(stale)
