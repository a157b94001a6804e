"""Locks between the processes of one installation: advisory locks on PostgreSQL, ``flock`` on
SQLite.

PostgreSQL: a session-level advisory lock on a 64-bit key, held by a connection of its own for
as long as the lock is (works across hosts and workers). SQLite, which is single-host by nature:
an ``flock`` on a file beside the database. Both conflict between two holders in one process too
(two connections; two open file descriptions), not only between processes.

:func:`hold` waits for the lock; :func:`try_hold` never waits and yields whether it got it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from cdp.runtime import Runtime


def lock_dir(runtime: Runtime) -> Path:
    """Where SQLite's lock files live: beside the data database (or in ``CDP_HOME``)."""
    database = make_url(runtime.settings.data_url).database or ""
    if database and database != ":memory:":
        return Path(database).parent
    return runtime.settings.home


def key_of(*parts: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``parts`` (a hash of them)."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _is_postgres(runtime: Runtime) -> bool:
    return runtime.data_engine.dialect.name == "postgresql"


@contextlib.contextmanager
def _advisory(runtime: Runtime, key: int, *, shared: bool, wait: bool) -> Iterator[bool]:
    kind = "_shared" if shared else ""
    take = f"pg_advisory_lock{kind}" if wait else f"pg_try_advisory_lock{kind}"
    conn = runtime.data_engine.connect()
    try:
        got = conn.execute(sa.text(f"SELECT {take}(:k)"), {"k": key}).scalar()
        got = True if wait else bool(got)
        conn.commit()  # the lock is the session's; don't sit idle in a transaction
        try:
            yield got
        finally:
            if got:
                conn.execute(sa.text(f"SELECT pg_advisory_unlock{kind}(:k)"), {"k": key})
                conn.commit()
    finally:
        conn.close()


@contextlib.contextmanager
def _flock(path: Path, *, shared: bool, wait: bool) -> Iterator[bool]:
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode if wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def hold(runtime: Runtime, *, key: int, path: Path, shared: bool = False) -> Iterator[None]:
    """Hold the lock (``key`` on PostgreSQL, the file ``path`` on SQLite), waiting for it."""
    if _is_postgres(runtime):
        with _advisory(runtime, key, shared=shared, wait=True):
            yield
    else:
        with _flock(path, shared=shared, wait=True):
            yield


def try_hold(
    runtime: Runtime, *, key: int, path: Path, shared: bool = False
) -> contextlib.AbstractContextManager[bool]:
    """The lock if it is free now (yields True, held until exit), else False at once."""
    if _is_postgres(runtime):
        return _advisory(runtime, key, shared=shared, wait=False)
    return _flock(path, shared=shared, wait=False)
