"""Bulk inserts below SQLAlchemy's per-value bind processing (the ingest hot path).

SQLAlchemy Core ``executemany`` spends most of its time converting each bound value; for
hundreds of thousands of rows that dominates ingestion. Here rows go to the driver directly:
SQLite gets ``executemany`` with plain tuples (datetimes written exactly as SQLAlchemy writes
them: naive UTC, ``YYYY-MM-DD HH:MM:SS.ffffff``, so every reader sees the same values), and
PostgreSQL gets ``COPY ... FROM STDIN`` through psycopg, inside the caller's transaction. Other
dialects fall back to Core.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.db.types import UtcDateTime
from cdp.errors import InvalidInputError
from cdp.validation import text_problem


def _sqlite_datetime(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is UTC:  # the usual case: the same text in one call
            return value.isoformat(" ", "microseconds")[:-6]
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; attach a timezone")
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    return value


def _sqlite_times(data: list[Any], times: Sequence[int]) -> list[Any]:
    """``data`` with the datetimes at positions ``times`` as SQLite text (each distinct value
    converted once: a batch's rows share a few timestamps, its "now")."""
    seen: dict[Any, Any] = {}

    def stamp(value: Any) -> Any:
        out = seen.get(value)
        if out is None:
            out = seen[value] = _sqlite_datetime(value)
        return out

    if len(times) == 1:
        i = times[0]
        return [(*t[:i], stamp(t[i]), *t[i + 1 :]) for t in data]
    fixed = []
    for t in data:
        row = list(t)
        for i in times:
            row[i] = stamp(row[i])
        fixed.append(tuple(row))
    return fixed


def insert_rows(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    *,
    order_by: Sequence[str] = (),
) -> None:
    """Insert ``rows`` (dicts with the same keys) into ``table`` in the open transaction.

    ``order_by`` names columns to sort the rows by first: rows that arrive in index order touch
    each B-tree page once per batch instead of once per row (random keys such as subject ids and
    tokens otherwise spread a batch over the whole index)."""
    if not rows:
        return
    columns = [c for c in table.columns if c.name in rows[0]]
    names = [c.name for c in columns]
    get = itemgetter(*names)
    data: list[Any] = list(map(get, rows)) if len(names) > 1 else [(get(r),) for r in rows]
    if order_by:
        data.sort(key=_sort_key([names.index(n) for n in order_by], data[0]))
    insert_tuples(conn, table, names, data)


def _sort_key(positions: list[int], sample: Sequence[Any]) -> Callable[[Any], Any]:
    """A sort key for tuples by the columns at ``positions``. Text columns are joined with NUL
    into one string, which orders exactly as the tuple of them would (ids, kinds, tokens and
    field names hold no NUL) and sorts about twice as fast as tuple keys."""
    if len(positions) == 1:
        return itemgetter(positions[0])
    if len(positions) == 2 and all(isinstance(sample[i], str) for i in positions):
        i, j = positions
        return lambda t: t[i] + "\x00" + t[j]
    return itemgetter(*positions)


def insert_tuples(conn: Connection, table: sa.Table, names: Sequence[str], data: list[Any]) -> None:
    """Insert rows given as tuples in the order of ``names`` (the fastest path: no dicts)."""
    if not data:
        return
    columns = [table.c[n] for n in names]
    dialect = conn.dialect.name
    if dialect == "sqlite":
        times = [i for i, c in enumerate(columns) if isinstance(c.type, UtcDateTime)]
        if times:
            data = _sqlite_times(data, times)
        marks = ", ".join("?" for _ in names)
        try:
            conn.exec_driver_sql(
                f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})",  # noqa: S608
                data,
            )
        except UnicodeEncodeError as exc:
            raise unstorable(table.name, names, data) from exc
        return
    if dialect == "postgresql":
        raw = conn.connection.driver_connection
        sql = f"COPY {table.name} ({', '.join(names)}) FROM STDIN"
        try:
            with raw.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[union-attr]
                write = copy.write_row
                for r in data:
                    write(r)
        except psycopg.IntegrityError as exc:
            # The driver's own cursor bypasses SQLAlchemy, which would have wrapped these: callers
            # (the batch retry on a concurrent writer's unique key) catch SQLAlchemy's classes.
            raise sa.exc.IntegrityError(sql, None, exc) from exc
        except psycopg.OperationalError as exc:
            raise sa.exc.OperationalError(sql, None, exc) from exc
        except (psycopg.DataError, UnicodeEncodeError) as exc:
            raise unstorable(table.name, names, data) from exc
        return
    conn.execute(sa.insert(table), [dict(zip(names, r, strict=True)) for r in data])


def _unstorable_text(value: Any) -> bool:
    return value.__class__ is str and text_problem(value) is not None


