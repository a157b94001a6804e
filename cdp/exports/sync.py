"""Incremental sync state and the recipients ledger, updated when an export ends.

The sync state (``export_sync_members``) is, per destination and segment, the set of subjects
the destination holds or may hold. A row is *confirmed* (``confirmed`` true) when a run that
succeeded sent the subject's add (its file committed, its webhook batch acknowledged), and
*unconfirmed* when the destination may hold the subject without cdp knowing it does: a webhook
batch that was dead-lettered after its body was sent (a receiver that timed out or answered an
error may have kept it), a run that failed or died after some of its data left. The next run
keeps the confirmed eligible subjects, sends the unconfirmed eligible ones again (adds) as well
as the eligible subjects not in it, and withdraws every subject in it, confirmed or not, that is
no longer eligible (removes) — a consent withdrawal or a restriction turns into a remove.
``--full`` resends every eligible subject. Allowing a destination a new field makes every row of
it unconfirmed (:func:`unconfirm`), so its next runs send every eligible subject again.

The ledger names a subject only where its data may have left cdp, and always before it can
leave. A file export's rows are written per chunk, in the same transaction as the chunk's audit
record, before any of its rows is written out (:func:`record_recipients`; its file leaves only
when moved into place at the end). A webhook export's rows are written per batch
(:func:`record_batch`), by the sink, in a transaction of their own committed when the batch's
first request is about to be written on an open connection: a batch whose every try was refused,
failed to resolve or had an unusable URL, or that was never posted, names nobody, and a process
killed at any point leaves rows for exactly the batches whose request had started. When the
export closes, the ledger rows of adds refused for the minimum audience are deleted; a refused
export deletes all of its rows (nothing left), a failed one those of subjects none of whose
data left (all of them for a file export, whose files were removed), and the rows it keeps
enter the sync state unconfirmed (:func:`hold_unconfirmed`, also used by
:mod:`cdp.exports.recovery` for runs whose process died). The sync-state update is set-based
(``INSERT ... SELECT`` / ``DELETE ... WHERE IN (SELECT ...)`` from the staging or ledger rows) in
the closing transaction, which first locks the export's ledger and staging rows in erasure's
order (no deadlock with it). Its inserts are upserts: a row already there for the key (a
subject moved in by a merge, a failed run's row) is updated. Two exports of one destination and
segment never close at once (:mod:`cdp.exports.pair_lock`); if they did, the second would wait
for the first's rows and update them instead of failing its close after its data was sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from cdp.exports.models import ExportRecipient
from cdp.exports.staging import STAGING, SYNC

RECIPIENTS = cast(sa.Table, ExportRecipient.__table__)  # type: ignore[attr-defined]


def record_recipients(
    conn: Connection,
    *,
    export_id: str,
    destination_id: str,
    chunk: Sequence[str],
    skipped: Sequence[str],
    op: str,
    fields: str,
    at: datetime,
) -> None:
    """Append the ledger rows of a file export's chunk about to be written out (in the chunk's
    audit transaction; a webhook's are written per batch, :func:`record_batch`).

    ``chunk`` is one page of :func:`cdp.exports.staging.iter_ids` (this export's staged ids with
    action ``op``, in id order, consecutive), so its rows are exactly the staging rows with that
    action between its first and last id: one ``INSERT ... SELECT`` over that range, less the
    ``skipped`` ids (no usable value: nothing of theirs is sent), writes them set-based. Only
    this export changes its staging rows while it runs, and erasure waits for it.
    """
    if len(skipped) >= len(chunk):
        return
    select = sa.select(
        sa.literal(export_id),
        STAGING.c.subject_id,
        sa.literal(destination_id),
        sa.literal(op),
        sa.literal(fields),
        sa.literal(at, RECIPIENTS.c.at.type),
    ).where(
        STAGING.c.export_id == export_id,
        STAGING.c.action == op,
        STAGING.c.subject_id >= chunk[0],
        STAGING.c.subject_id <= chunk[-1],
    )
    if skipped:
        select = select.where(STAGING.c.subject_id.not_in(list(skipped)))
    conn.execute(
        sa.insert(RECIPIENTS).from_select(
            ["export_id", "subject_id", "destination_id", "op", "fields", "at"], select
        )
    )


def record_batch(
    conn: Connection,
    *,
    export_id: str,
    destination_id: str,
    subject_ids: Sequence[str],
    op: str,
    fields: str,
    at: datetime,
) -> None:
    """Append the ledger rows of one webhook batch whose request is about to be written (its
    body may leave cdp from now on). A subject the export named already (a remove of a
    rectified value after its add, :mod:`cdp.exports.removes`) keeps its row."""
    if subject_ids:
        insert: Any = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        conn.execute(
            insert(RECIPIENTS).on_conflict_do_nothing(index_elements=["export_id", "subject_id"]),
            [
                {
                    "export_id": export_id,
                    "subject_id": sid,
                    "destination_id": destination_id,
                    "op": op,
                    "fields": fields,
                    "at": at,
                }
                for sid in subject_ids
            ],
        )


def lock_rows(conn: Connection, *, export_id: str) -> None:
    """Lock the export's ledger rows, then its staging rows (PostgreSQL), in the order erasure
    deletes a subject's rows (ledger, staging, sync state), so the two cannot deadlock."""
    if conn.dialect.name != "postgresql":
        return  # SQLite: BEGIN IMMEDIATE already serialises writers
    for table in (RECIPIENTS, STAGING):
        conn.execute(
            sa.select(table.c.subject_id)
            .where(table.c.export_id == export_id)
            .order_by(table.c.subject_id)
            .with_for_update()
        ).all()


