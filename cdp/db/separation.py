"""The key store must never live in the data database, however the two URLs are written.

A backup of the data must never carry the keys that decrypt it: that is what makes erasure by
crypto-shredding reach old backups (docs/operations.md). Comparing the two URLs as strings only
catches the same spelling; ``localhost`` for ``127.0.0.1``, a port left out, ``postgresql://``
for ``postgresql+psycopg://``, a query parameter, or ``./`` in a SQLite path all reach the same
database. So :func:`check_separate` compares what each engine reaches:

- SQLite: the file (its device and inode when it exists, else its resolved path);
- PostgreSQL: the server (its start time, to the microsecond) and the database (name and oid),
  readable by any role without privileges.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine

from cdp.errors import ConfigurationError

SAME_DATABASE = (
    "CDP_KEYSTORE_URL and CDP_DATABASE_URL reach the same database: the key store must be another "
    "database, so that a backup of the data never carries the keys that decrypt it (see "
    "'Deploying with PostgreSQL' in docs/operations.md)"
)

_PG_IDENTITY = (
    "SELECT current_database(), pg_postmaster_start_time()::text, "
    "(SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())::text"
)


def _sqlite_identity(engine: Engine) -> tuple[object, ...] | None:
    """The file an SQLite engine reaches; None for an in-memory database (each is its own)."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database)
    try:
        found = path.stat()
    except OSError:  # not created yet: where it will be
        return ("sqlite-path", os.path.realpath(path))
    return ("sqlite-file", found.st_dev, found.st_ino)


def database_identity(engine: Engine) -> tuple[object, ...] | None:
    """What names the database ``engine`` reaches, independent of how its URL is written (one
    query on PostgreSQL); None when it cannot be told (an in-memory SQLite database)."""
    dialect = engine.dialect.name
    if dialect == "sqlite":
        return _sqlite_identity(engine)
    with engine.connect() as conn:
        row = conn.exec_driver_sql(_PG_IDENTITY).one()
    return (dialect, *row)


def check_separate(data_engine: Engine, key_engine: Engine) -> None:
    """``ConfigurationError`` (naming neither URL) when both engines reach one database."""
    if data_engine.dialect.name != key_engine.dialect.name:
        return
    data = database_identity(data_engine)
    if data is not None and data == database_identity(key_engine):
        raise ConfigurationError(SAME_DATABASE)
