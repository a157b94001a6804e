"""Send time: consent and restriction are checked when the export runs, not when the segment was
computed; the manifest's counts add up; minimum audience; audit records."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdp.access.engine import get_policy_engine
from cdp.audit.models import AuditLogRow
from cdp.errors import AudienceTooSmallError, InvalidInputError, PermissionDeniedError
from cdp.exports.records import get_export
from cdp.exports.run import run_export
from cdp.privacy.restriction import restrict
from cdp.segments.membership import compute_segment
from tests.exports.conftest import World


def _emails(path: str) -> set[str]:
    with Path(path).open(newline="") as fh:
        return {row["email"] for row in csv.DictReader(fh)}


def test_withdrawal_and_restriction_after_segment_computed(world: World) -> None:
    rt = world.rt
    ids = [world.person({"email": f"p{i}@example.com"}) for i in range(6)]
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    computed = compute_segment(runtime=rt, name="everyone", clock=world.clock)
    assert computed.member_count == 6
    # after the segment was computed: one withdraws, one is restricted
    world.consent(ids[0], ["email_marketing"], "withdrawn")
    with rt.data_engine.begin() as conn:
        restrict(conn=conn, subject_id=ids[1], request_id=None, clock=world.clock)

    result = run_export(
        runtime=rt,
        ctx=world.ctx("email_marketing"),
        segment="everyone",
        destination="mail",
        clock=world.clock,
    )
    c = result.counts
    assert (c.members, c.excluded_consent, c.excluded_restriction, c.sent) == (6, 1, 1, 4)
    assert c.adds_up()
    sent = _emails(result.manifest["outputs"][0]["path"])
    assert "p0@example.com" not in sent and "p1@example.com" not in sent
    assert sent == {f"p{i}@example.com" for i in range(2, 6)}


def test_counts_add_up_over_random_mixes(world: World) -> None:
    rng = random.Random(7)
    rt = world.rt
    kinds = []
    for i in range(40):
        kind = rng.choice(["ok", "no_consent", "restricted", "no_data", "bad_data"])
        pii = {"email": f"m{i}@example.com", "first_name": "Ann"}
        if kind == "no_data":
            pii = {"first_name": "Ann"}
        if kind == "bad_data":
            pii = {"email": "not an email"}
        sid = world.person(pii, grants=() if kind == "no_consent" else ("ad_audiences",))
        if kind == "restricted":
            with rt.data_engine.begin() as conn:
                restrict(conn=conn, subject_id=sid, request_id=None, clock=world.clock)
        kinds.append(kind)
    world.destination("meta", "meta", "ad_audiences", ["email"], min_audience=1)
    result = run_export(
        runtime=rt,
        ctx=world.ctx("ad_audiences"),
        segment="everyone",
        destination="meta",
        clock=world.clock,
    )
    c = result.counts
    assert c.adds_up()
    assert c.members == 40
    assert c.excluded_consent == kinds.count("no_consent")
    assert c.excluded_restriction == kinds.count("restricted")
    assert c.excluded_no_data == kinds.count("no_data") + kinds.count("bad_data")
    assert c.sent == kinds.count("ok")
    stored = get_export(runtime=rt, export_id=result.export_id).manifest
    assert stored == result.manifest
    on_disk = json.loads(
        Path(result.manifest["outputs"][0]["path"])
        .with_name(f"{result.export_id}.manifest.json")
        .read_text()
    )
    assert on_disk == result.manifest


def test_manifest_fields(world: World) -> None:
    for i in range(3):
        world.person({"email": f"q{i}@example.com"})
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    ctx = world.ctx("email_marketing")
    result = run_export(
        runtime=world.rt, ctx=ctx, segment="everyone", destination="mail", clock=world.clock
    )
    m = result.manifest

    assert m["export_id"] == result.export_id
    assert m["segment"] == {"name": "everyone", "rule_version": 1}
    assert m["destination"]["name"] == "mail" and m["purpose"] == "email_marketing"
    assert m["policy_version"] == get_policy_engine().policy_version
    assert m["consent_snapshot_at"] is not None
    assert m["principal"]["name"] == ctx.principal_name
    path = Path(m["outputs"][0]["path"])
    assert m["output_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_minimum_audience_is_enforced_with_counts(world: World) -> None:
    rt = world.rt
    ids = [world.person({"email": f"r{i}@example.com"}) for i in range(5)]
    world.consent(ids[0], ["email_marketing"], "withdrawn")
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=5)
    with pytest.raises(AudienceTooSmallError) as info:
        run_export(
            runtime=rt,
            ctx=world.ctx("email_marketing"),
            segment="everyone",
            destination="mail",
            clock=world.clock,
        )
    err = info.value
    assert "only 4 subjects remain" in str(err) and "at least 5" in str(err)
    assert err.counts["members"] == 5 and err.counts["excluded_consent"] == 1
    export_dir = rt.settings.home / "exports" / "mail"
    assert (
        not any(p.suffix == ".csv" for p in export_dir.glob("*")) if export_dir.exists() else True
    )
    with rt.data_engine.connect() as conn:
        status = conn.execute(sa.text("SELECT status, error_code FROM export_runs")).one()
        staged = conn.execute(sa.text("SELECT count(*) FROM export_staging")).scalar_one()
        recipients = conn.execute(sa.text("SELECT count(*) FROM export_recipients")).scalar_one()
    assert tuple(status) == ("refused", "audience_too_small")
    assert staged == 0 and recipients == 0


def _audit(rt) -> list[AuditLogRow]:  # type: ignore[no-untyped-def]
    t = AuditLogRow.__table__  # type: ignore[attr-defined]
    with rt.data_engine.connect() as conn:
        return list(conn.execute(sa.select(t).order_by(t.c.seq)).all())


def test_export_writes_its_audit_records(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    import cdp.exports.send as send_mod

    monkeypatch.setattr(send_mod, "CHUNK", 3)  # several chunks, several decrypt records
    rt = world.rt
    ids = [world.person({"email": f"s{i}@example.com", "first_name": "X"}) for i in range(7)]
    world.consent(ids[6], ["email_marketing"], "withdrawn")
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    ctx = world.ctx("email_marketing")
    result = run_export(
        runtime=rt, ctx=ctx, segment="everyone", destination="mail", clock=world.clock
    )
    records = [r for r in _audit(rt) if r.request_id == result.export_id]
    run_rec = [r for r in records if r.action == "run"]
    dec = [r for r in records if r.action == "decrypt"]
    assert len(run_rec) == 1 and run_rec[0].resource == "exports"
    assert run_rec[0].purpose == "email_marketing" and run_rec[0].principal_id == ctx.principal_id
    assert len(dec) == 2  # 6 eligible subjects in chunks of 3
    covered = [s for r in dec for s in json.loads(r.subject_ids)]
    assert sorted(covered) == sorted(ids[:6])
    assert all(json.loads(r.fields) == ["email"] for r in dec)
    assert ids[6] not in covered


def test_policy_and_purpose_are_enforced(world: World) -> None:
    world.person({"email": "t@example.com"})
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    with pytest.raises(InvalidInputError):
        run_export(
            runtime=world.rt,
            ctx=world.ctx("sms_marketing"),
            segment="everyone",
            destination="mail",
            clock=world.clock,
        )
    analyst = world.ctx("email_marketing", roles=("analyst",), name="ana")
    with pytest.raises(PermissionDeniedError):
        run_export(
            runtime=world.rt, ctx=analyst, segment="everyone", destination="mail", clock=world.clock
        )
    denied = [r for r in _audit(world.rt) if r.outcome == "denied"]
    assert denied and denied[-1].principal_id == analyst.principal_id


def test_an_objection_to_profiling_keeps_a_subject_out_of_every_export(world: World) -> None:
    """``analytics`` withdrawn (an upheld objection to profiling, art. 21(1)): the subject is in
    no segment, so no export sends it — whatever the destination's own purpose — and one that
    had sent it before sends a remove; the manifest counts it as excluded for consent."""
    ids = [world.person({"email": f"o{i}@example.com"}) for i in range(3)]
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    first = world.export_email()
    assert _emails(first.manifest["outputs"][0]["path"]) == {f"o{i}@example.com" for i in range(3)}

    world.consent(ids[0], ["analytics"], "withdrawn")
    computed = compute_segment(runtime=world.rt, name="everyone", clock=world.clock)
    assert computed.member_count == 2  # the segments service leaves the objector out
    again = world.export_email()
    c = again.counts
    assert (c.members, c.excluded_consent, c.sent, c.unchanged, c.removed) == (3, 1, 0, 2, 1)
    assert c.adds_up()
    removes = next(o for o in again.manifest["outputs"] if o["op"] == "remove")
    assert _emails(removes["path"]) == {"o0@example.com"}
    # a full export (no incremental state) to a fresh destination does not send it either
    world.destination("mail2", "csv", "email_marketing", ["email"], min_audience=1)
    fresh = world.export_email("mail2", full=True)
    assert _emails(fresh.manifest["outputs"][0]["path"]) == {"o1@example.com", "o2@example.com"}
    assert (fresh.counts.excluded_consent, fresh.counts.sent) == (1, 2)
