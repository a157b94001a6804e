"""A merge of two subjects carries their export history over to the survivor.

The recipients ledger (``export_recipients``) and the sync state (``export_sync_members``) name
subjects without a foreign key (see :mod:`cdp.exports.models`), so the generic move of
:mod:`cdp.profiles.merge` does not see them. Left on the absorbed id they would be lost: erasure
and the access package of the survivor would not find the destinations that received the
person, and the next export would count the absorbed id as an unresolvable remove (its key is
destroyed at the merge) while adding the survivor again. :func:`move_export_rows` runs inside
the merge's transaction:

- sync state: a destination/segment the survivor is not synced to takes the absorbed row; where
  both are, the survivor's row is kept (the destination holds the person; the next run compares
  the survivor's current state against it) and the absorbed one dropped — unconfirmed if either
  was (the destination may hold what it may not have received: the next run sends it again);
- ledger: every row moves; where both subjects were in the same export (the key is export and
  subject) one row is kept, ``add`` if either was added, since that records the disclosure an
  access request and an erasure notice must show;
- webhook dead letters (``webhook_deliveries.subject_ids``, a JSON list): the absorbed id is
  replaced by the survivor's (once per list), so that the survivor's erasure scrubs it and the
  batch names a subject that exists.
"""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.db.id_lists import rewrite_id_lists
from cdp.exports.models import ExportRecipient, SyncMember, WebhookDelivery

RECIPIENTS = cast(sa.Table, ExportRecipient.__table__)  # type: ignore[attr-defined]
SYNC = cast(sa.Table, SyncMember.__table__)  # type: ignore[attr-defined]
DELIVERIES = cast(sa.Table, WebhookDelivery.__table__)  # type: ignore[attr-defined]


def move_export_rows(conn: Connection, *, survivor: str, absorbed: str) -> None:
    """Move ``absorbed``'s ledger and sync rows to ``survivor`` (see the module doc)."""
    _move_sync(conn, survivor, absorbed)
    _move_recipients(conn, survivor, absorbed)
    _move_dead_letters(conn, survivor, absorbed)


def _move_dead_letters(conn: Connection, survivor: str, absorbed: str) -> None:
    def moved(ids: list[str]) -> list[str]:
        return list(dict.fromkeys(survivor if sid == absorbed else sid for sid in ids))

    # only dead letters keep ids (delivered batches hold NULL): the status index narrows the scan
    only_dead = [DELIVERIES.c.status == "dead_letter"]
    rewrite_id_lists(conn, DELIVERIES, "subject_ids", [absorbed], moved, where=only_dead)


def _move_sync(conn: Connection, survivor: str, absorbed: str) -> None:
    def row_of(subject: str, name: str, *, unconfirmed: bool = False) -> sa.Exists:
        """SQL: ``subject`` has a sync row (``unconfirmed``: an unconfirmed one) for the same
        destination and segment as the row being changed."""
        other = SYNC.alias(name)
        where = [
            other.c.subject_id == subject,
            other.c.destination_id == SYNC.c.destination_id,
            other.c.segment == SYNC.c.segment,
        ]
        if unconfirmed:
            where.append(other.c.confirmed.is_(False))
        return sa.select(sa.literal(1)).where(*where).exists()

    both = row_of(survivor, "mine")
    theirs_unconfirmed = row_of(absorbed, "theirs", unconfirmed=True)
    conn.execute(
        sa.update(SYNC)
        .where(SYNC.c.subject_id == survivor, SYNC.c.confirmed.is_(True), theirs_unconfirmed)
        .values(confirmed=False)
    )
    conn.execute(sa.delete(SYNC).where(SYNC.c.subject_id == absorbed, both))
    conn.execute(sa.update(SYNC).where(SYNC.c.subject_id == absorbed).values(subject_id=survivor))


def _move_recipients(conn: Connection, survivor: str, absorbed: str) -> None:
    theirs = RECIPIENTS.alias("theirs")
    added_by_them = (
        sa.select(sa.literal(1))
        .where(
            theirs.c.subject_id == absorbed,
            theirs.c.export_id == RECIPIENTS.c.export_id,
            theirs.c.op == "add",
        )
        .exists()
    )
    conn.execute(
        sa.update(RECIPIENTS)
        .where(RECIPIENTS.c.subject_id == survivor, RECIPIENTS.c.op != "add", added_by_them)
        .values(op="add")
    )
    mine = RECIPIENTS.alias("mine")
    both = (
        sa.select(sa.literal(1))
        .where(mine.c.subject_id == survivor, mine.c.export_id == RECIPIENTS.c.export_id)
        .exists()
    )
    conn.execute(sa.delete(RECIPIENTS).where(RECIPIENTS.c.subject_id == absorbed, both))
    conn.execute(
        sa.update(RECIPIENTS).where(RECIPIENTS.c.subject_id == absorbed).values(subject_id=survivor)
    )
