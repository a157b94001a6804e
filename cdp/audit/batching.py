"""Group commit for audit appends: concurrent requests share one transaction and one fsync.

Every audited read must have its record committed before it returns. Committing one record per
transaction makes each request wait for its own fsync and, on SQLite, for the database write lock
(whose busy handler sleeps in steps of up to 100 ms under contention). Here the first request to
arrive becomes the *leader*: it takes every record queued so far, appends them in one transaction
(in arrival order, so the chain stays linear and gap-free), commits, and hands each waiting request
its own record, or the error, which then fails every read of that batch. It repeats until the
queue is empty, then steps down; the next arrival leads. No thread waits for work; nothing is
acknowledged before it is durable. An entry is checked (:func:`cdp.audit.writer.check_entry`)
before it is queued: one that the append would refuse fails its own request at once and never
joins, so never fails, a batch of other requests' records.

Async callers (the API's event loop) use :meth:`GroupCommitter.submit_async`: the record joins the
same queue, and the coroutine waits without holding a thread. When nobody is leading, the commit
loop is handed to a worker thread of this module's small pool (a plain submit: the event loop is
woken once per batch, by the records' delivery, not a second time for the leader's own end), so
the event loop keeps serving requests (and queuing their records for the next batch) while a batch
is written and fsynced.

On SQLite the committer keeps its connection open between batches (:mod:`cdp.audit.held`; each
batch is still its own ``BEGIN IMMEDIATE`` transaction): checking a connection out of the pool and
back in cost more than appending a small batch. That connection does not checkpoint the WAL inside
its commits (SQLite's automatic checkpoint runs in the commit that crosses 1,000 pages, and that
batch's requests wait for the copy and its fsync): every ``CHECKPOINT_EVERY`` batches the leader
checkpoints between two batches, after answering the first and before taking the second, so the
checkpoint copies every frame and the next batch restarts the WAL from its beginning.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final

from sqlalchemy import Connection, Engine

from cdp.audit.chain import AuditRecord
from cdp.audit.held import HeldConnection
from cdp.audit.writer import AuditEntry, check_entry
from cdp.db.per_engine import PerEngine
from cdp.logging import get_logger

log = get_logger("cdp.audit")

MAX_BATCH: Final = 512
"""Most records appended in one transaction."""
MAX_GATHER_SECONDS: Final = 0.002
"""Longest an async record waits for others to join its batch before the batch starts."""
CHECKPOINT_EVERY: Final = 64
"""Batches between two WAL checkpoints of the committer (SQLite; a batch writes about ten pages,
so the WAL stays under SQLite's own automatic threshold of 1,000 pages)."""
RESTART_FRAMES: Final = 4096
"""Frames (16 MB of 4 KB pages) past which a checkpoint that found the WAL still not restarted
(other processes appending without a pause, a reader holding an old snapshot) asks SQLite to
restart it: ``wal_checkpoint(RESTART)``, waiting at most ``RESTART_WAIT_MS`` for the other
writers and readers."""
RESTART_WAIT_MS: Final = 100

WriteBatch = Callable[[Connection, Sequence[AuditEntry]], list[AuditRecord]]


AsyncWaiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[AuditRecord]"]
Waiter = Future[AuditRecord] | AsyncWaiter

_LEADERS: Final = ThreadPoolExecutor(max_workers=4, thread_name_prefix="cdp-audit-commit")
"""Threads that run the commit loop for async callers (one leader per committer at a time)."""


class GroupCommitter:
    """Serialises one engine's audit appends into batched transactions (one per process)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._queue: list[tuple[AuditEntry, Waiter]] = []
        self._leading = False
        self._gathering = False
        self._held: HeldConnection | None = None
        self._since_checkpoint = 0
        self.checkpoints = 0
        """WAL checkpoints run so far (SQLite)."""
        self.restarts = 0
        """Of those, how many found the WAL long and asked for a restart."""
        if engine.dialect.name == "sqlite":
            self._held = HeldConnection(engine, prepare=_no_autocheckpoint)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One batch's transaction: on the held connection (SQLite), else a pooled one."""
        if self._held is None:
            with self._engine.begin() as conn:
                yield conn
            return
        with self._held.use() as conn, conn.begin():
            yield conn

    def _enqueue(self, entry: AuditEntry, waiter: Waiter) -> bool:
        """Queue ``entry``; True when the caller must lead (nobody leads, or the leader is still
        being gathered in an event loop: a thread that blocks on its record takes over, so it
        never waits for a loop it might itself be blocking)."""
        with self._lock:
            self._queue.append((entry, waiter))
            lead = not self._leading or self._gathering
            self._leading = True
            self._gathering = False
        return lead

    def submit(self, entry: AuditEntry, write: WriteBatch) -> AuditRecord:
        """Append ``entry`` durably and return its record; raise what the write raised.

        An entry the append would refuse raises ``ValueError`` here, before it joins a batch:
        it must never fail the other records of its batch."""
        check_entry(entry)
        future: Future[AuditRecord] = Future()
        if self._enqueue(entry, future):
            self._lead(write)
        return future.result()

    async def submit_async(self, entry: AuditEntry, write: WriteBatch) -> AuditRecord:
        """As :meth:`submit`, awaited: the batch is written in a worker thread, never in the
        event loop; returns once ``entry``'s record is durable, or raises what the write raised.
        A batch's async waiters are woken with one call into their loop. An entry the append
        would refuse raises ``ValueError`` at once, without joining a batch."""
        check_entry(entry)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[AuditRecord] = loop.create_future()
        with self._lock:
            self._queue.append((entry, (loop, future)))
            gather = not self._leading
            self._leading = self._gathering = self._leading or gather
        if gather:
            loop.call_soon(self._gather, loop, write, 1, time.monotonic())
        return await future

    def _gather(
        self, loop: asyncio.AbstractEventLoop, write: WriteBatch, seen: int, since: float
    ) -> None:
        """Start the commit loop in a worker thread once an iteration of the event loop queued
        no new record (the requests in flight have reached their records; under load the batch
        then holds all of them instead of the first one), or after ``MAX_GATHER_SECONDS``."""
        with self._lock:
            if not self._gathering:  # a thread took over meanwhile
                return
            queued = len(self._queue)
            wait = seen < queued < MAX_BATCH and time.monotonic() - since < MAX_GATHER_SECONDS
            self._gathering = wait
        if wait:
            loop.call_soon(self._gather, loop, write, queued, since)
        else:
            _LEADERS.submit(self._lead, write).add_done_callback(_retrieve)

    def _lead(self, write: WriteBatch) -> None:
        while True:
            with self._lock:
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
                if not batch:
                    self._leading = False
                    return
            waiters = [waiter for _, waiter in batch]
            try:
                with self._transaction() as conn:
                    records = write(conn, [entry for entry, _ in batch])
            except BaseException as exc:  # every waiter of the batch fails with the writer
                _settle(waiters, [exc] * len(waiters))
                if not isinstance(exc, Exception):
                    with self._lock:
                        self._leading = False
                    raise
                continue
            _settle(waiters, records)
            try:
                self._after_commit()
            except BaseException:  # not Exception (logged there): give up leading, re-raise
                with self._lock:
                    self._leading = False
                raise

    def _after_commit(self) -> None:
        """Every ``CHECKPOINT_EVERY`` batches (SQLite), checkpoint the WAL in this thread, after
        the batch's waiters were answered and before the next batch is taken.

        Only the leader calls this (one at a time), so no append of this process runs during the
        checkpoint: it copies every frame into the database file, and the next batch's
        transaction restarts the WAL from its beginning. A checkpoint beside the appends never
        caught up with them (each finished behind frames appended meanwhile), so the WAL was
        never restarted and grew by every batch (146 MB in 13 s of reads), and every read and
        write searched a longer WAL index.
        """
        if self._held is None:
            return
        self._since_checkpoint += 1
        if self._since_checkpoint < CHECKPOINT_EVERY:
            return
        self._since_checkpoint = 0
        self.checkpoints += 1
        try:
            with self._held.use() as conn:
                cursor = conn.connection.cursor()  # no transaction: the pragma runs outside one
                try:
                    found = cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if found is not None and found[1] >= RESTART_FRAMES:
                        self._restart(cursor)
                finally:
                    cursor.close()
        except Exception as exc:  # the next one retries; the WAL only grows meanwhile
            log.warning("audit WAL checkpoint failed", error_type=type(exc).__name__)

    def _restart(self, cursor: Any) -> None:
        """Restart a WAL that checkpoints between batches did not get restarted: a ``RESTART``
        checkpoint, which waits at most ``RESTART_WAIT_MS`` for other connections to finish
        their transactions (new writers wait meanwhile) and gives up if they have not."""
        self.restarts += 1
        timeout = cursor.execute("PRAGMA busy_timeout").fetchone()[0]
        cursor.execute(f"PRAGMA busy_timeout={int(RESTART_WAIT_MS)}")
        try:
            busy = cursor.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]
        finally:
            cursor.execute(f"PRAGMA busy_timeout={int(timeout)}")
        log.info("audit WAL restart", done=not busy)


