"""Incremental sync (adds and removes; a withdrawal is a remove), the recipients ledger, and the
subject access package listing the exports that included a person."""

from __future__ import annotations

import csv
from pathlib import Path

import sqlalchemy as sa

from cdp.exports.ledger import destinations_of, recipients_of
from cdp.privacy.access_package import build, render_html
from cdp.privacy.restriction import restrict
from tests.exports.conftest import World


def _emails(path: str | None) -> list[str]:
    assert path is not None
    with Path(path).open(newline="") as fh:
        return sorted(r["email"] for r in csv.DictReader(fh))


def _outputs(result) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {o["op"]: o["path"] for o in result.manifest["outputs"]}


def test_second_run_sends_adds_and_removes(world: World) -> None:
    rt = world.rt
    ids = [world.person({"email": f"u{i}@example.com"}) for i in range(4)]
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    first = world.export_email()
    assert first.counts.sent == 4 and first.counts.removed == 0
    # between runs: one withdraws, one is restricted, one new person joins
    world.consent(ids[0], ["email_marketing"], "withdrawn")
    with rt.data_engine.begin() as conn:
        restrict(conn=conn, subject_id=ids[1], request_id=None, clock=world.clock)
    new = world.person({"email": "u9@example.com"})
    second = world.export_email()
    c = second.counts
    assert (c.members, c.sent, c.unchanged, c.removed) == (5, 1, 2, 2)
    assert c.excluded_consent == 1 and c.excluded_restriction == 1 and c.adds_up()
    out = _outputs(second)
    assert _emails(out["add"]) == ["u9@example.com"]
    assert _emails(out["remove"]) == ["u0@example.com", "u1@example.com"]
    # a third run with no change sends nothing and removes nothing
    third = world.export_email()
    assert (third.counts.sent, third.counts.removed, third.counts.unchanged) == (0, 0, 3)
    assert "remove" not in _outputs(third)
    # --full resends every eligible subject
    full = world.export_email(full=True)
    assert full.counts.sent == 3 and full.counts.unchanged == 0
    # the ledger: u0 was added then removed; the newcomer added once
    assert [r.op for r in recipients_of(ids[0], runtime=rt)] == ["add", "remove"]
    assert [r.export_id for r in recipients_of(new, runtime=rt)] == [
        second.export_id,
        full.export_id,
    ]
    assert destinations_of(ids[0], runtime=rt) == ["mail"]
    with rt.data_engine.connect() as conn:
        sync = conn.execute(sa.text("SELECT count(*) FROM export_sync_members")).scalar_one()
        staging = conn.execute(sa.text("SELECT count(*) FROM export_staging")).scalar_one()
    assert sync == 3 and staging == 0


def test_sync_state_is_per_destination_and_segment(world: World) -> None:
    world.person({"email": "v@example.com"})
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    world.destination("mail2", "jsonl", "email_marketing", ["email"], min_audience=1)
    assert world.export_email("mail").counts.sent == 1
    assert world.export_email("mail2").counts.sent == 1
    assert world.export_email("mail").counts.sent == 0


def test_ledger_feeds_the_access_package(world: World) -> None:
    rt = world.rt
    sid = world.person({"email": "x@example.com", "first_name": "Xena"})
    other = world.person({"email": "y@example.com"})
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    result = world.export_email()
    recs = recipients_of(sid, runtime=rt)
    assert len(recs) == 1
    r = recs[0]
    assert (
        r.export_id,
        r.destination_name,
        r.destination_kind,
        r.purpose,
        r.segment,
        r.op,
        r.fields,
    ) == (result.export_id, "mail", "csv", "email_marketing", "everyone", "add", ("email",))
    with rt.data_engine.connect() as conn:
        package = build(
            runtime=rt,
            conn=conn,
            subject_id=sid,
            request_id="pr_" + "0" * 24,
            generated_at=world.clock(),
        )
    (section,) = [s for s in package["recipients"] if s["table"] == "export_recipients"]
    assert [row["export_id"] for row in section["rows"]] == [result.export_id]
    assert all(row["subject_id"] == sid for row in section["rows"])
    # the person is told who received the data, not only an internal id
    named = [(r["destination_name"], r["destination_kind"], r["purpose"]) for r in section["rows"]]
    assert named == [("mail", "csv", "email_marketing")]
    assert "mail (csv, for email marketing)" in render_html(package)
    assert other not in str(package["recipients"])
    # and the audit trail of the package shows the export's decryption of the person's email
    assert any(
        a["action"] == "decrypt" and a["fields"] == ["email"] for a in package["audit_trail"]
    )


