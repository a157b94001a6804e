"""Bulk decryption of a chunk of subjects, only the fields asked for.

Per chunk: the subjects' data keys come from one key-store read (``vault.bulk_keys``: cached
keys are used, the others are unwrapped without filling the cache, so an export does not evict
the keys interactive paths keep warm), the sealed records from one ``IN`` query (a plain text
statement on the driver's cursor: rows come back as tuples, without per-value type processing)
— both as one range of ids instead when the chunk is dense (:func:`is_dense`) — and of each
record only the wanted fields are decrypted, in one pass over the chunk
(``sealed_record.decrypt_records``). A subject whose key is gone (erased while the export ran),
whose record does not parse or whose ciphertext does not authenticate is left out and named (by
id only) in the log; the export counts it as having no usable data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from cdp.crypto.sealed_record import decrypt_records
from cdp.db.dense import read_dense
from cdp.logging import get_logger
from cdp.runtime import Runtime

log = get_logger("cdp.exports")

_QUERY = sa.text("SELECT subject_id, sealed FROM pii_records WHERE subject_id IN :ids").bindparams(
    sa.bindparam("ids", expanding=True)
)


_RANGE = sa.text(
    "SELECT subject_id, sealed FROM pii_records "
    "WHERE subject_id >= :first AND subject_id <= :last LIMIT :limit"
)


def _records(engine: sa.Engine, ids: list[str], *, dense: bool = False) -> list[tuple[str, bytes]]:
    """``(subject_id, sealed record)`` of ``ids`` that have one (one read, on the driver's
    cursor: no per-value type processing).

    ``dense``: most records between the smallest and the largest id are wanted (a chunk of a
    large audience), so they are read as one range of the primary key, cheaper than a lookup
    per id, and the others dropped; ids the range did not yield are looked up as usual, and a
    range holding more than twice as many records as ids is abandoned for the lookups."""

    def lookups(wanted: list[str]) -> list[tuple[str, bytes]]:
        return _read(engine, _QUERY, {"ids": wanted})

    if not dense:
        return lookups(ids)
    return read_dense(
        ids,
        lambda first, last, limit: _read(
            engine, _RANGE, {"first": first, "last": last, "limit": limit}
        ),
        lookups,
    )


def _read(
    engine: sa.Engine, query: sa.TextClause, params: dict[str, Any]
) -> list[tuple[str, bytes]]:
    """Run one of the two reads above: on the driver's cursor on SQLite (an autocommit read,
    isolation_level None: one statement) and PostgreSQL, through SQLAlchemy elsewhere."""
    dialect = engine.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        with engine.connect() as conn:
            return [(r[0], r[1]) for r in conn.execute(query, params)]
    raw = engine.raw_connection()
    try:
        cur: Any = raw.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.execute(*_driver_sql(dialect, query, params))
            rows: list[tuple[str, bytes]] = cur.fetchall()
        finally:
            cur.close()
    finally:
        raw.close()
    return rows


def _driver_sql(dialect: str, query: sa.TextClause, params: dict[str, Any]) -> tuple[str, Any]:
    mark = "?" if dialect == "sqlite" else "%s"
    if query is _RANGE:
        return (
            "SELECT subject_id, sealed FROM pii_records "  # noqa: S608 (placeholders only)
            f"WHERE subject_id >= {mark} AND subject_id <= {mark} LIMIT {mark}",
            (params["first"], params["last"], params["limit"]),
        )
    ids = params["ids"]
    if dialect == "sqlite":
        marks = ",".join("?" * len(ids))
        return (
            f"SELECT subject_id, sealed FROM pii_records WHERE subject_id IN ({marks})",  # noqa: S608
            ids,
        )
    return ("SELECT subject_id, sealed FROM pii_records WHERE subject_id = ANY(%s)", (ids,))


def decrypt_chunk(
    runtime: Runtime, subject_ids: Sequence[str], fields: Sequence[str], *, dense: bool = False
) -> dict[str, dict[str, str]]:
    """``{subject_id: {field: value}}`` for the chunk's subjects that have any of ``fields``.

    The chunk's keys come from ``vault.bulk_keys`` (cached keys are used, the others unwrapped
    without filling the cache). ``dense``: most subjects whose ids lie between the chunk's
    smallest and largest are in the chunk (see :func:`is_dense`): keys and records are then read
    as ranges of ids."""
    keys = runtime.vault.bulk_keys(subject_ids, dense=dense)
    records = _records(runtime.data_engine, list(subject_ids), dense=dense)
    out, failed = decrypt_records(keys, records, fields)
    # key shredded meanwhile, a record that does not parse, a value that does not authenticate
    for sid in failed:
        log.error("export skipped a subject whose data does not decrypt", subject_id=sid)
    return out


#: A chunk is read as ranges when the subjects stored between its smallest and largest id are
#: expected to be at most this many times its size.
DENSE_RATIO = 1.25
_ID_SPACE = 16**32


def stored_subjects(runtime: Runtime) -> int:
    """How many subjects have a sealed record (one count per export, for :func:`is_dense`)."""
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM pii_records")).scalar_one())


def is_dense(subject_ids: Sequence[str], stored: int) -> bool:
    """Whether ``subject_ids`` (sorted, as staging pages them) cover most of the ``stored``
    subjects whose ids lie between their first and last: subject ids are 128 random bits in
    hex, so the stored ones spread evenly over the id space and the span predicts how many
    lie in it. Ids of another shape are never dense."""
    if len(subject_ids) < 2:
        return False
    first, last = subject_ids[0], subject_ids[-1]
    if len(first) != 32 or len(last) != 32:
        return False
    try:
        span = int(last, 16) - int(first, 16)
    except ValueError:
        return False
    return span >= 0 and stored * span / _ID_SPACE <= DENSE_RATIO * len(subject_ids)
