"""Incremental sync state and the recipients ledger, updated when an export ends.

The sync state (``export_sync_members``) is, per destination and segment, the set of subjects
the destination holds: the next run sends only the eligible subjects not in it (adds) and
withdraws the ones in it that are no longer eligible (removes) — a consent withdrawal or a
restriction turns into a remove. ``--full`` resends every eligible subject. Subjects in a
dead-lettered webhook batch are left out of both tables, so the next run tries them again.

Both updates are set-based (``INSERT ... SELECT`` / ``DELETE ... WHERE IN (SELECT ...)`` from the
staging rows) and run in the transaction that closes the export, so the ledger, the sync state
and the manifest agree.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.exports.models import ExportRecipient
from cdp.exports.staging import STAGING, SYNC

RECIPIENTS = cast(sa.Table, ExportRecipient.__table__)  # type: ignore[attr-defined]


def apply(
    conn: Connection,
    *,
    export_id: str,
    destination_id: str,
    segment: str,
    fields: str,
    at: datetime,
) -> None:
    """Move the sync state and append the recipients ledger from the staging rows."""
    staged = (
        sa.select(STAGING.c.subject_id)
        .where(
            STAGING.c.export_id == export_id,
            STAGING.c.action.in_(["add", "remove", "lost"]),
        )
        .scalar_subquery()
    )
    conn.execute(
        sa.delete(SYNC).where(
            SYNC.c.destination_id == destination_id,
            SYNC.c.segment == segment,
            SYNC.c.subject_id.in_(staged),
        )
    )
    adds = sa.select(
        sa.literal(destination_id), sa.literal(segment), STAGING.c.subject_id, sa.literal(export_id)
    ).where(STAGING.c.export_id == export_id, STAGING.c.action == "add")
    conn.execute(
        sa.insert(SYNC).from_select(["destination_id", "segment", "subject_id", "export_id"], adds)
    )
    sent = sa.select(
        sa.literal(export_id),
        STAGING.c.subject_id,
        sa.literal(destination_id),
        STAGING.c.action,
        sa.literal(fields),
        sa.literal(at, type_=RECIPIENTS.c.at.type),
    ).where(STAGING.c.export_id == export_id, STAGING.c.action.in_(["add", "remove"]))
    conn.execute(
        sa.insert(RECIPIENTS).from_select(
            ["export_id", "subject_id", "destination_id", "op", "fields", "at"], sent
        )
    )
