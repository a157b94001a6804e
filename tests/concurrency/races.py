"""Races with real connections: threads held at the same point of their transactions."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from cdp.errors import ConflictError
from cdp.runtime import Runtime


def race(
    rt: Runtime, held_after: Callable[[str], bool], calls: list[Callable[[], Any]], wait: float
) -> list[str]:
    """Run ``calls`` in threads, each held after its first statement ``held_after`` accepts
    until all got there (or ``wait`` seconds passed); the outcome of each, sorted."""
    barrier = threading.Barrier(len(calls), timeout=wait)
    held = threading.local()

    def hold(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not getattr(held, "done", False) and held_after(" ".join(statement.split())):
            held.done = True
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()

    outcomes: list[str] = []
    lock = threading.Lock()

    def run(call: Callable[[], Any]) -> None:
        try:
            call()
            outcome = "ok"
        except ConflictError:
            outcome = "conflict"
        except Exception as exc:  # the bug: a database error escaping as a server error
            outcome = type(exc).__name__
        with lock:
            outcomes.append(outcome)

    sa.event.listen(rt.data_engine, "after_cursor_execute", hold)
    try:
        threads = [threading.Thread(target=run, args=(c,)) for c in calls]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        sa.event.remove(rt.data_engine, "after_cursor_execute", hold)
    return sorted(outcomes)