Outcome = AuditRecord | BaseException


def _no_autocheckpoint(conn: Connection) -> None:
    """The committer's connection never checkpoints inside a commit (the commit would wait for
    the checkpoint's copy and fsync); :meth:`GroupCommitter._after_commit` does it between two
    batches."""
    cursor = conn.connection.cursor()  # on the driver: no transaction is begun for a pragma
    try:
        cursor.execute("PRAGMA wal_autocheckpoint=0")
    finally:
        cursor.close()


def _settle(waiters: list[Waiter], outcomes: Sequence[Outcome]) -> None:
    """Hand each waiter its record or error: thread waiters directly, async waiters through one
    ``call_soon_threadsafe`` per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[AuditRecord], Outcome]]]
    by_loop = {}
    for waiter, outcome in zip(waiters, outcomes, strict=True):
        if isinstance(waiter, Future):
            if isinstance(outcome, BaseException):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)
        else:
            by_loop.setdefault(waiter[0], []).append((waiter[1], outcome))
    for loop, pairs in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting any more
            loop.call_soon_threadsafe(_resolve, pairs)


def _resolve(pairs: list[tuple[asyncio.Future[AuditRecord], Outcome]]) -> None:
    for future, outcome in pairs:
        if future.done():  # the request was cancelled meanwhile
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _retrieve(done: Future[None]) -> None:
    """The leader's own outcome: every waiter already got its record or error."""
    if not done.cancelled():
        done.exception()


committer_for: PerEngine[GroupCommitter] = PerEngine(GroupCommitter)
"""The process's group committer for an engine."""
