"""Session settings and temporary tables for the set-based recomputes (traits, tiers, ledger).

A full recompute reads every completed order once and writes a row per subject: the work is
sorts, hash/B-tree aggregates and index inserts, which the default per-connection limits keep
on disk (SQLite: a 2 MB page cache and file-backed temporary B-trees; PostgreSQL: 4 MB of
``work_mem``). :func:`bulk_session` raises them for the computing connection only and puts
them back afterwards:

* SQLite: ``cache_size`` (:data:`SQLITE_CACHE_KIB`) and ``mmap_size`` (:data:`SQLITE_MMAP_BYTES`)
  are restored on exit; ``temp_store=MEMORY`` is set when the connection has no temporary
  database open yet and stays on that pooled connection (SQLite refuses to change it inside a
  transaction once a temporary table exists; it only moves temporary B-trees into RAM).
* PostgreSQL: ``SET LOCAL work_mem``, ``maintenance_work_mem`` and ``temp_buffers`` (the
  last only counts before the session's first temporary table), and ``synchronous_commit =
  off`` (the commit does not wait for its WAL flush: a crash right after it can lose that
  recompute, which the next run redoes; never an inconsistent state), which end with the
  transaction.

:func:`foreign_keys_checked_at_end` replaces, on PostgreSQL with ``CDP_TRAITS_EXCLUSIVE_REWRITE``
on, the per-row foreign-key check of
a bulk write (a trigger query and a ``FOR KEY SHARE`` row lock on the subject, WAL-logged, for
every inserted row) by one validation join over the whole table before the transaction ends.

:func:`temp_table` materialises an intermediate result (e.g. per-subject facts) once, so that
the statements after it (window functions for the quintiles, joins to every subject) read a
small table instead of re-running the aggregate over the orders. Both backends create it as a
session-private ``TEMPORARY`` table (not logged, invisible to other connections) and it is
dropped before the transaction ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from itertools import count
from typing import Any, Final

import sqlalchemy as sa

from cdp.settings import get_settings

SQLITE_CACHE_KIB: Final = 1_000_000  # 1 GB of page cache while computing
SQLITE_MMAP_BYTES: Final = 8 << 30
PG_WORK_MEM: Final = "256MB"
PG_MAINTENANCE_WORK_MEM: Final = "512MB"
PG_TEMP_BUFFERS: Final = "1GB"
BULK_FK_MIN_ROWS: Final = 50_000
BULK_FK_TABLE_FACTOR: Final = 4

_names = count()


def is_sqlite(conn: sa.Connection) -> bool:
    return conn.dialect.name == "sqlite"


@contextmanager
def bulk_session(conn: sa.Connection) -> Iterator[None]:
    """Raise the connection's memory limits for the duration of a bulk computation."""
    if not is_sqlite(conn):
        conn.exec_driver_sql(f"SET LOCAL work_mem = '{PG_WORK_MEM}'")
        # Only takes effect before the session's first temporary table (then it is ignored):
        # 8 MB of local buffers made filling a 1M-row keyed temporary table 5x slower.
        conn.exec_driver_sql(f"SET LOCAL temp_buffers = '{PG_TEMP_BUFFERS}'")
        conn.exec_driver_sql(f"SET LOCAL maintenance_work_mem = '{PG_MAINTENANCE_WORK_MEM}'")
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        yield
        return
    cache = conn.exec_driver_sql("PRAGMA cache_size").scalar_one()
    mmap = conn.exec_driver_sql("PRAGMA mmap_size").scalar_one()
    # Refused once the connection has a temporary database open: it then keeps its setting.
    with suppress(sa.exc.OperationalError):
        conn.exec_driver_sql("PRAGMA temp_store=MEMORY")
    conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    conn.exec_driver_sql(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size={int(cache)}")
        conn.exec_driver_sql(f"PRAGMA mmap_size={int(mmap)}")


@contextmanager
def foreign_keys_checked_at_end(
    conn: sa.Connection, table: sa.Table, *, rows: int | None = None
) -> Iterator[None]:
    """Bulk writes to ``table`` in the block without per-row foreign-key checks, on PostgreSQL
    with ``CDP_TRAITS_EXCLUSIVE_REWRITE`` on (off by default: the block runs with the usual
    per-row checks, and nothing else waits for it).

    The table's foreign keys are dropped at the start of the block and added back at its end
    with their exact definitions (``pg_get_constraintdef``), which validates every row in one
    join: a row pointing to no subject fails the ``ADD CONSTRAINT`` and rolls the whole
    transaction back, so no committed state ever lacks the constraint or breaks it, and a
    concurrent erasure cannot slip between the check and the commit. The price is locking:
    ``DROP CONSTRAINT`` takes ``ACCESS EXCLUSIVE`` on ``table`` and on ``subjects`` until the
    transaction ends, so every other statement on them (API reads, ingestion, erasures) waits
    for it; callers keep the block to the final writes of a recompute (seconds at a million
    subjects). An erasure locks the trait tables before ``subjects``, as the block does, so
    the two wait for each other instead of deadlocking.

    ``rows``: how many rows the block writes (None: the whole table is rewritten). The swap
    only pays when they are a large part of the table, since validation reads all of it:
    below :data:`BULK_FK_MIN_ROWS`, or when the table holds more than
    :data:`BULK_FK_TABLE_FACTOR` times ``rows`` (by the planner's estimate), the block runs
    with the usual per-row checks. SQLite keeps its per-row checks (they are cheap there)."""
    if (
        is_sqlite(conn)
        or not get_settings().traits_exclusive_rewrite
        or (rows is not None and rows < BULK_FK_MIN_ROWS)
    ):
        yield
        return
    params = {"t": table.name}
    if rows is not None:
        est = conn.execute(
            sa.text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"), params
        ).scalar_one()
        if est > BULK_FK_TABLE_FACTOR * rows:
            yield
            return
    fks = conn.execute(
        sa.text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = CAST(:t AS regclass) AND contype = 'f' ORDER BY conname"
        ),
        params,
    ).all()
    prep = conn.dialect.identifier_preparer
    target = prep.format_table(table)
    for name, _ in fks:
        conn.exec_driver_sql(f"ALTER TABLE {target} DROP CONSTRAINT {prep.quote(name)}")
    yield
    for name, definition in fks:  # definitions from the catalog, never from input
        conn.exec_driver_sql(f"ALTER TABLE {target} ADD CONSTRAINT {prep.quote(name)} {definition}")


