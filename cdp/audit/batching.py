"""Group commit for audit appends: concurrent requests share one transaction and one fsync.

Every audited read must have its record committed before it returns. Committing one record per
transaction makes each request wait for its own fsync and, on SQLite, for the database write lock
(whose busy handler sleeps in steps of up to 100 ms under contention). Here the first request to
arrive becomes the *leader*: it takes every record queued so far, appends them in one transaction
(in arrival order, so the chain stays linear and gap-free), commits, and hands each waiting request
its own record, or the error, which then fails every read of that batch. It repeats until the
queue is empty, then steps down; the next arrival leads. No background thread; nothing is
acknowledged before it is durable.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Final

from sqlalchemy import Connection, Engine

from cdp.audit.chain import AuditRecord
from cdp.audit.writer import AuditEntry

MAX_BATCH: Final = 512
"""Most records appended in one transaction."""

WriteBatch = Callable[[Connection, Sequence[AuditEntry]], list[AuditRecord]]


class GroupCommitter:
    """Serialises one engine's audit appends into batched transactions (one per process)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._queue: list[tuple[AuditEntry, Future[AuditRecord]]] = []
        self._leading = False

    def submit(self, entry: AuditEntry, write: WriteBatch) -> AuditRecord:
        """Append ``entry`` durably and return its record; raise what the write raised."""
        future: Future[AuditRecord] = Future()
        with self._lock:
            self._queue.append((entry, future))
            lead = not self._leading
            if lead:
                self._leading = True
        if lead:
            self._lead(write)
        return future.result()

    def _lead(self, write: WriteBatch) -> None:
        while True:
            with self._lock:
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
                if not batch:
                    self._leading = False
                    return
            try:
                with self._engine.begin() as conn:
                    records = write(conn, [entry for entry, _ in batch])
            except BaseException as exc:  # every waiter of the batch fails with the writer
                for _, future in batch:
                    future.set_exception(exc)
                if not isinstance(exc, Exception):
                    with self._lock:
                        self._leading = False
                    raise
                continue
            for (_, future), record in zip(batch, records, strict=True):
                future.set_result(record)


_committers: weakref.WeakKeyDictionary[Engine, GroupCommitter] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def committer_for(engine: Engine) -> GroupCommitter:
    """The process's group committer for ``engine``."""
    with _registry_lock:
        found = _committers.get(engine)
        if found is None:
            found = _committers[engine] = GroupCommitter(engine)
        return found
