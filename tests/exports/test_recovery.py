"""An export whose process was killed stayed ``running`` forever, with its staging rows and a
``.part`` file of personal data. The next export (or ``cdp serve``'s scheduler) closes it as
``failed`` / ``interrupted`` once no export holds the lock, removes the partial file and keeps
the ledger rows only where data may have left."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import sqlalchemy as sa

from cdp.access.principals import create as create_principal
from cdp.exports.ledger import recipients_of
from cdp.exports.outputs import export_dir
from cdp.exports.recovery import recover_interrupted
from cdp.privacy.erasure_lock import export_guard
from tests.crash.helpers import CLI
from tests.exports.conftest import World
from tests.exports.receiver import Receiver, running


def test_a_killed_webhook_export_is_closed_and_keeps_what_it_may_have_sent(
    world: World,
) -> None:
    ids = [world.person({"email": f"k{i}@example.com"}) for i in range(3)]
    token = create_principal(runtime=world.rt, name="mk", roles=["marketer"]).token
    with running(Receiver(delay_first=10)) as rx:
        made = world.destination(
            "hook", "webhook", "email_marketing", ["email"], min_audience=1, url=rx.url,
            batch_size=2, timeout_seconds=30,
        )  # fmt: skip
        rx.secret = made.signing_secret or ""
        proc = subprocess.Popen(  # the real command, killed while its first batch is in flight
            [*CLI, "export", "run", "everyone", "-d", "hook", "--token", token],
            env=os.environ.copy(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not rx.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rx.requests, "the export never posted"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    [(export_id, status, _)] = world.runs()
    assert status == "running" and world.staged() == 3

    with export_guard(world.rt):  # another export is running: nothing can be told apart
        assert recover_interrupted(world.rt) == 0
    assert world.runs()[0][1] == "running"

    assert recover_interrupted(world.rt) == 1
    assert world.runs() == [(export_id, "failed", "interrupted")]
    assert world.staged() == 0
    # the first batch reached the receiver: its subjects stay in "who received my data"
    assert sum(bool(recipients_of(s, runtime=world.rt)) for s in ids) >= 2
    assert recover_interrupted(world.rt) == 0  # nothing left to close


def test_a_dead_file_export_loses_its_partial_file_and_its_ledger_rows(world: World) -> None:
    sid = world.person({"email": "f@example.com"})
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    first = world.export_email()
    # what a process killed mid-file leaves: a running row, staging and ledger rows, a .part
    stale = "exp_" + "ab" * 12
    folder = export_dir(world.rt) / "mail"
    part = folder / f"{stale}.csv.part"
    part.write_text("email\nf@example.com\n")
    with world.rt.data_engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO export_runs (id, status, segment, destination_id, purpose,"
                ' principal_id, principal_name, request_id, policy_version, "full",'
                " started_at, members, excluded_consent, excluded_restriction, skipped_no_data,"
                " unchanged, sent, removed, failed_delivery)"
                " SELECT :id, 'running', segment, destination_id, purpose, principal_id,"
                ' principal_name, request_id, policy_version, "full", started_at, 0, 0, 0, 0,'
                " 0, 0, 0, 0 FROM export_runs WHERE id = :first"
            ),
            {"id": stale, "first": first.export_id},
        )
        conn.execute(
            sa.text(
                "INSERT INTO export_recipients (export_id, subject_id, destination_id, op,"
                " fields, at) SELECT :id, subject_id, destination_id, op, fields, at"
                " FROM export_recipients WHERE export_id = :first"
            ),
            {"id": stale, "first": first.export_id},
        )
    assert len(recipients_of(sid, runtime=world.rt)) == 2

    world.person({"email": "g@example.com"})
    second = world.export_email()  # the next export closes the dead one first
    assert (stale, "failed", "interrupted") in world.runs()
    assert not part.exists()
    assert [r.export_id for r in recipients_of(sid, runtime=world.rt)] == [first.export_id]
    assert second.status == "succeeded"
    assert Path(second.manifest["outputs"][0]["path"]).exists()