def clear(conn: sa.Connection, table: sa.Table) -> None:
    """Delete every row: ``DELETE`` (readers keep seeing the old rows until commit; SQLite
    truncates a table deleted without a condition), or ``TRUNCATE`` on PostgreSQL under
    ``CDP_TRAITS_EXCLUSIVE_REWRITE`` (no dead rows left for vacuum; it takes the table's
    exclusive lock, so call it where :func:`foreign_keys_checked_at_end` already holds it)."""
    if is_sqlite(conn) or not get_settings().traits_exclusive_rewrite:
        conn.execute(sa.delete(table))
    else:
        conn.exec_driver_sql(f"TRUNCATE {conn.dialect.identifier_preparer.format_table(table)}")


@contextmanager
def temp_table(
    conn: sa.Connection,
    prefix: str,
    columns: list[sa.Column[Any]],
    select: sa.Select[Any],
    *,
    primary_key: str | None = None,
) -> Iterator[sa.Table]:
    """A temporary table filled from ``select`` (columns in order), dropped afterwards.

    ``primary_key`` names a column to index (lookups by subject); leave it out for a table
    that is only scanned. On failure nothing is dropped: the rollback removes the table."""
    items: list[Any] = list(columns)
    if primary_key is not None:
        items.append(sa.PrimaryKeyConstraint(primary_key))
    table = sa.Table(f"tmp_{prefix}_{next(_names)}", sa.MetaData(), *items, prefixes=["TEMPORARY"])
    table.create(conn)
    conn.execute(sa.insert(table).from_select([c.name for c in columns], select))
    if not is_sqlite(conn):
        conn.exec_driver_sql(f"ANALYZE {table.name}")
    yield table
    table.drop(conn)


def bulk_insert(
    conn: sa.Connection,
    table: sa.Table,
    columns: list[str],
    rows: Iterable[tuple[Any, ...]],
    *,
    constants: dict[str, Any] | None = None,
) -> None:
    """Insert computed rows fast, in the connection's transaction: COPY on PostgreSQL, the
    driver's executemany on SQLite (one prepared statement, no per-row work in SQLAlchemy).

    ``rows`` hold plain numbers, strings, booleans and None for ``columns``; ``constants``
    (the same value on every row, e.g. the computation time) are bound once, through the
    column types, so that they are stored exactly as a Core insert would store them."""
    fixed = constants or {}
    names = [*columns, *fixed]
    prep = conn.dialect.identifier_preparer
    quoted = ", ".join(prep.quote(n) for n in names)
    target = prep.format_table(table)  # names from the model, never from input
    raw: Any = conn.connection.dbapi_connection
    if is_sqlite(conn):
        values = []
        for name, value in fixed.items():
            proc = table.c[name].type.bind_processor(conn.dialect)
            values.append(proc(value) if proc else value)
        tail = tuple(values)
        marks = ", ".join("?" for _ in names)
        cur = raw.cursor()
        try:
            cur.executemany(
                f"INSERT INTO {target} ({quoted}) VALUES ({marks})",  # noqa: S608
                ((*row, *tail) for row in rows),
            )
        finally:
            cur.close()
        return
    tail = tuple(fixed.values())
    with raw.cursor() as pg_cur, pg_cur.copy(f"COPY {target} ({quoted}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row((*row, *tail))
