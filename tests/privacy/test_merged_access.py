"""A person merged from several subjects is served under every id they had: the access package
and the subject access report include the audit records written under an absorbed id (the log
is append-only, it keeps the id) and the recipients ledger rows left under one."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from cdp.audit.writer import LOG, SUBJECTS
from cdp.cli import app
from cdp.clock import FrozenClock
from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Identity
from cdp.exports.sync import RECIPIENTS
from cdp.privacy import access_package
from cdp.profiles.former_ids import former_ids, person_ids
from cdp.profiles.models import SubjectMerge
from cdp.segments.service import create_segment
from cdp.segments.views import SegmentIn
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.exports.conftest import EVERYONE, World
from tests.ingest.helpers import CUSTOMER_HEADER, customer, write_csv
from tests.traits.factories import make_subjects

runner = CliRunner()
MERGES = SubjectMerge.__table__  # type: ignore[attr-defined]


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _ingest(tmp_path: Path, name: str, row: dict[str, str]) -> None:
    _ok(["ingest", "customers", str(write_csv(tmp_path / name, [row], CUSTOMER_HEADER))])


def _subject_of(env: CdpEnv, n: int) -> str:
    tok = env.runtime.tokenizer.token(IdentityKind.CUSTOMER_ID, f"C{n:05d}").value
    with env.runtime.data_engine.connect() as conn:
        return str(
            conn.execute(
                sa.select(Identity.subject_id).where(  # type: ignore[call-overload]
                    Identity.token == tok
                )
            ).scalar_one()
        )


def _seqs_naming(env: CdpEnv, sid: str) -> set[int]:
    with env.runtime.data_engine.connect() as conn:
        return set(
            conn.execute(sa.select(SUBJECTS.c.seq).where(SUBJECTS.c.subject_id == sid)).scalars()
        )


def test_the_package_and_report_of_a_merged_person_cover_every_id_they_had(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    # three customers, oldest first: a merge keeps the older subject
    for n in (1, 2, 3):
        _ingest(tmp_path, f"c{n}.csv", customer(n, phone=""))
    c, b, a = (_subject_of(cdp_env, n) for n in (1, 2, 3))
    dpo = ["--token", make_principal(rt, ["dpo"]).token, "--purpose", "privacy_request"]

    # customer 3 (subject a) is exported, then files an access request: both recorded under a
    world = World(rt, FrozenClock(datetime.now(UTC)))
    create_segment(
        runtime=rt, data=SegmentIn(name="everyone", rule=EVERYONE), actor="t", clock=world.clock
    )
    world.consent(a, ["email_marketing"], "granted")
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    first = world.export_email()
    assert first.counts.sent == 1
    made = _ok(["privacy", "request", "access", "--email", "person3@example.com", *dpo])
    match = re.search(r"pr_[0-9a-f]{24}", made)
    assert match is not None
    rid = match.group(0)
    under_a = _seqs_naming(cdp_env, a)
    assert under_a  # the export and the filing's identity lookup

    # a record links customer 3 to customer 2's email: a merges into b; b is read by support
    _ingest(tmp_path, "link1.csv", customer(3, email="person2@example.com", phone="", city=""))
    support = make_principal(rt, ["support"]).token
    _ok(["profiles", "show", b, "--token", support, "--purpose", "support"])
    under_b = _seqs_naming(cdp_env, b)
    assert under_b
    # then customer 2 to customer 1's: b merges into c (so a is c's through b)
    _ingest(tmp_path, "link2.csv", customer(2, email="person1@example.com", phone="", city=""))
    with rt.data_engine.connect() as conn:
        assert person_ids(conn, c) == [c, a, b]
    # a ledger row left under the absorbed id (an export that recorded its chunk after the merge)
    with rt.data_engine.begin() as conn:
        dest = conn.execute(sa.select(RECIPIENTS.c.destination_id)).scalar_one()
        conn.execute(
            sa.insert(RECIPIENTS).values(
                export_id=first.export_id,
                subject_id=a,
                destination_id=dest,
                op="add",
                fields="email",
                at=world.clock(),
            )
        )

    for step in (["verify", rid], ["run", rid]):
        _ok(["privacy", *step, *dpo])
    out = tmp_path / "p.json"
    _ok(["privacy", "package", rid, "-o", str(out), *dpo])
    package = json.loads(out.read_text())
    access_package.validate(package)
    assert package["subject"]["id"] == c
    assert [f["id"] for f in package["subject"]["former_ids"]] == [a, b]
    assert {f["linked_by"] for f in package["subject"]["former_ids"]} <= {"email", "customer_id"}
    trail = {entry["seq"] for entry in package["audit_trail"]}
    assert under_a | under_b <= trail
    assert len(trail) == len(package["audit_trail"])  # a record naming several ids once
    (ledger,) = [s for s in package["recipients"] if s["table"] == "export_recipients"]
    assert sorted(r["subject_id"] for r in ledger["rows"]) == sorted([a, c])
    assert {r["destination_name"] for r in ledger["rows"]} == {"mail"}
    assert [r["id"] for r in package["privacy_requests"]] == [rid]

    auditor = make_principal(rt, ["auditor"]).token
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    until = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    window = ["--since", since, "--until", until, "--token", auditor, "--purpose", "audit"]
    body = _ok(["audit", "report", "subject-access", "--subject", c, "--format", "csv", *window])
    records, _, received = body.partition("\n\n")
    listed = {int(row["seq"]) for row in csv.DictReader(io.StringIO(records))}
    assert under_a | under_b <= listed
    sent = list(csv.DictReader(io.StringIO(received.split("\n", 1)[1])))
    assert [row["reference"] for row in sent] == [first.export_id]  # once, though under two ids
    text = _ok(["audit", "report", "subject-access", "--subject", c, *window])
    assert a in text and b in text  # the former ids are named among the parameters
    with rt.data_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(LOG)).scalar_one() > 0


def test_former_ids_follow_merges_transitively(cdp_env: CdpEnv) -> None:
    """Rows an older writer left unflattened (a into b, b into c) are followed all the same."""
    rt = cdp_env.runtime
    a, b, c, other = (f"{i:032x}" for i in (0xA, 0xB, 0xC, 0xD))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [b, c, other])  # survivors (a foreign key)
        conn.execute(
            sa.insert(MERGES),
            [
                {"survivor_id": b, "merged_id": a, "linked_by": "email", "merged_at": t0},
                {
                    "survivor_id": c,
                    "merged_id": b,
                    "linked_by": "phone",
                    "merged_at": t0 + timedelta(days=1),
                },
                {
                    "survivor_id": other,
                    "merged_id": c,
                    "linked_by": "email",
                    "merged_at": t0 - timedelta(days=1),
                },
            ],
        )
    with rt.data_engine.connect() as conn:
        assert person_ids(conn, c) == [c, a, b]
        assert [(f.subject_id, f.merged_into) for f in former_ids(conn, c)] == [(a, b), (b, c)]
        assert person_ids(conn, a) == [a]
        assert person_ids(conn, other) == [other, c, a, b]


def test_erasure_takes_the_rows_left_under_ids_the_person_had(cdp_env: CdpEnv) -> None:
    """A ledger row an export wrote under an absorbed id after its merge is erased with the
    person, and its destination is among those to notify."""
    from cdp.privacy.erasure import erase_subject

    rt = cdp_env.runtime
    world = World(rt, FrozenClock(datetime.now(UTC)))
    create_segment(
        runtime=rt, data=SegmentIn(name="everyone", rule=EVERYONE), actor="t", clock=world.clock
    )
    absorbed, other = (
        world.person({"email": "x@example.com"}),
        world.person({"email": "y@example.com"}),
    )
    for sid in (absorbed, other):
        world.consent(sid, ["email_marketing"], "granted")
    dest = world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    assert world.export_email().counts.sent == 2  # a ledger row under each
    survivor = f"{0x5:032x}"
    with rt.data_engine.begin() as conn:  # the merge, as far as the ledger row is concerned
        make_subjects(conn, [survivor])
        conn.execute(
            sa.insert(MERGES).values(
                survivor_id=survivor, merged_id=absorbed, linked_by="email", merged_at=world.clock()
            )
        )
    outcome = erase_subject(runtime=rt, subject_id=survivor)
    assert [d["destination_id"] for d in outcome.destinations] == [dest.destination.id]
    with rt.data_engine.connect() as conn:
        assert conn.execute(sa.select(RECIPIENTS.c.subject_id)).scalars().all() == [other]
        assert conn.execute(sa.select(sa.func.count()).select_from(MERGES)).scalar_one() == 0