def test_erasure_lists_destinations_from_the_ledger_and_clears_export_rows(world: World) -> None:
    from cdp.privacy.erasure import erase_subject

    rt = world.rt
    sid = world.person({"email": "gone@example.com"})
    keep = world.person({"email": "stay@example.com"})
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    world.export_email()
    outcome = erase_subject(runtime=rt, subject_id=sid, clock=world.clock)
    assert [d["name"] for d in outcome.destinations] == ["mail"]
    assert recipients_of(sid, runtime=rt) == []
    with rt.data_engine.connect() as conn:
        left = conn.execute(
            sa.text("SELECT count(*) FROM export_sync_members WHERE subject_id = :s"), {"s": sid}
        ).scalar_one()
    assert left == 0
    # the next run neither sends nor tries to remove the erased subject (the notice covers it)
    after = world.export_email()
    assert (after.counts.members, after.counts.unchanged, after.counts.removed) == (1, 1, 0)
    assert [r.op for r in recipients_of(keep, runtime=rt)] == ["add"]


def test_subject_access_report_lists_the_exports_that_included_the_person(world: World) -> None:
    from datetime import timedelta

    from cdp.audit import activity_reports
    from cdp.audit.render import render

    rt = world.rt
    sid = world.person({"email": "r@example.com"})
    outsider = world.person({"email": "o@example.com"})
    world.consent(outsider, ["email_marketing"], "withdrawn")
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    result = world.export_email()
    now = world.clock()
    report = activity_reports.subject_access(
        runtime=rt, subject_id=sid, since=now - timedelta(days=1), until=now + timedelta(days=1)
    )
    assert [(r.recipient, r.purpose, r.fields, r.reference) for r in report.recipients or []] == [
        ("mail (csv)", "email_marketing", ("email",), result.export_id)
    ]
    assert result.export_id in render(report, "html")
    empty = activity_reports.subject_access(
        runtime=rt, subject_id=outsider, since=now - timedelta(days=1), until=now
    )
    assert empty.recipients == []


def test_subject_access_csv_lists_who_received_the_data(world: World) -> None:
    """The CSV of a subject access report has the Markdown and HTML versions' "who received this
    data": after the records and an empty line, a section of its own (the CSV left it out)."""
    import io
    from datetime import datetime, timedelta

    from cdp.audit import activity_reports
    from cdp.audit.render import render

    rt = world.rt
    sid = world.person({"email": "r@example.com"})
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    result = world.export_email()
    now = world.clock()
    report = activity_reports.subject_access(
        runtime=rt, subject_id=sid, since=now - timedelta(days=1), until=now + timedelta(days=1)
    )
    rows = list(csv.reader(io.StringIO(render(report, "csv"))))
    gap = rows.index([])
    records, received = rows[:gap], rows[gap + 1 :]
    assert records[0][:3] == ["seq", "at", "principal"]
    assert len(records) == 1 + report.total
    assert received[0] == ["who_received_this_data"]
    assert received[1] == ["at", "recipient", "purpose", "fields", "reference"]
    assert [r[1:] for r in received[2:]] == [
        ["mail (csv)", "email_marketing", "email", result.export_id]
    ]
    assert datetime.fromisoformat(received[2][0]) == report.recipients[0].at  # type: ignore[index]
    nobody = activity_reports.subject_access(
        runtime=rt, subject_id="ef" * 16, since=now - timedelta(days=1), until=now
    )
    rows = list(csv.reader(io.StringIO(render(nobody, "csv"))))
    assert rows[-2:] == [
        ["who_received_this_data"],
        ["at", "recipient", "purpose", "fields", "reference"],
    ]


def test_subjects_without_the_fields_are_never_sent_and_leave_the_destination(
    world: World,
) -> None:
    """A member without any of the destination's fields counts as having no usable data and
    reaches neither the ledger nor the sync state; one the destination holds that loses them
    is withdrawn (an unresolvable remove) while one that keeps them stays (unchanged);
    ``--full`` resends only the subjects that have them."""
    from cdp.exports.sync import SYNC
    from cdp.profiles.pii_records import write_sealed

    rt = world.rt
    keeps, loses = (world.person({"email": f"k{i}@example.com"}) for i in range(2))
    never = world.person({"first_name": "Ann"})
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)

    def synced() -> set[str]:
        with rt.data_engine.connect() as conn:
            return set(conn.execute(sa.select(SYNC.c.subject_id)).scalars())

    c = world.export_email().counts
    assert (c.members, c.sent, c.excluded_no_data) == (3, 2, 1) and c.adds_up()
    assert synced() == {keeps, loses}
    with rt.data_engine.begin() as conn:  # the email is gone, another field stays
        sealed = rt.vault.encrypt_fields(loses, {"first_name": "Bo"})
        write_sealed(conn, {loses: sealed}, existing={loses}, now=world.clock())
    second = world.export_email()
    c = second.counts
    # withdrawn, though without an identifier left to name it in the removes file
    assert (c.sent, c.unchanged, c.removes_unresolvable, c.excluded_no_data) == (0, 1, 1, 2)
    assert c.adds_up()
    assert synced() == {keeps}
    c = world.export_email(full=True).counts
    assert (c.sent, c.unchanged, c.removed, c.excluded_no_data) == (1, 0, 0, 2) and c.adds_up()
    assert synced() == {keeps}
    assert recipients_of(never, runtime=rt) == []