def unstorable(table: str, names: Sequence[str], data: Sequence[Any]) -> InvalidInputError:
    """The error for a batch holding a value the database cannot store: a NUL (PostgreSQL text
    cannot hold one) or a lone surrogate (not UTF-8). Validation refuses both in every text field
    a record has (``cdp.ingest.records``), so this is a guard: the batch's transaction is rolled
    back whole, and the error names the column (never the value) instead of surfacing as an
    internal error."""
    for row in data:
        for name, value in zip(names, row, strict=False):
            if _unstorable_text(value):
                return InvalidInputError(
                    f"{table}.{name} of a record holds a NUL character or a lone surrogate, "
                    "which the database cannot store; nothing of this batch was stored",
                    field=f"{table}.{name}",
                )
    return InvalidInputError(
        f"a value of {table} cannot be stored; nothing of this batch was stored", field=table
    )


def update_rows(
    conn: Connection, table: sa.Table, key: str, names: Sequence[str], data: list[Any]
) -> None:
    """``UPDATE table SET names… WHERE key = …`` for each tuple ``(*values, key value)`` of
    ``data``, through the driver's executemany (no per-value processing, as in inserts)."""
    if not data:
        return
    columns = [table.c[n] for n in names]
    if conn.dialect.name == "sqlite":
        times = [i for i, c in enumerate(columns) if isinstance(c.type, UtcDateTime)]
        if times:
            data = _sqlite_times(data, times)
        mark = "?"
    elif conn.dialect.name == "postgresql":
        mark = "%s"
    else:
        stmt = sa.update(table).where(table.c[key] == sa.bindparam("k_"))
        stmt = stmt.values({n: sa.bindparam(f"v_{n}") for n in names})
        conn.execute(
            stmt,
            [{"k_": t[-1], **{f"v_{n}": v for n, v in zip(names, t, strict=False)}} for t in data],
        )
        return
    sets = ", ".join(f"{n} = {mark}" for n in names)
    conn.exec_driver_sql(
        f"UPDATE {table.name} SET {sets} WHERE {key} = {mark}",  # noqa: S608
        data,
    )


def select_in(
    conn: Connection,
    table: sa.Table,
    key: str,
    values: Sequence[str],
    columns: Sequence[str],
    *,
    equals: tuple[str, str] | None = None,
    chunk: int = 5_000,
) -> list[tuple[Any, ...]]:
    """Rows of ``table`` whose ``key`` is in ``values`` (and ``equals`` = (column, value)).

    Uses the unique index on ``key`` (never a scan) and skips SQLAlchemy's statement compilation,
    which for thousands of bound values costs more than the query: SQLite gets ``IN (?, …)``
    (chunks of 5,000), PostgreSQL ``= ANY(%s)`` with one array parameter. Values come back as the
    driver returns them (only use it for text and integer columns)."""
    if not values:
        return []
    names = ", ".join(columns)
    out: list[tuple[Any, ...]] = []
    if conn.dialect.name == "postgresql":
        sql = f"SELECT {names} FROM {table.name} WHERE {key} = ANY(%s)"  # noqa: S608
        params: list[Any] = [list(values)]
        if equals is not None:
            sql += f" AND {equals[0]} = %s"
            params.append(equals[1])
        out.extend(tuple(r) for r in conn.exec_driver_sql(sql, tuple(params)))
        return out
    if conn.dialect.name != "sqlite":
        for start in range(0, len(values), chunk):
            part, sql = _in_query(table, key, values[start : start + chunk], names, equals)
            out.extend(tuple(r) for r in conn.exec_driver_sql(sql, tuple(part)))
        return out
    # SQLite: the driver's cursor in the open transaction, rows as its plain tuples (SQLAlchemy's
    # result rows cost more than the query for thousands of them); its errors as SQLAlchemy's
    raw = conn.connection.driver_connection
    for start in range(0, len(values), chunk):
        part, sql = _in_query(table, key, values[start : start + chunk], names, equals)
        try:
            out.extend(raw.execute(sql, part).fetchall())  # type: ignore[union-attr]
        except sqlite3.Error as exc:
            raise sa.exc.DBAPIError.instance(
                sql, None, exc, sqlite3.Error, hide_parameters=True
            ) from exc
    return out


def _in_query(
    table: sa.Table,
    key: str,
    values: Sequence[str],
    names: str,
    equals: tuple[str, str] | None,
) -> tuple[list[Any], str]:
    part: list[Any] = list(values)
    marks = ",".join("?" * len(part))
    sql = f"SELECT {names} FROM {table.name} WHERE {key} IN ({marks})"  # noqa: S608
    if equals is not None:
        sql += f" AND {equals[0]} = ?"
        part.append(equals[1])
    return part, sql
