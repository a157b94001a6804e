"""The vault's rows: one ``pii_records`` row a subject, its fields sealed together.

Every reader and writer of stored personal data goes through here (profiles, ingestion, merges,
rectification, access packages, exports), so the layout of the row (:mod:`cdp.crypto.sealed_record`)
is known in one place. Values stay sealed: decrypting is the vault's, on the fields a caller
may see.

A change to some fields rewrites the subject's whole row. Writers read the row first in the same
transaction; on PostgreSQL they read it ``FOR UPDATE`` (``lock=True``), so two transactions
changing different fields of one subject queue instead of one overwriting the other's field
(SQLite's writers already hold the database's write lock from ``BEGIN``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.crypto.sealed_record import FIELD_NUMBER, mask, pack, unpack
from cdp.db.models import PiiRecord
from cdp.ingest.bulk import insert_tuples, update_rows

PII_RECORDS = cast(sa.Table, PiiRecord.__table__)  # type: ignore[attr-defined]

_IN_CHUNK = 5_000


def read_sealed(
    conn: Connection,
    subject_ids: Sequence[str],
    *,
    wanted: Collection[str] | None = None,
    lock: bool = False,
) -> dict[str, dict[str, bytes]]:
    """``{subject_id: {field: ciphertext}}`` of the subjects that have a row (``wanted``: only
    those fields). ``lock``: read ``FOR UPDATE`` on PostgreSQL (before rewriting the rows)."""
    out: dict[str, dict[str, bytes]] = {}
    for start in range(0, len(subject_ids), _IN_CHUNK):
        chunk = list(subject_ids[start : start + _IN_CHUNK])
        query = sa.select(PII_RECORDS.c.subject_id, PII_RECORDS.c.sealed).where(
            PII_RECORDS.c.subject_id.in_(chunk)
        )
        if lock and conn.dialect.name == "postgresql":
            query = query.order_by(PII_RECORDS.c.subject_id).with_for_update()
        for sid, sealed in conn.execute(query):
            out[sid] = unpack(bytes(sealed), wanted)
    return out


def read_one(
    conn: Connection, subject_id: str, *, wanted: Collection[str] | None = None, lock: bool = False
) -> dict[str, bytes]:
    """One subject's ``{field: ciphertext}`` (empty when it has no row)."""
    return read_sealed(conn, [subject_id], wanted=wanted, lock=lock).get(subject_id, {})


def write_sealed(
    conn: Connection,
    records: Mapping[str, Mapping[str, bytes]],
    *,
    existing: Collection[str],
    now: datetime,
) -> None:
    """Store each subject's whole ``{field: ciphertext}``: an update for subjects in
    ``existing`` (they have a row), an insert for the others; a subject left with no field
    loses its row."""
    inserts: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    emptied: list[str] = []
    for sid in sorted(records):
        blobs = records[sid]
        if not blobs:
            if sid in existing:
                emptied.append(sid)
            continue
        row = (mask(blobs), pack(blobs), now)
        if sid in existing:
            updates.append((*row, sid))
        else:
            inserts.append((sid, *row))
    insert_tuples(conn, PII_RECORDS, ("subject_id", "fields", "sealed", "updated_at"), inserts)
    update_rows(conn, PII_RECORDS, "subject_id", ("fields", "sealed", "updated_at"), updates)
    if emptied:
        delete_records(conn, emptied)


def delete_records(conn: Connection, subject_ids: Sequence[str]) -> None:
    """Remove the subjects' rows."""
    for start in range(0, len(subject_ids), _IN_CHUNK):
        chunk = list(subject_ids[start : start + _IN_CHUNK])
        conn.execute(sa.delete(PII_RECORDS).where(PII_RECORDS.c.subject_id.in_(chunk)))


def has_any_field(subject_id: sa.ColumnElement[Any], fields: Collection[str]) -> sa.Exists:
    """SQL: the subject has at least one of ``fields`` stored (from the row's field bits; the
    record itself is not read). Names the vault does not store never match."""
    bits = mask(f for f in fields if f in FIELD_NUMBER)
    return (
        sa.select(sa.literal(1))
        .where(
            PII_RECORDS.c.subject_id == subject_id,
            PII_RECORDS.c.fields.op("&")(bits) != 0,
        )
        .exists()
    )
