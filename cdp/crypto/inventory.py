"""What an installation already holds: data keys in the key store, subjects in the data database.

``cdp init`` and a process whose key file is missing ask this before advising or doing anything
that mints key material: new key material beside existing data makes that data unreadable (new
KEK: old data keys do not unwrap; new pseudonym key: every identity gets a new token, so the
same person is ingested again as someone new). Reads only; never creates a database file.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Engine


def _exists(engine: Engine) -> bool:
    """Whether the database can hold anything yet (an SQLite file not yet created cannot; a
    connection would create it)."""
    if engine.dialect.name != "sqlite":
        return True
    database = engine.url.database
    return database is not None and database not in ("", ":memory:") and Path(database).exists()


def _has_row(engine: Engine, table: str) -> bool | None:
    """Whether ``table`` has a row; None when the database or the table does not exist."""
    if not _exists(engine):
        return None
    conn = engine.connect().execution_options(sqlite_begin="DEFERRED")
    with conn:
        if not sa.inspect(conn).has_table(table):
            return None
        return conn.execute(sa.text(f"SELECT 1 FROM {table} LIMIT 1")).first() is not None  # noqa: S608


def holds_data_keys(key_engine: Engine) -> bool:
    """Whether the key store holds any data key."""
    return bool(_has_row(key_engine, "data_keys"))


def holds_subjects(data_engine: Engine) -> bool:
    """Whether the data database holds any subject (a person's profile)."""
    return bool(_has_row(data_engine, "subjects"))
