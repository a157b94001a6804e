"""Two creators of the same name at once: one gets the name, the other a conflict (409), never
an internal error. On PostgreSQL both can pass the "is the name free?" check before either
inserts; the unique index then refuses the second insert."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from cdp.access.principals import create as create_principal
from cdp.errors import ConflictError
from cdp.exports.destinations import DestinationSpec, create_destination
from cdp.ingest.sources import create_source
from cdp.runtime import Runtime
from tests.conftest import CdpEnv


def _race(rt: Runtime, table: str, create: Callable[[], Any]) -> list[str]:
    """Run ``create`` in two threads, both held after their name check until both made it."""
    barrier = threading.Barrier(2, timeout=10)
    held = threading.local()

    def hold(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        first = not getattr(held, "done", False)
        if first and statement.lstrip().upper().startswith("SELECT") and table in statement:
            held.done = True
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()

    outcomes: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            create()
            outcome = "created"
        except ConflictError:
            outcome = "conflict"
        except Exception as exc:  # the bug: a database error escaping as a server error
            outcome = type(exc).__name__
        with lock:
            outcomes.append(outcome)

    sa.event.listen(rt.data_engine, "after_cursor_execute", hold)
    try:
        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    finally:
        sa.event.remove(rt.data_engine, "after_cursor_execute", hold)
    return sorted(outcomes)


@pytest.mark.parametrize("kind", ["principal", "source", "destination"])
def test_a_name_taken_at_the_same_moment_is_a_conflict(cdp_env: CdpEnv, kind: str) -> None:
    rt = cdp_env.runtime
    if rt.data_engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE): the checks cannot interleave")
    creators: dict[str, tuple[str, Callable[[], Any]]] = {
        "principal": (
            "principals",
            lambda: create_principal(runtime=rt, name="alice.race", roles=["support"]),
        ),
        "source": ("sources", lambda: create_source(runtime=rt, name="web-race")),
        "destination": (
            "export_destinations",
            lambda: create_destination(
                runtime=rt,
                spec=DestinationSpec(
                    name="crm-race", kind="csv", purpose="email_marketing", fields=("email",)
                ),
                created_by="test",
            ),
        ),
    }
    table, create = creators[kind]
    assert _race(rt, table, create) == ["conflict", "created"]
