"""Bulk decryption of a chunk of subjects, only the fields asked for.

Per chunk: the subjects' ready ciphers come from one key-store read (``vault.ciphers``: cached
keys are used, the others are unwrapped without filling the cache, so an export does not evict
the keys interactive paths keep warm), the sealed records from one ``IN`` query (a plain text
statement on the driver's cursor: rows come back as tuples, without per-value type processing),
and of each record only the wanted fields are unpacked and decrypted, in one pass over the chunk
(``decrypt_rows``). A subject whose key is gone (erased while the export ran), whose record does
not parse or whose ciphertext does not authenticate is left out and named (by id only) in the
log; the export counts it as having no usable data.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from cdp.crypto.cipher import decrypt_rows
from cdp.crypto.sealed_record import unpack
from cdp.errors import DecryptionError
from cdp.logging import get_logger
from cdp.runtime import Runtime

log = get_logger("cdp.exports")

_QUERY = sa.text("SELECT subject_id, sealed FROM pii_records WHERE subject_id IN :ids").bindparams(
    sa.bindparam("ids", expanding=True)
)


def _records(engine: sa.Engine, ids: list[str]) -> list[tuple[str, bytes]]:
    """``(subject_id, sealed record)`` of ``ids`` that have one (one read, on the driver's
    cursor: no per-value type processing)."""
    dialect = engine.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        with engine.connect() as conn:
            return [(r[0], r[1]) for r in conn.execute(_QUERY, {"ids": ids})]
    raw = engine.raw_connection()
    try:
        cur: Any = raw.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            if dialect == "sqlite":  # autocommit read (isolation_level None): one statement
                marks = ",".join("?" * len(ids))
                cur.execute(
                    f"SELECT subject_id, sealed FROM pii_records WHERE subject_id IN ({marks})",  # noqa: S608
                    ids,
                )
            else:
                cur.execute(
                    "SELECT subject_id, sealed FROM pii_records WHERE subject_id = ANY(%s)", (ids,)
                )
            rows: list[tuple[str, bytes]] = cur.fetchall()
        finally:
            cur.close()
    finally:
        raw.close()
    return rows


def _field_rows(
    records: list[tuple[str, bytes]], wanted: frozenset[str], malformed: list[str]
) -> Iterator[tuple[str, str, bytes]]:
    """``(subject_id, field, ciphertext)`` of the wanted fields; a record that does not parse
    is named in ``malformed`` and yields nothing."""
    for sid, sealed in records:
        try:
            fields = unpack(sealed, wanted)
        except DecryptionError:
            malformed.append(sid)
            continue
        for field, blob in fields.items():
            yield sid, field, blob


def decrypt_chunk(
    runtime: Runtime, subject_ids: Sequence[str], fields: Sequence[str]
) -> dict[str, dict[str, str]]:
    """``{subject_id: {field: value}}`` for the chunk's subjects that have any of ``fields``."""
    ciphers = runtime.vault.ciphers(subject_ids)
    wanted = frozenset(fields)
    malformed: list[str] = []
    rows = _field_rows(_records(runtime.data_engine, list(subject_ids)), wanted, malformed)
    out, failed = decrypt_rows(ciphers, rows, wanted)
    # key shredded meanwhile, a record that does not parse, a value that does not authenticate
    for sid in (*failed, *malformed):
        log.error("export skipped a subject whose data does not decrypt", subject_id=sid)
    return out
