"""What a destination may hold after a run that did not end normally stays in the sync state.

A webhook run interrupted, failed or killed after some batches left, or a batch dead-lettered
(the receiver may have kept it), used to leave those subjects out of the sync state: the next
run sent them again while they were eligible, but a consent withdrawal never became a remove for
them, so the receiver kept the data of people who had withdrawn. They now enter the sync state
*unconfirmed*: the next run sends them again while eligible and withdraws them once not. A
remove sent by a failed run makes its row unconfirmed (the receiver dropped the person: a later
grant must add them again). A failed file export sent nothing (its file is removed), and leaves
no sync row."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa

from cdp.errors import ExportInterruptedError
from cdp.exports.ledger import recipients_of
from cdp.exports.merge import move_export_rows
from cdp.exports.models import ExportRecipient, ExportRun, SyncMember
from cdp.exports.recovery import recover_interrupted
from cdp.exports.run import ExportResult, run_export
from cdp.exports.webhook import RetryPolicy
from tests.exports.conftest import World
from tests.exports.receiver import Receiver, running

RUNS = ExportRun.__table__  # type: ignore[attr-defined]
RECIPIENTS = ExportRecipient.__table__  # type: ignore[attr-defined]
SYNC = SyncMember.__table__  # type: ignore[attr-defined]
NO_RETRY = RetryPolicy(max_attempts=1, sleep=lambda _s: None)


def _hook(world: World, rx: Receiver) -> str:
    made = world.destination(
        "hook", "webhook", "email_marketing", ["email"], min_audience=1, url=rx.url,
        batch_size=1, timeout_seconds=30,
    )  # fmt: skip
    rx.secret = made.signing_secret or ""
    return made.destination.id


def _export(world: World, destination: str = "hook", **kw: Any) -> ExportResult:
    world.clock.advance(minutes=1)
    return run_export(
        runtime=world.rt,
        ctx=world.ctx("email_marketing"),
        segment="everyone",
        destination=destination,
        clock=world.clock,
        retry=kw.pop("retry", NO_RETRY),
        **kw,
    )


def _sync(world: World) -> dict[str, bool]:
    """subject id -> confirmed, of every sync row."""
    with world.rt.data_engine.connect() as conn:
        rows = conn.execute(sa.select(SYNC.c.subject_id, SYNC.c.confirmed)).all()
    return {r[0]: bool(r[1]) for r in rows}


def _ops(rx: Receiver) -> list[tuple[str, list[str]]]:
    """(op, emails) of every batch the receiver processed, in order."""
    return [(b["op"], [r["email"] for r in b["rows"]]) for b in rx.processed.values()]


def _email(world: World, sid: str, ids: list[str]) -> str:
    return f"s{ids.index(sid)}@example.com"


@pytest.mark.parametrize("withdraws", [True, False])
def test_a_run_interrupted_after_a_batch_was_acknowledged_keeps_it_in_the_sync_state(
    world: World, withdraws: bool
) -> None:
    ids = [world.person({"email": f"s{i}@example.com"}) for i in range(4)]
    hold, stop = threading.Event(), threading.Event()
    with running(Receiver(hold_first=hold)) as rx:
        _hook(world, rx)

        def stop_while_the_first_batch_is_in_flight() -> None:
            while not rx.arrivals:
                time.sleep(0.01)
            stop.set()  # cdp serve is told to stop ...
            hold.set()  # ... and the receiver acknowledges the batch in flight

        stopper = threading.Thread(target=stop_while_the_first_batch_is_in_flight)
        stopper.start()
        with pytest.raises(ExportInterruptedError):
            _export(world, stop=stop)
        stopper.join(5)
        [(_, [held_email])] = _ops(rx)
        [held] = [s for s in ids if recipients_of(s, runtime=world.rt)]
        assert held_email == _email(world, held, ids)
        assert world.runs()[0][1:] == ("failed", "interrupted")
        assert _sync(world) == {held: False}  # the receiver may hold it: unconfirmed

        if withdraws:
            world.consent(held, ["email_marketing"], "withdrawn")
        second = _export(world)
        c = second.counts
        if withdraws:  # before: no remove, ever; the receiver kept the data
            assert (c.sent, c.removed, c.unchanged) == (3, 1, 0)
            assert _ops(rx)[-1] == ("remove", [held_email])
            assert _sync(world) == {s: True for s in ids if s != held}
        else:  # sent again (it may not have arrived), then confirmed
            assert (c.sent, c.removed, c.unchanged) == (4, 0, 0)
            assert _sync(world) == dict.fromkeys(ids, True)
        third = _export(world).counts
        assert (third.sent, third.removed, third.unchanged) == (0, 0, 3 if withdraws else 4)


def _dead_run(world: World, dest_id: str, subject_ids: list[str]) -> str:
    """What a process killed in the middle of a webhook export leaves: a running run, its
    ledger rows (those of the batches whose request had started) and its staging rows."""
    export_id = "exp_" + "cd" * 12
    at = world.clock()
    with world.rt.data_engine.begin() as conn:
        conn.execute(
            sa.insert(RUNS).values(
                id=export_id, status="running", segment="everyone", destination_id=dest_id,
                purpose="email_marketing", principal_id="p", principal_name="mia",
                request_id="r", policy_version="v", full=False, started_at=at,
            )
        )  # fmt: skip
        for sid in subject_ids:
            conn.execute(
                sa.insert(RECIPIENTS).values(
                    export_id=export_id, subject_id=sid, destination_id=dest_id, op="add",
                    fields="email", at=at,
                )
            )  # fmt: skip
            conn.execute(
                sa.text(
                    "INSERT INTO export_staging (export_id, subject_id, state, action)"
                    " VALUES (:e, :s, 'eligible', 'add')"
                ),
                {"e": export_id, "s": sid},
            )
    return export_id


def test_a_killed_webhook_run_leaves_its_subjects_unconfirmed_in_the_sync_state(
    world: World,
) -> None:
    ids = [world.person({"email": f"s{i}@example.com"}) for i in range(3)]
    stays, withdraws, never_sent = ids
    with running(Receiver()) as rx:
        dest_id = _hook(world, rx)
        export_id = _dead_run(world, dest_id, [stays, withdraws])
        assert recover_interrupted(world.rt, clock=world.clock) == 1
        assert (export_id, "failed", "interrupted") in world.runs()
        assert world.staged() == 0
        # in the recovery's own transaction: whose batch may have gone is possibly held
        assert _sync(world) == {stays: False, withdraws: False}

        world.consent(withdraws, ["email_marketing"], "withdrawn")
        c = _export(world).counts
        assert (c.sent, c.removed, c.unchanged) == (2, 1, 0)
        assert ("remove", [_email(world, withdraws, ids)]) in _ops(rx)
        assert sorted(e for op, rows in _ops(rx) if op == "add" for e in rows) == sorted(
            _email(world, s, ids) for s in (stays, never_sent)
        )
        assert _sync(world) == {stays: True, never_sent: True}


@pytest.mark.parametrize("withdraws", [True, False])
def test_a_dead_lettered_batch_leaves_its_subject_unconfirmed(
    world: World, withdraws: bool
) -> None:
    ids = [world.person({"email": f"s{i}@example.com"}) for i in range(3)]
    with running(Receiver(script=[400])) as rx:  # the first batch is refused: a dead letter
        _hook(world, rx)
        first = _export(world)
        assert first.status == "partial" and first.counts.failed_delivery == 1
        with world.rt.data_engine.connect() as conn:
            letters = conn.execute(
                sa.text("SELECT subject_ids FROM webhook_deliveries WHERE status = 'dead_letter'")
            ).scalar_one()
        [lost] = json.loads(letters)
        assert _sync(world) == {s: s != lost for s in ids}

        if withdraws:
            world.consent(lost, ["email_marketing"], "withdrawn")
        c = _export(world).counts
        if withdraws:  # the receiver may have kept the refused batch: withdraw it all the same
            assert (c.sent, c.removed, c.unchanged) == (0, 1, 2)
            assert _ops(rx)[-1] == ("remove", [_email(world, lost, ids)])
            assert _sync(world) == {s: True for s in ids if s != lost}
        else:  # sent again, as before
            assert (c.sent, c.removed, c.unchanged) == (1, 0, 2)
            assert _ops(rx)[-1] == ("add", [_email(world, lost, ids)])
            assert _sync(world) == dict.fromkeys(ids, True)


def test_a_remove_sent_by_a_failed_run_is_added_again_after_a_new_grant(world: World) -> None:
    ids = [world.person({"email": f"s{i}@example.com"}) for i in range(2)]
    gone = ids[0]

    def fail_after_the_removes(action: str, done: int, total: int) -> None:
        if action == "remove":
            raise KeyboardInterrupt  # after the chunk's remove batch was acknowledged

    with running(Receiver()) as rx:
        _hook(world, rx)
        assert _export(world).counts.sent == 2
        world.consent(gone, ["email_marketing"], "withdrawn")
        with pytest.raises(KeyboardInterrupt):
            _export(world, progress=fail_after_the_removes)
        assert _ops(rx)[-1] == ("remove", [_email(world, gone, ids)])
        assert world.runs()[-1][1:] == ("failed", "interrupted")
        assert _sync(world) == {gone: False, ids[1]: True}  # the receiver may have dropped it

        world.consent(gone, ["email_marketing"], "granted")
        c = _export(world).counts
        assert (c.sent, c.removed, c.unchanged) == (1, 0, 1)  # before: kept, never re-added
        assert _ops(rx)[-1] == ("add", [_email(world, gone, ids)])
        assert _sync(world) == dict.fromkeys(ids, True)


def test_a_failed_file_export_sent_nothing_and_claims_nothing(world: World) -> None:
    ids = [world.person({"email": f"s{i}@example.com"}) for i in range(3)]
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)

    def fail(action: str, done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _export(world, "mail", progress=fail)
    assert world.runs()[0][1:] == ("failed", "interrupted")
    assert _sync(world) == {}  # its file was removed: nobody received anything
    assert not any(recipients_of(s, runtime=world.rt) for s in ids)
    assert _export(world, "mail").counts.sent == 3
    assert _sync(world) == dict.fromkeys(ids, True)


def test_a_merge_keeps_the_survivor_unconfirmed_when_the_absorbed_row_was(world: World) -> None:
    survivor, absorbed = (world.person({"email": f"m{i}@example.com"}) for i in range(2))
    with world.rt.data_engine.begin() as conn:
        for sid, confirmed in ((survivor, True), (absorbed, False)):
            conn.execute(
                sa.insert(SYNC).values(
                    destination_id="dst_x", segment="everyone", subject_id=sid,
                    export_id="exp_x", confirmed=confirmed,
                )
            )  # fmt: skip
        move_export_rows(conn, survivor=survivor, absorbed=absorbed)
    assert _sync(world) == {survivor: False}
