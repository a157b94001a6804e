"""SQLAlchemy engines for the data database and the key store.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL``, foreign keys on, a
busy timeout and a WAL size limit, set on every connection. PostgreSQL goes through psycopg 3,
``postgresql://`` (no driver named) included.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from cdp.errors import ConfigurationError

WAL_SIZE_LIMIT = 64 * 1024 * 1024
"""Bytes the WAL file keeps on disk after the WAL restarts (``journal_size_limit``): a burst that
grew it (a long reader holding back checkpoints, a bulk load) does not keep the disk space."""

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event, not the driver, open transactions.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute(f"PRAGMA journal_size_limit={int(WAL_SIZE_LIMIT)}")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # Take the write lock at BEGIN so that read-then-write transactions (the audit chain's head,
    # identity resolution) serialise instead of failing with "database is locked" on upgrade.
    # Long read-only work opts out with ``execution_options(sqlite_begin="DEFERRED")``.
    # Issued on the driver's connection: SQLAlchemy's statement path (cursor bookkeeping and
    # events) cost more than the BEGIN itself on short reads. Driver errors (a lock not granted
    # within the busy timeout) are raised as SQLAlchemy's, as from any statement.
    mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
    statement = "BEGIN DEFERRED" if mode == "DEFERRED" else "BEGIN IMMEDIATE"
    try:
        conn.connection.dbapi_connection.execute(statement)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(
            statement, None, exc, sqlite3.Error, hide_parameters=True
        ) from exc


def make_private(database: Path) -> None:
    """Take group and world access away from the SQLite file ``database`` and its ``-wal`` and
    ``-shm`` files, if they have it. Called on every new connection before WAL mode is set, so
    a file the connection just created is 0600 before it holds a byte, and SQLite creates the
    ``-wal``/``-shm`` files with the database file's mode: the data and the wrapped keys are
    private whatever the directory's mode or the umask."""
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to change
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)


POSTGRESQL_DRIVER = "postgresql+psycopg"
"""cdp's PostgreSQL driver: psycopg 3 (``psycopg[binary]``, a dependency)."""
_UNPARSABLE = "a database URL (CDP_DATABASE_URL or CDP_KEYSTORE_URL) cannot be parsed"


def _with_driver(url: URL) -> URL:
    """``url`` with cdp's driver where it names none: ``postgresql://`` is psycopg 3 whatever
    SQLAlchemy's default for it (psycopg2, which cdp does not install, before SQLAlchemy 2.1)."""
    return url.set(drivername=POSTGRESQL_DRIVER) if url.drivername == "postgresql" else url


def build_engine(url: str) -> Engine:
    """A new engine for ``url`` with cdp's connection settings; ``ConfigurationError`` (naming
    the URL's scheme, never the URL nor its password) when the URL or its driver cannot be
    used."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigurationError(_UNPARSABLE) from None
    try:
        return _build_engine(_with_driver(parsed))
    except (NoSuchModuleError, ImportError):  # (an ArgumentError: first)
        # a dialect SQLAlchemy does not know (``postgres://``), or one it knows whose driver is
        # not installed (``postgresql+psycopg2://``, ``mysql://``: the import fails)
        raise ConfigurationError(
            f"no database driver for {parsed.drivername!r}: cdp runs on sqlite and "
            f"{POSTGRESQL_DRIVER} (postgresql:// means {POSTGRESQL_DRIVER})"
        ) from None
    except (ArgumentError, ValueError):
        raise ConfigurationError(_UNPARSABLE) from None


def _build_engine(url: URL) -> Engine:
    parsed = url
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            try:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigurationError(
                    f"the SQLite database's directory cannot be created ({exc.strerror})"
                ) from None
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_pre_ping=False,
            hide_parameters=True,  # errors never carry bound values (tokens, ciphertexts, …)
        )
        if parsed.database and parsed.database != ":memory:":
            database = Path(parsed.database)
            event.listen(engine, "connect", lambda *_: make_private(database))
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(
        url, pool_pre_ping=True, pool_size=5, max_overflow=10, hide_parameters=True
    )


def get_engine(url: str) -> Engine:
    """The process-wide engine for ``url`` (one pool per database)."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = build_engine(url)
        return engine


def dispose_engines() -> None:
    """Close every pooled connection (tests, forks, shutdown)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def database_exists(engine: Engine) -> bool:
    """Whether the database can hold anything yet: an SQLite file not yet created cannot (and
    a connection would create it, so whoever only asks what a database holds asks this
    first); a server's database is taken to exist (connecting says otherwise)."""
    if not is_sqlite(engine):
        return True
    database = engine.url.database
    return database is not None and database not in ("", ":memory:") and Path(database).exists()
