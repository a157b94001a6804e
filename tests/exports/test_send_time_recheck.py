"""Consent and restriction are checked again for every chunk of adds (cdp.exports.recheck): a
withdrawal, an objection or a restriction committed after staging stops that person's data."""

from __future__ import annotations

import csv
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cdp.consent.service import ConsentInput, record_consents
from cdp.exports import run as export_run
from cdp.exports import send as export_send
from cdp.exports.recheck import Marks, take_marks
from cdp.privacy.objection import object_to_marketing
from cdp.privacy.restriction import restrict
from tests.exports.conftest import World
from tests.exports.receiver import Receiver, running


def _sent(result: export_run.ExportResult, op: str = "add") -> set[str]:
    out = next(o for o in result.manifest["outputs"] if o["op"] == op)
    with Path(out["path"]).open(newline="") as fh:
        return {row["email"] for row in csv.DictReader(fh)}


def _ledger(world: World, export_id: str) -> set[str]:
    with world.rt.data_engine.connect() as conn:
        return set(
            conn.execute(
                sa.text("SELECT subject_id FROM export_recipients WHERE export_id = :e"),
                {"e": export_id},
            ).scalars()
        )


def _decrypt_audits(world: World, export_id: str) -> set[str]:
    with world.rt.data_engine.connect() as conn:
        return {
            str(r[0])
            for r in conn.execute(
                sa.text(
                    "SELECT subject_id FROM audit_subjects s JOIN audit_log a ON a.seq = s.seq "
                    "WHERE a.request_id = :e AND a.action = 'decrypt'"
                ),
                {"e": export_id},
            )
        }


def _synced(world: World) -> set[str]:
    with world.rt.data_engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT subject_id FROM export_sync_members")).scalars())


def _people(world: World, n: int) -> list[str]:
    return [world.person({"email": f"p{i}@example.com"}) for i in range(n)]


def test_withdrawal_and_restriction_while_the_chunk_decrypts_are_not_sent(
    world: World, monkeypatch: Any
) -> None:
    """The reviewer's case: committed after staging, while the chunk is being decrypted; the
    check inside the chunk's audit transaction drops them."""
    rt = world.rt
    ids = _people(world, 4)
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    real = export_send.decrypt_chunk
    done: list[int] = []

    def later(runtime: Any, chunk: Any, needs: Any, dense: bool = False) -> Any:
        if not done:
            done.append(1)
            world.consent(ids[0], ["email_marketing"], "withdrawn")
            with rt.data_engine.begin() as conn:
                restrict(conn=conn, subject_id=ids[1], request_id=None, clock=world.clock)
        return real(runtime, chunk, needs, dense=dense)

    monkeypatch.setattr(export_send, "decrypt_chunk", later)
    result = world.export_email()
    assert _sent(result) == {"p2@example.com", "p3@example.com"}
    c = result.counts
    assert (c.members, c.sent, c.excluded_consent, c.excluded_restriction) == (4, 2, 0, 0)
    assert (c.excluded_consent_late, c.excluded_restriction_late) == (1, 1)
    assert c.adds_up() and result.status == "succeeded"
    assert result.manifest["counts"]["excluded_consent_late"] == 1
    # neither is in the ledger nor the sync state; both were decrypted (in memory, then
    # dropped), which the audit trail shows as it shows every decryption
    assert _ledger(world, result.export_id) == {ids[2], ids[3]}
    assert _synced(world) == {ids[2], ids[3]}
    assert _decrypt_audits(world, result.export_id) == set(ids)
    with rt.data_engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT excluded_consent, excluded_restriction, sent FROM export_runs")
        ).one()
    assert tuple(row) == (1, 1, 2)
    # the next run sends nothing new (p0 withdrew, p1 is restricted) and removes nobody
    again = world.export_email()
    assert again.counts.sent == 0 and again.counts.removed == 0
    assert again.counts.excluded_consent == 1 and again.counts.excluded_restriction == 1


def test_objection_after_staging_is_not_decrypted_nor_sent(world: World, monkeypatch: Any) -> None:
    """An objection (art. 21) committed between staging and the chunk: the check before
    decryption drops the subject; nothing of theirs is decrypted, audited or recorded."""
    rt = world.rt
    ids = _people(world, 3)
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    real_minimum = export_run.below_minimum
    decrypted: list[str] = []
    real_decrypt = export_send.decrypt_chunk

    def staged_then_objection(dest: Any, n: int) -> Any:
        if not decrypted and n == 3:  # the first call: right after staging
            with rt.data_engine.begin() as conn:
                object_to_marketing(
                    conn=conn, subject_id=ids[0], request_id="pr_x", actor="dpo", now=world.clock()
                )
        return real_minimum(dest, n)

    def spy(runtime: Any, chunk: Any, needs: Any, dense: bool = False) -> Any:
        decrypted.extend(chunk)
        return real_decrypt(runtime, chunk, needs, dense=dense)

    monkeypatch.setattr(export_run, "below_minimum", staged_then_objection)
    monkeypatch.setattr(export_send, "decrypt_chunk", spy)
    result = world.export_email()
    assert "p0@example.com" not in _sent(result)
    assert ids[0] not in decrypted
    assert ids[0] not in _decrypt_audits(world, result.export_id)
    assert ids[0] not in _ledger(world, result.export_id)
    c = result.counts
    assert (c.sent, c.excluded_consent_late, c.excluded_restriction_late) == (2, 1, 0)
    assert c.adds_up()


