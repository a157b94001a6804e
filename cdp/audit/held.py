"""A database connection kept open between uses, for the audit paths' hot loops on SQLite.

Checking a connection out of SQLAlchemy's pool and back in costs more than SQLite takes to answer
the profile read's two statements or to append a small batch to the audit chain (pool bookkeeping,
reset-on-return, a new :class:`~sqlalchemy.Connection`). The group committer and the event loop's
reads therefore each keep one connection open and reuse it, one user at a time; a second user
meanwhile simply gets a fresh connection from the pool. Every use still runs in its own transaction
(``with conn.begin()``), so nothing is held between uses: no lock, no snapshot.

A transaction a use leaves open is rolled back. A use that raises drops the connection (closed,
a fresh one next time), so a connection left in a doubtful state is never reused.
``Engine.dispose()`` closes the held connection too (or, if it is in use, as soon as it is
released), so a disposed engine leaves nothing open. ``prepare`` adjusts a new held connection
once (a per-connection setting); it is then detached from the pool, so the setting never reaches
another user of the pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, event


class HeldConnection:
    """One connection of ``engine`` (with ``options`` as execution options), reused by one user at
    a time."""

    def __init__(
        self,
        engine: Engine,
        *,
        prepare: Callable[[Connection], None] | None = None,
        **options: Any,
    ) -> None:
        """``prepare`` adjusts the held connection once, when it is opened (it is then detached
        from the pool, so a changed setting never reaches another user of the pool)."""
        self._engine = engine
        self._prepare = prepare
        self._options = options
        self._lock = threading.Lock()
        self._idle: Connection | None = None
        self._busy = False
        self._generation = 0
        event.listen(engine, "engine_disposed", self._disposed)

    def _open(self) -> Connection:
        return self._engine.connect().execution_options(**self._options)

    @contextmanager
    def use(self) -> Iterator[Connection]:
        """The held connection (opened if needed), or a fresh one while it is in use."""
        conn: Connection | None = None
        with self._lock:
            shared = not self._busy
            if shared:
                self._busy = True
                conn, self._idle = self._idle, None
            generation = self._generation
        if not shared:
            with self._open() as fresh:
                yield fresh
            return
        keep = False
        try:
            if conn is None or conn.closed or conn.invalidated:
                conn = self._open()
                if self._prepare is not None:
                    conn.detach()
                    self._prepare(conn)
            yield conn
            if conn.in_transaction():  # never keep a transaction (or SQLite's lock) open
                conn.rollback()
            keep = True
        finally:
            with self._lock:
                self._busy = False
                if keep and generation == self._generation:
                    self._idle, conn = conn, None
            if conn is not None:
                conn.close()

    def _disposed(self, _engine: Engine) -> None:
        """``Engine.dispose()``: close the idle connection; one in use is closed on release."""
        with self._lock:
            self._generation += 1
            conn, self._idle = self._idle, None
        if conn is not None:
            conn.close()
