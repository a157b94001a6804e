"""Bulk decryption of a chunk of subjects, only the fields asked for.

Per chunk: the subjects' data keys come from one key-store read (``vault.bulk_keys``: cached
keys are used, the others are unwrapped without filling the cache, so an export does not evict
the keys interactive paths keep warm), the sealed records from one ``IN`` query (a plain text
statement on the driver's cursor: rows come back as tuples, without per-value type processing),
and of each record only the wanted fields are decrypted, in one pass over the chunk
(``sealed_record.decrypt_records``). A subject whose key is gone (erased while the export ran),
whose record does not parse or whose ciphertext does not authenticate is left out and named (by
id only) in the log; the export counts it as having no usable data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from cdp.crypto.sealed_record import decrypt_records
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


def decrypt_chunk(
    runtime: Runtime, subject_ids: Sequence[str], fields: Sequence[str]
) -> dict[str, dict[str, str]]:
    """``{subject_id: {field: value}}`` for the chunk's subjects that have any of ``fields``.

    The chunk's keys come from ``vault.bulk_keys`` (cached keys are used, the others unwrapped
    without filling the cache)."""
    keys = runtime.vault.bulk_keys(subject_ids)
    records = _records(runtime.data_engine, list(subject_ids))
    out, failed = decrypt_records(keys, records, fields)
    # key shredded meanwhile, a record that does not parse, a value that does not authenticate
    for sid in failed:
        log.error("export skipped a subject whose data does not decrypt", subject_id=sid)
    return out
