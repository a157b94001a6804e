"""``cdp serve`` told to stop (SIGTERM): real server processes and a slow webhook receiver.

Before, the process died of the signal uvicorn raises again once it has shut down (exit 143):
the scheduled export's thread died mid-run, its run stayed ``running`` and its schedule had
already moved a whole interval on (the occurrence was lost), and a request whose client had its
504 was killed mid-way although the docs say its handler runs to its end. Now the export stops
between two batches and closes its run as ``interrupted``, the schedule is due again, requests
in flight are waited for, all within ``CDP_SHUTDOWN_GRACE_SECONDS``, and the process exits 0
(1 when it had to leave something behind, which the next start closes)."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from cdp.access.principals import create as create_principal
from cdp.clock import utcnow
from cdp.exports.ledger import recipients_of
from cdp.exports.recovery import recover_interrupted
from tests.crash.helpers import start_server
from tests.exports.conftest import World
from tests.exports.receiver import Receiver, running
from tests.exports.test_interrupted_schedules import (
    _hook,
    _schedule,
    _scheduled,
    _until,
    quick,
)

__all__ = ["quick"]  # (the fixture, used by name)


def _stop(proc: subprocess.Popen[bytes], log: Path, within: float) -> int:
    """SIGTERM; the exit status, which must come within ``within`` seconds."""
    proc.send_signal(signal.SIGTERM)
    began = time.monotonic()
    try:
        code = proc.wait(within + 10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"cdp serve did not stop: {log.read_text()[-3000:]}") from None
    assert time.monotonic() - began < within, log.read_text()[-3000:]
    return code


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_a_scheduled_export_whose_occurrence_the_next_start_completes(
    world: World, tmp_path: Path, quick: None, workers: int
) -> None:
    ids = [world.person({"email": f"t{i}@example.com"}) for i in range(6)]
    gate = threading.Event()
    with running(Receiver(hold_first=gate)) as rx:
        occurrence = _scheduled(world, rx)
        log = tmp_path / "first.log"
        proc, _ = start_server(log, scheduler=True, workers=workers)
        try:
            _until(lambda: bool(rx.requests), 20, proc)  # the first of 3 batches is in flight
            threading.Timer(1.0, gate.set).start()  # answered once the stop has begun
            code = _stop(proc, log, within=8)
        finally:
            if proc.poll() is None:
                proc.kill()
        output = log.read_text()
        assert code == 0, output[-3000:]
        assert "scheduled export interrupted" in output and "background jobs stopped" in output
        # The batch in flight was delivered; no other one left.
        assert len(rx.requests) == 1 and len(rx.rows) == 2
        [(export_id, status, error)] = world.runs()
        assert (status, error) == ("failed", "interrupted") and world.staged() == 0
        assert sum(bool(recipients_of(s, runtime=world.rt)) for s in ids) == 2
        info = _schedule(world)
        assert info.next_run_at == occurrence <= utcnow()  # due again, at its own time
        assert (info.last_status, info.last_export_id) == ("interrupted", export_id)

        log = tmp_path / "second.log"
        proc, _ = start_server(log, scheduler=True)
        try:
            _until(lambda: _schedule(world).last_status == "succeeded", 20, proc)
            assert _stop(proc, log, within=8) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert sorted(r["email"] for r in rx.rows[2:]) == sorted(f"t{i}@example.com" for i in range(6))
    assert [r[1] for r in world.runs()] == ["failed", "succeeded"]
    assert _schedule(world).next_run_at > utcnow()


def _post_export(base: str, token: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/exports",
        json={"segment": "everyone", "destination": "hook"},
        headers={"Authorization": f"Bearer {token}", "X-Purpose": "email_marketing"},
        timeout=30,
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_waits_for_a_request_whose_client_already_got_its_504(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    monkeypatch.setenv("CDP_REQUEST_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("CDP_SHUTDOWN_GRACE_SECONDS", "15")
    for i in range(3):
        world.person({"email": f"d{i}@example.com"})
    token = create_principal(runtime=world.rt, name="mk", roles=["marketer"]).token
    with running(Receiver(delay_first=4)) as rx:
        _hook(world, rx, batch_size=10)
        log = tmp_path / "server.log"
        proc, base = start_server(log, workers=workers)
        try:
            answer = _post_export(base, token)
            assert answer.status_code == 504, answer.text
            assert answer.json()["error"]["code"] == "deadline_exceeded"
            # the handler goes on past its 504: wait until its batch is with the (slow)
            # receiver, which holds it 4 s (under load it may get there after the answer)
            deadline = time.monotonic() + 10
            while not rx.requests and time.monotonic() < deadline:
                time.sleep(0.05)
            assert rx.requests
            code = _stop(proc, log, within=12)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert code == 0, log.read_text()[-3000:]
    [(_, status, _)] = world.runs()
    assert status == "succeeded"  # the handler ran to its end, as api-errors.md says
    assert sorted(r["email"] for r in rx.rows) == [f"d{i}@example.com" for i in range(3)]


def test_past_the_grace_period_cdp_serve_exits_1_and_what_it_left_is_closed_later(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDP_REQUEST_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("CDP_SHUTDOWN_GRACE_SECONDS", "2")
    world.person({"email": "g@example.com"})
    token = create_principal(runtime=world.rt, name="mk", roles=["marketer"]).token
    with running(Receiver(delay_first=20)) as rx:
        _hook(world, rx, batch_size=10)
        log = tmp_path / "server.log"
        proc, base = start_server(log)
        try:
            assert _post_export(base, token).status_code == 504
            code = _stop(proc, log, within=2 + 2 + 3)  # grace, exit margin, slack
        finally:
            if proc.poll() is None:
                proc.kill()
    assert code == 1
    assert "cdp serve did not exit in time" in log.read_text()
    [(export_id, status, _)] = world.runs()
    assert status == "running"
    assert recover_interrupted(world.rt) == 1
    assert world.runs() == [(export_id, "failed", "interrupted")]
