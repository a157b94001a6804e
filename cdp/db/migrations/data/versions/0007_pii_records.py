"""The PII vault keeps one row a subject: ``pii_values`` becomes ``pii_records``

Revision ID: 0007
Revises: 0006t
Create Date: 2026-11-23

A subject's field ciphertexts, each unchanged (same bytes, same nonce, same AAD), are packed into
one ``sealed`` value (``cdp.crypto.sealed_record``); ``fields`` is the bit set of the fields
present. Writing a customer was one row (and one index entry, and one key check) a field; a
profile read and an export read one index range a subject. The format is written out here, not
imported, so that this revision keeps meaning what it meant when it was written. The downgrade
unpacks the rows again.
"""

import struct
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

import cdp.db.types

revision = "0007"
down_revision = "0006t"
branch_labels = None
depends_on = None

RECORD_FORMAT = 1
VAULT_FIELDS = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "birthday",
    "gender",
    "street",
    "city",
    "postal_code",
    "state",
    "country",
    "custom_traits",
)
NUMBER = {f: i for i, f in enumerate(VAULT_FIELDS)}
ENTRY = struct.Struct(">BI")
BATCH = 5_000


def _pack(fields: dict[str, bytes]) -> tuple[int, bytes]:
    bits, parts = 0, [bytes([RECORD_FORMAT])]
    for number, name in sorted((NUMBER[f], f) for f in fields):
        bits |= 1 << number
        parts += [ENTRY.pack(number, len(fields[name])), fields[name]]
    return bits, b"".join(parts)


def _unpack(sealed: bytes) -> Iterator[tuple[str, bytes]]:
    if not sealed or sealed[0] != RECORD_FORMAT:
        raise ValueError("a sealed PII record has an unknown format")
    pos = 1
    while pos < len(sealed):
        number, length = ENTRY.unpack_from(sealed, pos)
        yield VAULT_FIELDS[number], sealed[pos + 5 : pos + 5 + length]
        pos += 5 + length


def _subject_column() -> sa.Column[Any]:
    return sa.Column(
        "subject_id",
        sa.String(length=32),
        sa.ForeignKey("subjects.id", ondelete="CASCADE"),
        primary_key=True,
        nullable=False,
    )


def _flush(table: sa.Table, rows: list[dict[str, Any]]) -> None:
    if rows:
        op.get_bind().execute(table.insert(), rows)
        rows.clear()


def upgrade() -> None:
    records = op.create_table(
        "pii_records",
        _subject_column(),
        sa.Column("fields", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", cdp.db.types.UtcDateTime(), nullable=False),
    )
    old = sa.table(
        "pii_values",
        sa.column("subject_id", sa.String()),
        sa.column("field", sa.String()),
        sa.column("ciphertext", sa.LargeBinary()),
        sa.column("updated_at", cdp.db.types.UtcDateTime()),
    )
    bind = op.get_bind()
    query = sa.select(old.c.subject_id, old.c.field, old.c.ciphertext, old.c.updated_at)
    rows: list[dict[str, Any]] = []
    current: str | None = None
    fields: dict[str, bytes] = {}
    latest: Any = None

    def close() -> None:
        if current is not None:
            bits, sealed = _pack(fields)
            rows.append({"subject_id": current, "fields": bits, "sealed": sealed,
                         "updated_at": latest})  # fmt: skip
            if len(rows) >= BATCH:
                _flush(records, rows)

    # yield_per on the statement (on the connection it would apply to every later statement)
    result = bind.execute(
        query.order_by(old.c.subject_id, old.c.field).execution_options(yield_per=BATCH)
    )
    for sid, field, blob, at in result:
        if sid != current:
            close()
            current, fields, latest = sid, {}, at
        fields[field] = bytes(blob)
        latest = max(latest, at)
    close()
    _flush(records, rows)
    op.drop_table("pii_values")


def downgrade() -> None:
    values = op.create_table(
        "pii_values",
        _subject_column(),
        sa.Column("field", sa.String(length=64), primary_key=True, nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", cdp.db.types.UtcDateTime(), nullable=False),
    )
    new = sa.table(
        "pii_records",
        sa.column("subject_id", sa.String()),
        sa.column("sealed", sa.LargeBinary()),
        sa.column("updated_at", cdp.db.types.UtcDateTime()),
    )
    bind = op.get_bind()
    rows: list[dict[str, Any]] = []
    query = sa.select(new.c.subject_id, new.c.sealed, new.c.updated_at)
    result = bind.execute(query.order_by(new.c.subject_id).execution_options(yield_per=BATCH))
    for sid, sealed, at in result:
        for field, blob in _unpack(bytes(sealed)):
            rows.append({"subject_id": sid, "field": field, "ciphertext": blob, "updated_at": at})
        if len(rows) >= BATCH:
            _flush(values, rows)
    _flush(values, rows)
    op.drop_table("pii_records")