def test_late_exclusions_count_against_the_minimum_audience(world: World, monkeypatch: Any) -> None:
    """Staged at the minimum; one withdraws before sending: the adds are refused."""
    ids = _people(world, 3)
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=3)
    real = export_run.below_minimum
    calls: list[int] = []

    def withdraw_after_staging(dest: Any, n: int) -> Any:
        if not calls:
            world.consent(ids[0], ["email_marketing"], "withdrawn")
        calls.append(n)
        return real(dest, n)

    monkeypatch.setattr(export_run, "below_minimum", withdraw_after_staging)
    try:
        world.export_email()
    except export_run.AudienceTooSmallError as err:
        counts = err.counts
    else:
        raise AssertionError("sent below the minimum audience")
    assert counts["excluded_consent_late"] == 1 and counts["sent"] == 0
    assert counts["adds_refused"] == 2
    assert _synced(world) == set()


def test_a_withdrawal_after_staging_does_not_hold_back_a_remove(
    world: World, monkeypatch: Any
) -> None:
    """Removes are not re-checked: a subject being removed goes whatever it does meanwhile."""
    rt = world.rt
    ids = _people(world, 3)
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    assert world.export_email().counts.sent == 3
    with rt.data_engine.begin() as conn:  # p0 restricted: staged as a remove next time
        restrict(conn=conn, subject_id=ids[0], request_id=None, clock=world.clock)
    real = export_run.below_minimum
    calls: list[int] = []

    def withdraw_after_staging(dest: Any, n: int) -> Any:
        if not calls:
            world.consent(ids[0], ["email_marketing"], "withdrawn")
        calls.append(n)
        return real(dest, n)

    monkeypatch.setattr(export_run, "below_minimum", withdraw_after_staging)
    result = world.export_email()
    assert _sent(result, "remove") == {"p0@example.com"}
    assert result.counts.removed == 1 and result.counts.excluded_consent_late == 0
    assert _synced(world) == {ids[1], ids[2]}


def test_the_marks_wait_for_a_withdrawal_still_being_written(world: World) -> None:
    """No ledger entry at or below the mark can commit after the mark is taken: taking it waits
    for a transaction still inserting one (PostgreSQL: the SHARE lock; SQLite: the write lock),
    so an entry staging did not see always lies above the mark."""
    [sid] = _people(world, 1)
    engine = world.rt.data_engine
    conn = engine.connect()
    tx = conn.begin()
    record_consents(
        conn=conn,
        items=[
            ConsentInput(
                subject_id=sid,
                purpose="email_marketing",
                status="withdrawn",
                occurred_at=world.clock(),
                source="test",
                mechanism="checkbox",
                recorded_by="test",
            )
        ],
        clock=world.clock,
    )
    got: dict[str, Marks] = {}

    def mark() -> None:
        with engine.begin() as other:
            got["marks"] = take_marks(other)

    thread = threading.Thread(target=mark)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive(), "the marks were taken past an uncommitted ledger entry"
    tx.commit()
    conn.close()
    thread.join(10)
    with engine.connect() as c:
        top = c.execute(sa.text("SELECT max(id) FROM consent_events")).scalar_one()
    assert got["marks"].consent == top


def test_a_webhook_posts_no_batch_with_a_subject_who_withdrew_after_staging(
    world: World, monkeypatch: Any
) -> None:
    """A webhook's batches of a chunk go after the chunk's check: the withdrawn subject is in
    none of them, and the run counts it as a late exclusion."""
    real = export_run.below_minimum
    calls: list[int] = []
    with running(Receiver()) as rx:
        ids = [world.person({"email": f"w{i}@example.com"}) for i in range(4)]
        created = world.destination(
            "hook", "webhook", "email_marketing", ["email"], min_audience=1, url=rx.url,
            batch_size=2,
        )  # fmt: skip
        rx.secret = created.signing_secret or ""

        def withdraw_after_staging(dest: Any, n: int) -> Any:
            if not calls:
                world.consent(ids[1], ["email_marketing"], "withdrawn")
            calls.append(n)
            return real(dest, n)

        monkeypatch.setattr(export_run, "below_minimum", withdraw_after_staging)
        result = world.export_email("hook")
    assert sorted(r["email"] for r in rx.rows) == [
        "w0@example.com",
        "w2@example.com",
        "w3@example.com",
    ]
    c = result.counts
    assert (c.sent, c.excluded_consent_late) == (3, 1) and c.adds_up()
    assert ids[1] not in _ledger(world, result.export_id)


def test_an_objection_to_profiling_while_the_chunk_decrypts_is_not_sent(
    world: World, monkeypatch: Any
) -> None:
    """``analytics`` withdrawn (an upheld objection to profiling) after staging: the subject
    leaves every segment, so the chunk's check drops it even though the destination's own
    purpose (email marketing) is still granted."""
    ids = _people(world, 3)
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    real = export_send.decrypt_chunk
    done: list[int] = []

    def later(runtime: Any, chunk: Any, needs: Any, dense: bool = False) -> Any:
        if not done:
            done.append(1)
            world.consent(ids[0], ["analytics"], "withdrawn")
        return real(runtime, chunk, needs, dense=dense)

    monkeypatch.setattr(export_send, "decrypt_chunk", later)
    result = world.export_email()
    assert _sent(result) == {"p1@example.com", "p2@example.com"}
    c = result.counts
    assert (c.sent, c.excluded_consent_late, c.excluded_restriction_late) == (2, 1, 0)
    assert c.adds_up()
    assert ids[0] not in _ledger(world, result.export_id) and ids[0] not in _synced(world)
