"""Erasure and exports exclude each other.

An export holds the lock shared for its whole run (from recomputing membership to committing its
ledger rows); an erasure takes it exclusively. So no export can send a subject whose erasure
committed before the export did, and an erasure always sees every export that included the
subject in the recipients ledger (its list of destinations to notify is complete).

PostgreSQL: a session-level advisory lock (works across hosts and workers). SQLite: an ``flock``
on a file beside the database (SQLite is single-host by nature).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from cdp.runtime import Runtime

#: Advisory lock key ("cdp" + 1), the same in every process of one installation.
LOCK_KEY = 0x63647001


@contextlib.contextmanager
def _postgres(runtime: Runtime, *, shared: bool) -> Iterator[None]:
    kind = "_shared" if shared else ""
    conn = runtime.data_engine.connect()
    try:
        conn.execute(sa.text(f"SELECT pg_advisory_lock{kind}(:k)"), {"k": LOCK_KEY})
        conn.commit()  # the lock is the session's; don't sit idle in a transaction
        try:
            yield
        finally:
            conn.execute(sa.text(f"SELECT pg_advisory_unlock{kind}(:k)"), {"k": LOCK_KEY})
            conn.commit()
    finally:
        conn.close()


def _lock_path(runtime: Runtime) -> Path:
    database = make_url(runtime.settings.data_url).database or ""
    if database and database != ":memory:":
        return Path(database).parent / "erasure.lock"
    return runtime.settings.home / "erasure.lock"


@contextlib.contextmanager
def _file(runtime: Runtime, *, shared: bool) -> Iterator[None]:
    fd = os.open(_lock_path(runtime), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _lock(runtime: Runtime, *, shared: bool) -> contextlib.AbstractContextManager[None]:
    if runtime.data_engine.dialect.name == "postgresql":
        return _postgres(runtime, shared=shared)
    return _file(runtime, shared=shared)


def export_guard(runtime: Runtime) -> contextlib.AbstractContextManager[None]:
    """Held by an export for its whole run (many exports may hold it at once)."""
    return _lock(runtime, shared=True)


def erasure_guard(runtime: Runtime) -> contextlib.AbstractContextManager[None]:
    """Held by an erasure: waits for running exports, and holds new ones off until done."""
    return _lock(runtime, shared=False)


@contextlib.contextmanager
def _try_postgres(runtime: Runtime) -> Iterator[bool]:
    conn = runtime.data_engine.connect()
    try:
        got = bool(
            conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
        )
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
                conn.commit()
    finally:
        conn.close()


@contextlib.contextmanager
def _try_file(runtime: Runtime) -> Iterator[bool]:
    fd = os.open(_lock_path(runtime), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def no_export_running(runtime: Runtime) -> contextlib.AbstractContextManager[bool]:
    """The exclusive lock if it is free now (True: no export runs, none starts until exit),
    without waiting (False: an export or an erasure holds it)."""
    if runtime.data_engine.dialect.name == "postgresql":
        return _try_postgres(runtime)
    return _try_file(runtime)
