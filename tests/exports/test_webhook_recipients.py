"""A subject is a recipient of a webhook export only when a batch holding its data may have left
cdp: a request carrying the batch was at least started on an open connection.

Before, the ledger rows of a whole 5,000-subject chunk were written before any of its batches
was posted, and kept whatever became of the batches. A receiver that refused every connection
(or a host name that did not resolve, or a stored URL that could not be used) was recorded as
having received everyone, the dead letters put them all in the sync state, and once two of them
withdrew consent the first thing that receiver ever got about them was their email, in a remove
batch. A run killed after a few batches kept the ledger rows of the whole chunk in the same way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from cdp.access.principals import create as create_principal
from cdp.audit.activity_reports import subject_access
from cdp.exports.ledger import recipients_of
from cdp.exports.models import SyncMember
from cdp.exports.recovery import recover_interrupted
from cdp.exports.run import ExportResult, run_export
from cdp.exports.webhook import RetryPolicy, WebhookSender
from tests.crash.helpers import CLI, free_port
from tests.exports.conftest import World
from tests.exports.receiver import Receiver, running

SYNC = SyncMember.__table__  # type: ignore[attr-defined]
TWO_TRIES = RetryPolicy(max_attempts=2, sleep=lambda _s: None)


def _export(world: World, **kw: Any) -> ExportResult:
    world.clock.advance(minutes=1)
    return run_export(
        runtime=world.rt,
        ctx=world.ctx("email_marketing"),
        segment="everyone",
        destination="hook",
        clock=world.clock,
        retry=kw.pop("retry", TWO_TRIES),
        **kw,
    )


def _sync(world: World) -> dict[str, bool]:
    with world.rt.data_engine.connect() as conn:
        rows = conn.execute(sa.select(SYNC.c.subject_id, SYNC.c.confirmed)).all()
    return {r[0]: bool(r[1]) for r in rows}


def _ops(rx: Receiver) -> list[tuple[str, list[str]]]:
    return [(b["op"], [r["email"] for r in b["rows"]]) for b in rx.processed.values()]


def _set_url(world: World, url: str) -> None:
    with world.rt.data_engine.begin() as conn:
        conn.execute(sa.text("UPDATE export_destinations SET url = :u"), {"u": url})


@pytest.mark.parametrize("failure", ["refused", "dns", "invalid_url"])
def test_a_receiver_that_never_got_a_batch_is_never_sent_a_remove(
    world: World, failure: str
) -> None:
    ids = [world.person({"email": f"r{i:02}@example.com"}) for i in range(12)]
    port = free_port()  # nothing listens there yet: every connection is refused
    url = {
        "refused": f"http://127.0.0.1:{port}/hook",
        "dns": "https://cdp-test.invalid/hook",  # the name does not resolve
        "invalid_url": "https://h.example/hook",
    }[failure]
    made = world.destination(
        "hook", "webhook", "email_marketing", ["email"], min_audience=10, url=url,
        batch_size=5, max_attempts=2, timeout_seconds=5,
    )  # fmt: skip
    if failure == "invalid_url":  # stored before creation checked ports
        _set_url(world, "http://127.0.0.1:18931:80/hook")

    first = _export(world)
    assert first.status == "partial" and first.counts.failed_delivery == 12
    # nothing of theirs left cdp: not a recipient, not possibly held by the destination
    assert not any(recipients_of(s, runtime=world.rt) for s in ids)
    # the subject access report's "who received my data"
    assert not subject_access(runtime=world.rt, subject_id=ids[0], clock=world.clock).recipients
    assert _sync(world) == {}

    withdrawn = ids[:2]
    for sid in withdrawn:
        world.consent(sid, ["email_marketing"], "withdrawn")
    rx = Receiver(secret=made.signing_secret or "")
    with running(rx, port=port if failure == "refused" else 0):  # the receiver comes up
        if failure != "refused":
            _set_url(world, rx.url)
        second = _export(world)
    c = second.counts
    assert (c.sent, c.removed, c.removes_failed) == (10, 0, 0)  # before: removed 2
    assert [op for op, _ in _ops(rx)] == ["add", "add"]
    assert sorted(e for _, emails in _ops(rx) for e in emails) == [
        f"r{i:02}@example.com" for i in range(2, 12)
    ]
    assert not any(recipients_of(s, runtime=world.rt) for s in withdrawn)
    assert _sync(world) == {s: True for s in ids[2:]}


@contextmanager
def _raw_server(answer: bytes | None, *, then_close: bool = False) -> Iterator[str]:
    """A TCP server reading one request per connection, then sending ``answer`` (None: closing
    without an answer); ``then_close``: it stops listening after the first connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    part = conn.recv(65536)
                    if not part:
                        break
                    data += part
                if answer is not None:
                    conn.sendall(answer)
            if then_close:
                listener.close()
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        listener.close()
        thread.join(5)