def forget_recipients(
    conn: Connection, *, export_id: str, subject_ids: Sequence[str] | None = None
) -> None:
    """A refused or failed export: drop the ledger rows of the subjects none of whose data left
    (``subject_ids``), or every row of the export (None: its files were removed, so nobody
    received anything)."""
    where = RECIPIENTS.c.export_id == export_id
    if subject_ids is None:
        conn.execute(sa.delete(RECIPIENTS).where(where))
        return
    ids = sorted(set(subject_ids))
    for start in range(0, len(ids), 5_000):
        part = ids[start : start + 5_000]
        conn.execute(sa.delete(RECIPIENTS).where(where, RECIPIENTS.c.subject_id.in_(part)))


def apply(
    conn: Connection,
    *,
    export_id: str,
    destination_id: str,
    segment: str,
    changed: int | None = None,
    confirm_adds: bool = True,
) -> None:
    """Move the sync state from the staging rows of a run that ended normally: the subjects
    added become confirmed (unconfirmed without ``confirm_adds``: the destination's fields were
    widened while the run sent the old ones, see :func:`unconfirm`), those removed or lost
    leave it, and those of dead-lettered webhook batches (``failed``, adds or removes) whose
    body may have left (the ledger names them: a request was started) stay in it or enter it
    unconfirmed (the receiver may have kept the batch although it did not acknowledge it). A
    dead-lettered batch that never left (every try refused, unresolved or unusable) changes
    nothing: its subjects keep the row they had, or stay out. Drop the ledger rows of refused
    adds (decrypted, but the minimum audience kept them from leaving). Subjects of
    dead-lettered batches that may have left stay in the ledger.

    ``changed``, when known, is how many staged subjects were added, removed or lost: the old
    sync rows of those subjects are then found from whichever side is smaller, the staged
    changes (a lookup in the sync state each) or the sync state (a staging lookup a row; a
    first export's state is empty)."""
    moved = ["add", "remove", "lost"]
    in_sync = sa.and_(SYNC.c.destination_id == destination_id, SYNC.c.segment == segment)
    if changed is not None and _holds_at_most(conn, in_sync, changed):
        staged_here = (
            sa.select(sa.literal(1))
            .where(
                STAGING.c.export_id == export_id,
                STAGING.c.subject_id == SYNC.c.subject_id,
                STAGING.c.action.in_(moved),
            )
            .exists()
        )
        conn.execute(sa.delete(SYNC).where(in_sync, staged_here))
    else:
        staged = (
            sa.select(STAGING.c.subject_id)
            .where(STAGING.c.export_id == export_id, STAGING.c.action.in_(moved))
            .scalar_subquery()
        )
        conn.execute(sa.delete(SYNC).where(in_sync, SYNC.c.subject_id.in_(staged)))
    may_have_left = (
        sa.select(sa.literal(1))
        .where(
            RECIPIENTS.c.export_id == export_id,
            RECIPIENTS.c.subject_id == STAGING.c.subject_id,
        )
        .exists()
    )
    for action, confirmed in (("add", confirm_adds), ("failed", False)):
        rows = sa.select(
            sa.literal(destination_id),
            sa.literal(segment),
            STAGING.c.subject_id,
            sa.literal(export_id),
            sa.literal(confirmed, sa.Boolean),
        ).where(STAGING.c.export_id == export_id, STAGING.c.action == action)
        if action == "failed":
            rows = rows.where(may_have_left)
        _upsert(conn, rows)
    refused = (
        sa.select(STAGING.c.subject_id)
        .where(STAGING.c.export_id == export_id, STAGING.c.action == "refused")
        .scalar_subquery()
    )
    conn.execute(
        sa.delete(RECIPIENTS).where(
            RECIPIENTS.c.export_id == export_id, RECIPIENTS.c.subject_id.in_(refused)
        )
    )


