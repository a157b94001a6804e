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

:func:`without_nested_loops` plans the statements inside it on PostgreSQL without nested-loop
joins (for an ``INSERT ... SELECT`` whose anti-join reads the table it fills).

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

SQLITE_CACHE_KIB: Final = 1_000_000  # 1 GB of page cache while computing
SQLITE_MMAP_BYTES: Final = 8 << 30
PG_WORK_MEM: Final = "256MB"
PG_MAINTENANCE_WORK_MEM: Final = "512MB"
PG_TEMP_BUFFERS: Final = "1GB"

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
def without_nested_loops(conn: sa.Connection) -> Iterator[None]:
    """PostgreSQL: plan the statements inside without nested-loop joins (``SET LOCAL
    enable_nestloop = off``, its previous value back afterwards; on failure the transaction's
    end restores it). For an ``INSERT ... SELECT`` whose anti-join reads the table it fills:
    with statistics that say that table is empty (``ANALYZE`` run before its first lines), the
    planner re-scans it for every row of the outer side, over the rows the statement itself is
    adding, which is quadratic; a hash or merge anti-join reads it once. SQLite: nothing."""
    if is_sqlite(conn):
        yield
        return
    before = conn.exec_driver_sql("SELECT current_setting('enable_nestloop')").scalar_one()
    conn.exec_driver_sql("SET LOCAL enable_nestloop = off")
    yield
    conn.exec_driver_sql(f"SET LOCAL enable_nestloop = {'on' if before == 'on' else 'off'}")


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
