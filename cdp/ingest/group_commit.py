"""Group commit for concurrent Segment requests: one transaction and one fsync for many requests.

Each ``/v1`` request used to be its own transaction. On SQLite that means one ``synchronous=FULL``
fsync per request, and concurrent requests queue on the database write lock, whose busy handler
sleeps in growing steps (up to 100 ms) — so throughput fell as clients were added. Here (the
pattern of :mod:`cdp.audit.batching`) the first request to arrive leads: it takes every request
queued so far, writes them one after the other in one transaction (arrival order, each with its
own source name, so the result is what sequential transactions would have stored), commits, and
hands each request its own outcome. Nothing is acknowledged before it is durable. If the shared
transaction fails, each request of the group is retried alone, so one request's error is never
another's.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Final

from cdp.clock import Clock
from cdp.db.per_engine import PerEngine
from cdp.ingest.batch import BatchContext, Outcome
from cdp.ingest.batch_commit import Writer, converter_for, run_batch
from cdp.runtime import Runtime

MAX_GROUP: Final = 64
"""Most requests written in one transaction."""


@dataclass
class _Request:
    runtime: Runtime
    writer: Writer
    source: str
    clock: Clock
    future: Future[Outcome] = dataclasses.field(default_factory=Future)


def _together(group: Sequence[_Request], outcomes: list[Outcome]) -> Writer:
    """One writer running every request's writer in turn, each under its own source name."""

    def write(ctx: BatchContext, _items: Sequence[tuple[int, Any]]) -> Outcome:
        outcomes.clear()  # run_batch may retry the whole transaction
        total = Outcome()
        for request in group:
            own = dataclasses.replace(ctx, source=request.source, recorded_by=request.source)
            out = request.writer(own, [])
            outcomes.append(out)
            total.resolutions.extend(out.resolutions)  # finished by run_batch after commit
        return total

    return write


def _run(group: Sequence[_Request], writer: Writer) -> Outcome:
    first = group[0]
    return run_batch(
        first.runtime,
        writer,
        [],
        source=first.source,
        converter=converter_for(first.runtime),
        clock=first.clock,
        recorded_by=first.source,
    )


class GroupCommitter:
    """Serialises one database's Segment writes into shared transactions (one per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[_Request] = []
        self._leading = False

    def submit(self, *, runtime: Runtime, writer: Writer, source: str, clock: Clock) -> Outcome:
        """Write durably (alone or with concurrent requests); this request's outcome."""
        request = _Request(runtime, writer, source, clock)
        with self._lock:
            self._queue.append(request)
            lead = not self._leading
            self._leading = True
        if lead:
            self._lead()
        return request.future.result()

    def _lead(self) -> None:
        while True:
            with self._lock:
                group = self._queue[:MAX_GROUP]
                del self._queue[:MAX_GROUP]
                if not group:
                    self._leading = False
                    return
            try:
                self._write(group)
            except BaseException as exc:  # interrupted: no waiter may hang
                for request in group:
                    if not request.future.done():
                        request.future.set_exception(exc)
                with self._lock:
                    self._leading = False
                raise

    @staticmethod
    def _write(group: Sequence[_Request]) -> None:
        if len(group) > 1:
            outcomes: list[Outcome] = []
            try:
                _run(group, _together(group, outcomes))
            except Exception:  # noqa: S110 - retried one by one below, errors go to their own
                pass
            else:
                for request, out in zip(group, outcomes, strict=True):
                    request.future.set_result(out)
                return
        for request in group:
            try:
                request.future.set_result(_run([request], request.writer))
            except Exception as exc:
                request.future.set_exception(exc)


committer_for: PerEngine[GroupCommitter] = PerEngine(lambda _engine: GroupCommitter())
"""The process's group committer for an engine."""