@pytest.mark.parametrize("answer", ["500", "400", "timeout", "reset"])
def test_a_batch_that_may_have_left_keeps_its_subjects_as_recipients(
    world: World, answer: str
) -> None:
    ids = [world.person({"email": f"m{i}@example.com"}) for i in range(3)]
    if answer == "timeout":
        rx = Receiver(delay_first=3, script=[200])
        with running(rx):
            made = world.destination(
                "hook", "webhook", "email_marketing", ["email"], min_audience=1, url=rx.url,
                batch_size=3, timeout_seconds=0.5,
            )  # fmt: skip
            rx.secret = made.signing_secret or ""
            result = _export(world, retry=RetryPolicy(max_attempts=1, sleep=lambda _s: None))
    else:
        reply = {
            "500": b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n",
            "400": b"HTTP/1.1 400 No\r\nContent-Length: 0\r\n\r\n",
            "reset": None,  # read the batch, then hang up without answering
        }[answer]
        with _raw_server(reply) as url:
            world.destination(
                "hook", "webhook", "email_marketing", ["email"], min_audience=1, url=url,
                batch_size=3, timeout_seconds=5,
            )  # fmt: skip
            result = _export(world)
    assert result.status == "partial" and result.counts.failed_delivery == 3
    assert all(recipients_of(s, runtime=world.rt) for s in ids)
    assert _sync(world) == dict.fromkeys(ids, False)  # possibly held: a withdrawal removes


def test_a_batch_whose_first_try_was_answered_stays_sent_when_later_tries_are_refused() -> None:
    announced: list[int] = []
    with _raw_server(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", then_close=True) as url:
        sender = WebhookSender(
            url=url,
            secret="whsec_test",
            timeout_seconds=5,
            retry=RetryPolicy(max_attempts=3, sleep=lambda _s: time.sleep(0.2)),
        )
        with sender:
            result = sender.deliver(
                b'{"rows":[]}',
                idempotency_key="exp_t.add.1",
                export_id="exp_t",
                on_send=lambda: announced.append(1),
            )
    assert (result.delivered, result.attempts, result.last_error) == (False, 3, "ConnectError")
    assert announced == [1]  # the first try carried the body; the refused ones did not


def test_a_killed_run_names_only_the_subjects_of_batches_it_started(world: World) -> None:
    email_of = {
        world.person({"email": f"k{i}@example.com"}): f"k{i}@example.com" for i in range(10)
    }
    ids = sorted(email_of)
    token = create_principal(runtime=world.rt, name="mk", roles=["marketer"]).token
    hold = threading.Event()
    rx = Receiver(hold_first=hold, hold_at=2)  # the third batch is never answered
    with running(rx):
        made = world.destination(
            "hook", "webhook", "email_marketing", ["email"], min_audience=1, url=rx.url,
            batch_size=2, timeout_seconds=60,
        )  # fmt: skip
        rx.secret = made.signing_secret or ""
        proc = subprocess.Popen(  # the real command, killed while its third batch is in flight
            [*CLI, "export", "run", "everyone", "-d", "hook", "--token", token],
            env=os.environ.copy(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while len(rx.requests) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(rx.requests) == 3, "the export never posted its third batch"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert len(rx.processed) == 2  # the third batch arrived, unanswered
        hold.set()
    assert recover_interrupted(world.rt, clock=world.clock) == 1
    assert world.runs()[0][1:] == ("failed", "interrupted")

    # batches in id order, two subjects each: three were started (the third may have arrived)
    started, never_posted = ids[:6], ids[6:]
    assert [bool(recipients_of(s, runtime=world.rt)) for s in ids] == [True] * 6 + [False] * 4
    assert _sync(world) == dict.fromkeys(started, False)

    received, unsent = started[0], never_posted[-1]
    for sid in (received, unsent):
        world.consent(sid, ["email_marketing"], "withdrawn")
    rx2 = Receiver(secret=made.signing_secret or "")
    with running(rx2):
        _set_url(world, rx2.url)
        c = _export(world).counts
    removes = [e for op, rows in _ops(rx2) if op == "remove" for e in rows]
    assert removes == [email_of[received]]  # before: the never-posted one's email too
    assert c.removed == 1
    assert not recipients_of(unsent, runtime=world.rt)