def hold_unconfirmed(
    conn: Connection, *, export_id: str, destination_id: str, segment: str
) -> None:
    """A run that did not end normally (failed, interrupted, its process dead): every subject
    its ledger still names (after :func:`forget_recipients`) may be held by the destination —
    an add's batch was sent, a remove's may have been applied — so it enters the sync state
    unconfirmed (or its row becomes unconfirmed): the next run sends it again while it is
    eligible, and withdraws it once it is not. Without this a withdrawal after a failed run
    never became a remove for a subject whose data the destination had acknowledged."""
    rows = sa.select(
        sa.literal(destination_id),
        sa.literal(segment),
        RECIPIENTS.c.subject_id,
        sa.literal(export_id),
        sa.literal(False, sa.Boolean),
    ).where(RECIPIENTS.c.export_id == export_id)
    _upsert(conn, rows)


def unconfirm(conn: Connection, *, destination_id: str) -> int:
    """The destination's fields were widened (:mod:`cdp.exports.destination_changes`): every
    subject it holds lacks the new fields, so every row of it becomes unconfirmed and the next
    run of each segment sends every eligible subject again (with the new fields), and withdraws
    the others as before. Returns how many rows changed."""
    done = conn.execute(
        sa.update(SYNC)
        .where(SYNC.c.destination_id == destination_id, SYNC.c.confirmed.is_(True))
        .values(confirmed=False)
    )
    return int(done.rowcount or 0)


_SYNC_COLUMNS = ["destination_id", "segment", "subject_id", "export_id", "confirmed"]
_SYNC_KEY = ["destination_id", "segment", "subject_id"]


def _upsert(conn: Connection, rows: sa.Select[Any]) -> None:
    """``INSERT ... SELECT`` into the sync state; a row already there for the key takes the
    new export id and confirmation (``ON CONFLICT DO UPDATE``, on SQLite as on PostgreSQL)."""
    insert: Any = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(SYNC).from_select(_SYNC_COLUMNS, rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=_SYNC_KEY,
        set_={"export_id": stmt.excluded.export_id, "confirmed": stmt.excluded.confirmed},
    )
    conn.execute(stmt)


def _holds_at_most(conn: Connection, where: sa.ColumnElement[bool], n: int) -> bool:
    """Whether at most ``n`` sync rows match ``where`` (reads at most ``n + 1`` of them)."""
    some = sa.select(sa.literal(1)).select_from(SYNC).where(where).limit(n + 1).subquery()
    return int(conn.execute(sa.select(sa.func.count()).select_from(some)).scalar_one()) <= n
