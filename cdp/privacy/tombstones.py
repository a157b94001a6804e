"""Tombstones: the identity tokens of erased subjects, written by erasure so that a late or
replayed record cannot recreate the person (ingestion refuses a tombstoned identity)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from cdp.db.models import Identity, Tombstone


def tombstone_rows(conn: Connection, subject_ids: Sequence[str], now: Any) -> list[dict[str, Any]]:
    """One tombstone row per identity of ``subject_ids``."""
    ident = Identity.__table__  # type: ignore[attr-defined]
    rows = conn.execute(
        sa.select(ident.c.kind, ident.c.token, ident.c.key_version).where(
            ident.c.subject_id.in_(subject_ids)
        )
    ).all()
    return [
        {"kind": r.kind, "token": r.token, "key_version": r.key_version, "erased_at": now}
        for r in rows
    ]


def insert_tombstones(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert the tombstones not already there; return how many were new (executemany row
    counts are not reliable across drivers, so the new ones are found first)."""
    if not rows:
        return 0
    table = Tombstone.__table__  # type: ignore[attr-defined]
    have = {
        (r.kind, r.token)
        for r in conn.execute(
            sa.select(table.c.kind, table.c.token).where(
                table.c.token.in_([r["token"] for r in rows])
            )
        )
    }
    new = list(
        {(r["kind"], r["token"]): r for r in rows if (r["kind"], r["token"]) not in have}.values()
    )
    if new:
        dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        stmt = dialect_insert(table).on_conflict_do_nothing(index_elements=["kind", "token"])
        conn.execute(stmt, new)
    return len(new)
