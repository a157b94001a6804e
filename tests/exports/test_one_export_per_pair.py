"""One export at a time per destination and segment.

Two runs of the same segment to the same destination (``cdp serve``'s scheduler and a manual
``cdp export run`` or ``POST /v1/exports``) both staged against the same sync state and sent
every add twice; on PostgreSQL the second to close then failed on the sync state's key, after it
had sent, and stored SQLAlchemy's error code (``gkpj``) as the run's. Now a second run of the
pair is refused at once (``export_running``: API 409, CLI exit status 2) and the scheduler
leaves its occurrence due; and the sync state's inserts are upserts besides."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

import cdp.exports.run as run_module
import cdp.exports.send as send
import cdp.exports.sync as sync
from cdp.access.principals import create as create_principal
from cdp.api.app import create_app
from cdp.errors import ExportRunningError
from cdp.exports.destinations import get_destination
from cdp.exports.run import ExportResult, run_export
from cdp.exports.schedule import ScheduledRun, create_schedule, list_schedules, run_due_exports
from tests.conftest import CdpEnv
from tests.crash.helpers import CLI
from tests.exports.conftest import World


def _export(world: World, destination: str = "mail", **kw: Any) -> ExportResult:
    return run_export(
        runtime=world.rt,
        ctx=world.ctx("email_marketing"),
        segment="everyone",
        destination=destination,
        clock=world.clock,
        **kw,
    )


def _adds_per_subject(world: World, destination: str) -> list[int]:
    with world.rt.data_engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT count(*) FROM export_recipients r JOIN export_destinations d"
                " ON d.id = r.destination_id WHERE r.op = 'add' AND d.name = :d"
                " GROUP BY r.subject_id"
            ),
            {"d": destination},
        ).all()
    return sorted(int(r[0]) for r in rows)


def test_a_second_run_of_the_same_pair_is_refused_while_the_first_runs(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(6):
        world.person({"email": f"u{i}@example.com"})
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    world.destination("other", "csv", "email_marketing", ["email"], min_audience=1)
    made = create_schedule(
        runtime=world.rt, ctx=world.ctx("email_marketing"), name="nightly", segment="everyone",
        destination="mail", every_seconds=86_400, start_at=world.clock(), clock=world.clock,
    )  # fmt: skip
    monkeypatch.setattr(send, "CHUNK", 2)  # several chunks: the others run between two of them
    seen: dict[str, Any] = {}

    def meanwhile(action: str, done: int, total: int) -> None:
        if action != "add" or seen:
            return
        with pytest.raises(ExportRunningError) as refused:
            _export(world)  # a manual run of the same pair
        seen["refused"] = refused.value
        seen["scheduled"] = run_due_exports(runtime=world.rt, clock=world.clock)
        seen["other"] = _export(world, "other")  # another destination runs beside it

    first = _export(world, progress=meanwhile)
    assert first.status == "succeeded" and first.counts.sent == 6
    assert seen["refused"].code == "export_running"
    assert "'everyone'" in str(seen["refused"]) and "'mail'" in str(seen["refused"])
    assert seen["scheduled"] == [ScheduledRun("nightly", None, "export_running")]
    assert seen["other"].counts.sent == 6
    [info] = list_schedules(runtime=world.rt)
    assert info.next_run_at == made.next_run_at  # skipped, still due
    assert info.last_status == "export_running"
    assert _adds_per_subject(world, "mail") == [1] * 6  # before: [2] * 6
    assert len(world.runs()) == 2  # the refused runs stored nothing

    [ran] = run_due_exports(runtime=world.rt, clock=world.clock)  # the next poll runs it
    assert ran.status == "succeeded"
    assert _export(world).counts.unchanged == 6  # and the lock was released every time


@contextlib.contextmanager
def _running_elsewhere(world: World, destination: str) -> Iterator[None]:
    """Hold the pair's lock as a running export of ``everyone`` to ``destination`` does."""
    from cdp.exports.pair_lock import pair_lock

    with pair_lock(world.rt, get_destination(runtime=world.rt, name=destination), "everyone"):
        yield


def test_the_api_answers_409_and_the_cli_exits_2_while_the_pair_runs(world: World) -> None:
    world.person({"email": "a@example.com"})
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    marketer = create_principal(runtime=world.rt, name="mk", roles=["marketer"], clock=world.clock)
    client = TestClient(create_app())
    headers = {"Authorization": f"Bearer {marketer.token}", "X-Purpose": "email_marketing"}
    body = {"segment": "everyone", "destination": "mail"}
    args = ["export", "run", "everyone", "-d", "mail", "--token", marketer.token]
    with _running_elsewhere(world, "mail"):
        r = client.post("/v1/exports", headers=headers, json=body)
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "export_running"
        done = subprocess.run([*CLI, *args], env=os.environ.copy(), capture_output=True, text=True)
        assert done.returncode == 2, done.stderr  # refused, like any domain error
        assert "error (export_running)" in " ".join(done.stderr.split())
    assert world.runs() == []
    assert client.post("/v1/exports", headers=headers, json=body).status_code == 201


@contextlib.contextmanager
def _no_lock(*_a: object) -> Iterator[None]:
    yield


def test_two_closes_racing_on_the_sync_state_both_succeed(
    world: World, cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backstop under the lock: with the lock out of the way, a second export closing while
    the first's closing transaction holds its new sync rows waits for it and then updates them
    (PostgreSQL; SQLite serialises writers, so its closes cannot interleave)."""
    if cdp_env.backend != "postgresql":
        pytest.skip("SQLite runs one writing transaction at a time: the closes cannot race")
    for i in range(4):
        world.person({"email": f"u{i}@example.com"})
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    monkeypatch.setattr(run_module, "pair_lock", _no_lock, raising=False)
    real_apply = sync.apply
    out: dict[str, Any] = {}

    def second() -> None:
        try:
            out["b"] = _export(world)
        except Exception as exc:  # reported below
            out["b_error"] = type(exc).__name__

    def waiting_for_a_lock() -> int:
        with world.rt.data_engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND datname = current_database()"
                    )
                ).scalar_one()
            )

    def apply(conn: Any, **kw: Any) -> None:
        real_apply(conn, **kw)
        if "thread" in out:
            return
        out["thread"] = threading.Thread(target=second)
        out["thread"].start()  # B stages, sends and reaches its own close meanwhile
        deadline = time.monotonic() + 30
        while not waiting_for_a_lock() and time.monotonic() < deadline and "b" not in out:
            time.sleep(0.05)

    monkeypatch.setattr(sync, "apply", apply)
    a = _export(world)
    out["thread"].join(30)
    assert "b_error" not in out, out.get("b_error")  # before: IntegrityError (UniqueViolation)
    assert (a.status, out["b"].status) == ("succeeded", "succeeded")
    with world.rt.data_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT confirmed FROM export_sync_members")).all()
    assert [bool(r[0]) for r in rows] == [True] * 4
