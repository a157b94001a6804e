"""A scheduled export that did not complete is run again.

``cdp serve``'s scheduler passes its ``stop`` event to the export it runs: once set (the server
is stopping) the export stops before its next chunk or webhook batch (a wait to retry a batch is
cut short), closes its run as ``failed`` / ``interrupted`` and the claim of its occurrence is
undone. A run whose process was killed is closed by recovery, which now also sets its schedule
back to that occurrence: before, the claim had moved ``next_run_at`` a whole interval on and the
occurrence was lost (with ``--every 1d``, a day without sync)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdp.clock import utcnow
from cdp.exports.ledger import recipients_of
from cdp.exports.recovery import recover_interrupted
from cdp.exports.schedule import ScheduleInfo, create_schedule, list_schedules, run_due_exports
from cdp.exports.webhook import RetryPolicy
from tests.crash.helpers import start_server
from tests.exports.conftest import World
from tests.exports.receiver import Receiver, running


def _schedule(world: World) -> ScheduleInfo:
    [info] = list_schedules(runtime=world.rt)
    return info


def _until(check: Callable[[], bool], seconds: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert proc.poll() is None, "the server exited"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _hook(world: World, rx: Receiver, *, batch_size: int) -> None:
    made = world.destination(
        "hook", "webhook", "email_marketing", ["email"], min_audience=1, url=rx.url,
        batch_size=batch_size, timeout_seconds=30,
    )  # fmt: skip
    rx.secret = made.signing_secret or ""


def _scheduled(world: World, rx: Receiver) -> datetime:
    """A daily schedule of ``everyone`` to the receiver (batches of 2), due now; its time."""
    _hook(world, rx, batch_size=2)
    made = create_schedule(
        runtime=world.rt,
        ctx=world.ctx("email_marketing"),
        name="sync",
        segment="everyone",
        destination="hook",
        every_seconds=86_400,
    )
    return made.next_run_at


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDP_EXPORT_SCHEDULE_POLL_SECONDS", "0.5")
    monkeypatch.setenv("CDP_SHUTDOWN_GRACE_SECONDS", "10")


def test_a_scheduled_run_killed_with_its_server_makes_its_schedule_due_again(
    world: World, tmp_path: Path, quick: None
) -> None:
    for i in range(3):
        world.person({"email": f"k{i}@example.com"})
    with running(Receiver(delay_first=10)) as rx:
        occurrence = _scheduled(world, rx)
        proc, _ = start_server(tmp_path / "server.log", scheduler=True)
        try:
            _until(lambda: bool(rx.requests), 20, proc)
        finally:
            proc.kill()
            proc.wait(10)
        [(export_id, status, _)] = world.runs()
        assert status == "running" and _schedule(world).next_run_at > utcnow()  # claimed

        assert recover_interrupted(world.rt) == 1
        info = _schedule(world)
        assert info.next_run_at == occurrence  # back to the occurrence it was running
        assert (info.last_status, info.last_export_id) == ("interrupted", export_id)

        [ran] = run_due_exports(runtime=world.rt)  # (the receiver answers at once now)
        assert ran.status == "succeeded"
    assert _schedule(world).next_run_at > utcnow()
    assert recover_interrupted(world.rt) == 0


@pytest.mark.parametrize("moved_meanwhile", [False, True])
def test_a_stop_cuts_a_retry_wait_and_the_occurrence_stays_due(
    world: World, moved_meanwhile: bool
) -> None:
    """In process: ``stop`` is set while a batch waits 30 s for its retry. The wait ends at once,
    the batch is a dead letter ``interrupted`` (its body left: its subjects stay in the ledger),
    no further batch leaves, and the claim is undone unless the schedule was moved meanwhile."""
    ids = [world.person({"email": f"r{i}@example.com"}) for i in range(3)]
    stop = threading.Event()
    later = world.clock() + timedelta(days=30)
    with running(Receiver(script=[500])) as rx:
        _hook(world, rx, batch_size=2)
        made = create_schedule(
            runtime=world.rt,
            ctx=world.ctx("email_marketing"),
            name="sync",
            segment="everyone",
            destination="hook",
            every_seconds=3600,
            clock=world.clock,
        )

        def stop_once_refused() -> None:
            while not rx.requests:
                time.sleep(0.02)
            if moved_meanwhile:
                with world.rt.data_engine.begin() as conn:
                    conn.execute(
                        sa.text("UPDATE export_schedules SET next_run_at = :t"), {"t": later}
                    )
            time.sleep(0.2)  # (the sender is waiting for its retry by now)
            stop.set()

        watcher = threading.Thread(target=stop_once_refused)
        watcher.start()
        began = time.monotonic()
        [ran] = run_due_exports(
            runtime=world.rt,
            clock=world.clock,
            retry=RetryPolicy(max_attempts=3, base_seconds=30, cap_seconds=30, rand=lambda: 1.0),
            stop=stop,
        )
        watcher.join(5)
    assert time.monotonic() - began < 10
    assert len(rx.requests) == 1  # no retry, no second batch
    [(export_id, status, error)] = world.runs()
    assert (ran.status, ran.export_id) == ("interrupted", export_id)
    assert (status, error) == ("failed", "interrupted") and world.staged() == 0
    with world.rt.data_engine.connect() as conn:
        letters = conn.execute(sa.text("SELECT status, last_error FROM webhook_deliveries")).all()
    assert [tuple(r) for r in letters] == [("dead_letter", "interrupted")]
    assert sum(bool(recipients_of(s, runtime=world.rt)) for s in ids) == 2
    info = _schedule(world)
    assert info.last_status == "interrupted"
    assert info.next_run_at == (later if moved_meanwhile else made.next_run_at)
    assert run_due_exports(runtime=world.rt, clock=world.clock, stop=stop) == []  # stopping
