"""Privacy requests: lifecycle and deadlines, and each type served end to end on real storage."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import jsonschema
import pytest
import sqlalchemy as sa

from cdp.access.context import AccessContext
from cdp.audit.models import AuditLogRow
from cdp.clock import FrozenClock
from cdp.consent import ledger_state
from cdp.consent import service as consent
from cdp.consent.purposes import MARKETING_PURPOSES
from cdp.crypto.normalize import IdentityKind
from cdp.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from cdp.privacy import (
    access_package,
    request_filing,
    request_lifecycle,
    request_list,
    requests,
    runner,
)
from cdp.privacy.models import PrivacyPayload, PrivacyRequest
from cdp.privacy.restriction import is_restricted
from cdp.runtime import Runtime
from tests.conftest import CdpEnv
from tests.factories import make_subject
from tests.privacy.seed import T0, seed_person


def ctx(role: str = "dpo", purpose: str = "privacy_request") -> AccessContext:
    return AccessContext(
        principal_id=f"p-{role}",
        principal_name=f"{role}-1",
        roles=(role,),
        purpose=purpose,
        request_id="req-test",
        client="127.0.0.1",
    )


def _audit(rt: Runtime) -> list[dict[str, object]]:
    log = AuditLogRow.__table__  # type: ignore[attr-defined]
    with rt.data_engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(log).order_by(log.c.seq)).mappings()]


def _served(rt: Runtime, kind: str, email: str, **kw: object) -> requests.RequestView:
    view = request_filing.create(
        runtime=rt,
        type=kind,
        identity_kind="email",
        identity_value=email,
        ctx=ctx(),
        **kw,  # type: ignore[arg-type]
    )
    request_lifecycle.verify(runtime=rt, request_id=view.id, actor="dpo-1")
    return runner.run(runtime=rt, ctx=ctx(), request_id=view.id)


def test_due_one_calendar_month_after_receipt_and_one_extension(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    clock = FrozenClock(datetime(2027, 1, 31, 9, 0, tzinfo=UTC))
    view = request_filing.create(
        runtime=rt,
        type="access",
        identity_kind="email",
        identity_value="nobody@example.org",
        ctx=ctx(),
        clock=clock,
    )
    assert view.status == "received" and view.subject_id is None
    assert view.due_at == datetime(2027, 2, 28, 9, 0, tzinfo=UTC)
    extended = request_lifecycle.extend(
        runtime=rt, request_id=view.id, actor="dpo-1", reason="complex", clock=clock
    )
    assert extended.deadline == datetime(2027, 4, 28, 9, 0, tzinfo=UTC)
    assert extended.extension_reason == "complex"
    with pytest.raises(ConflictError):
        request_lifecycle.extend(runtime=rt, request_id=view.id, actor="dpo-1", reason="again")
    with pytest.raises(InvalidInputError):
        request_filing.create(
            runtime=rt,
            type="teleport",
            identity_kind="email",
            identity_value="a@b.org",
            ctx=ctx(),
        )
    clock.advance(days=60)
    assert request_list.list_requests(runtime=rt, overdue_only=True, clock=clock).items == []
    clock.advance(days=30)
    overdue = request_list.list_requests(runtime=rt, overdue_only=True, clock=clock).items
    assert [v.id for v in overdue] == [view.id]


def test_lifecycle_order_is_enforced_and_every_step_recorded(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    make_subject(rt, identities={IdentityKind.EMAIL: "life@example.org"})
    view = request_filing.create(
        runtime=rt,
        type="restriction",
        identity_kind="email",
        identity_value="life@example.org",
        ctx=ctx(),
    )
    assert view.subject_id is not None
    with pytest.raises(ConflictError):  # not verified yet
        runner.run(runtime=rt, ctx=ctx(), request_id=view.id)
    request_lifecycle.verify(runtime=rt, request_id=view.id, actor="dpo-1")
    done = runner.run(runtime=rt, ctx=ctx(), request_id=view.id)
    assert [s.status for s in done.steps] == ["received", "verified", "in_progress", "completed"]
    assert done.completed_at is not None and done.outcome == {
        "subject_found": True,
        "restricted": True,
        "already_restricted": False,
    }
    with pytest.raises(ConflictError):
        request_lifecycle.reject(runtime=rt, request_id=view.id, actor="dpo-1", reason="late")
    other = request_filing.create(
        runtime=rt,
        type="erasure",
        identity_kind="email",
        identity_value="life@example.org",
        ctx=ctx(),
    )
    rejected = request_lifecycle.reject(
        runtime=rt, request_id=other.id, actor="dpo-1", reason="unverified"
    )
    assert rejected.status == "rejected" and rejected.steps[-1].note == "unverified"


def test_only_a_role_allowed_by_policy_runs_requests(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    view = request_filing.create(
        runtime=rt,
        type="access",
        identity_kind="email",
        identity_value="x@example.org",
        ctx=ctx(),
    )
    request_lifecycle.verify(runtime=rt, request_id=view.id, actor="dpo-1")
    with pytest.raises(PermissionDeniedError):
        runner.run(runtime=rt, ctx=ctx("analyst", "analytics"), request_id=view.id)
    with pytest.raises(PermissionDeniedError):
        runner.run(runtime=rt, ctx=ctx("dpo", "support"), request_id=view.id)
    assert [(r["action"], r["outcome"]) for r in _audit(rt)] == [
        ("lookup:email", "allowed"),  # filing looked the identity up
        ("run", "denied"),
        ("run", "denied"),
    ]
    assert requests.get(runtime=rt, request_id=view.id).status == "verified"


def test_access_package_holds_every_category_and_validates(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    person = seed_person(rt, "access")
    runner_ctx = ctx("support", "support")
    from cdp.audit.service import record_access

    record_access(
        runtime=rt,
        ctx=runner_ctx,
        action="read",
        resource="pii:contact",
        outcome="allowed",
        subject_ids=[person.subject_id],
        fields=["email"],
    )
    done = _served(rt, "access", person.email.upper())
    assert done.status == "completed" and done.outcome is not None
    package = runner.download_package(runtime=rt, ctx=ctx(), request_id=done.id)
    data = package.data
    access_package.validate(data)
    assert data["subject"]["id"] == person.subject_id
    assert data["personal_data"]["email"] == person.email
    assert data["personal_data"]["first_name"] in person.plaintexts
    assert sorted(i["kind"] for i in data["identities"]) == ["customer_id", "email", "phone"]
    assert [o["order_ref"] for o in data["orders"]] == person.order_refs
    assert data["orders"][0]["items"][0]["sku"] == "SKU-1"
    assert [e["properties"]["note"] for e in data["events"]] == [person.plaintexts[-1]] * 2
    assert [h["status"] for h in data["consent"]["history"]] == ["granted"]
    assert data["consent"]["history"][0]["notice_version"] == "v3"
    with rt.data_engine.connect() as conn:
        live = set(sa.inspect(conn).get_table_names())
    for section, table in (
        ("traits", "subject_traits"),
        ("segments", "segment_snapshot_members"),
        ("recipients", "export_recipients"),
    ):
        if table in live:  # owned by other issues: present once their tables are migrated
            rows = {t["table"]: t["rows"] for t in data[section]}
            assert len(rows[table]) == 1, section
    assert [a["principal"] for a in data["audit_trail"]][:1] == ["support-1"]
    assert {(r["id"], r["type"]) for r in data["privacy_requests"]} >= {(done.id, "access")}
    # producing and downloading were both audited, as the dpo, for privacy_request
    records = [r for r in _audit(rt) if r["principal_name"] == "dpo-1"]
    assert [(r["action"], r["resource"]) for r in records] == [
        ("lookup:email", "profile"),
        ("read", "profile"),
        ("read", "privacy_requests"),
    ]
    assert all(r["purpose"] == "privacy_request" and r["roles"] == "dpo" for r in records)
    assert all(json.loads(str(r["subject_ids"])) == [person.subject_id] for r in records)
    html = package.html()
    assert person.order_refs[0] in html and "Who looked at your data" in html
    assert "<script>" not in html


def test_the_schema_rejects_an_incomplete_package(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    person = seed_person(rt, "schema")
    with rt.data_engine.connect() as conn:
        data = access_package.build(
            runtime=rt,
            conn=conn,
            subject_id=person.subject_id,
            request_id="pr_" + "0" * 24,
            generated_at=T0,
        )
    for section in ("personal_data", "orders", "events", "consent", "audit_trail", "traits"):
        broken = {k: v for k, v in data.items() if k != section}
        with pytest.raises(jsonschema.ValidationError):
            access_package.validate(broken)
    with pytest.raises(jsonschema.ValidationError):
        access_package.validate({**data, "personal_data": {"email": 42}})


def test_html_summary_escapes_values(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(
        rt,
        pii={"first_name": "<script>alert(1)</script>"},
        identities={IdentityKind.EMAIL: "xss@example.org"},
    )
    done = _served(rt, "portability", "xss@example.org")
    html = runner.download_package(runtime=rt, ctx=ctx(), request_id=done.id).html()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)" in html
    assert sid not in html  # the summary is for the person: no internal ids


def test_rectification_reencrypts_and_moves_the_identity(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(
        rt,
        pii={"email": "old@example.org", "city": "Oldtown"},
        identities={IdentityKind.EMAIL: "old@example.org"},
    )
    done = _served(
        rt,
        "rectification",
        "old@example.org",
        corrections={"email": "new@example.org", "city": "Newtown"},
    )
    assert done.outcome == {
        "subject_found": True,
        "rectified_fields": ["city", "email"],
        "destinations_to_notify": [],
    }
    from tests.factories import read_pii

    values = rt.vault.decrypt_fields(sid, read_pii(rt, sid))
    assert values == {"email": "new@example.org", "city": "Newtown"}
    with rt.data_engine.connect() as conn:
        assert (
            request_filing.find_subject(rt, conn, IdentityKind.EMAIL, "new@example.org")[0] == sid
        )
        assert (
            request_filing.find_subject(rt, conn, IdentityKind.EMAIL, "old@example.org")[0] is None
        )
    writes = [r for r in _audit(rt) if r["action"] == "write"]
    assert len(writes) == 1 and json.loads(str(writes[0]["fields"])) == ["city", "email"]
    with pytest.raises(InvalidInputError):
        request_filing.create(
            runtime=rt,
            type="rectification",
            identity_kind="email",
            identity_value="new@example.org",
            ctx=ctx(),
            corrections={"password": "x"},
        )


@pytest.mark.parametrize(
    ("corrections", "where"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"phone": "12"}, "phone"),
        ({"birthday": "1850-01-01"}, "birthday"),
        ({"birthday": "yesterday"}, "birthday"),
        ({"first_name": "x" * 300}, "first_name"),
        ({"city": "   "}, "city"),
        ({"alice@example.org": "x"}, "1 field"),
    ],
)
def test_a_bad_correction_is_refused_when_filed_without_echoing_it(
    cdp_env: CdpEnv, corrections: dict[str, str], where: str
) -> None:
    rt = cdp_env.runtime
    make_subject(rt, identities={IdentityKind.EMAIL: "fix@example.org"})
    with pytest.raises(InvalidInputError) as caught:
        request_filing.create(
            runtime=rt,
            type="rectification",
            identity_kind="email",
            identity_value="fix@example.org",
            ctx=ctx(),
            corrections=corrections,
        )
    message = str(caught.value)
    assert where in message
    for name, value in corrections.items():
        assert value.strip() == "" or value not in message
        assert "@" not in name or name not in message
    assert request_list.list_requests(runtime=rt).items == []  # nothing filed


def test_corrections_are_stored_as_ingestion_would_store_them(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(
        rt, pii={"phone": "+14155550100"}, identities={IdentityKind.EMAIL: "norm@example.org"}
    )
    done = _served(
        rt,
        "rectification",
        "norm@example.org",
        corrections={"phone": "020 7946 0958", "country": "GB", "email": " New@Example.ORG "},
    )
    assert done.outcome == {
        "subject_found": True,
        "rectified_fields": ["country", "email", "phone"],
        "destinations_to_notify": [],
    }
    from tests.factories import read_pii

    values = rt.vault.decrypt_fields(sid, read_pii(rt, sid))
    assert values == {"phone": "+442079460958", "country": "GB", "email": "new@example.org"}
    with rt.data_engine.connect() as conn:
        assert request_filing.find_subject(rt, conn, IdentityKind.PHONE, "+442079460958")[0] == sid


def test_restriction_and_withdrawal_keep_a_subject_out_of_the_next_export(
    cdp_env: CdpEnv,
) -> None:
    rt = cdp_env.runtime
    kept, restricted, withdrawn = (
        make_subject(rt, identities={IdentityKind.EMAIL: f"{n}@example.org"})
        for n in ("kept", "restricted", "withdrawn")
    )
    for sid in (kept, restricted, withdrawn):
        consent.record_consent(
            runtime=rt,
            subject_id=sid,
            purpose="email_marketing",
            status="granted",
            occurred_at=T0,
            source="web",
            mechanism="checkbox",
            recorded_by="form",
        )
    from cdp.db.models import Subject

    subjects = Subject.__table__  # type: ignore[attr-defined]
    audience = sa.select(subjects.c.id).where(
        ledger_state.eligible_condition("email_marketing", subjects.c.id)
    )
    with rt.data_engine.connect() as conn:
        computed = set(conn.execute(audience).scalars())  # "the segment was computed"
    assert computed == {kept, restricted, withdrawn}
    _served(rt, "restriction", "restricted@example.org")
    consent.record_consent(
        runtime=rt,
        subject_id=withdrawn,
        purpose="email_marketing",
        status="withdrawn",
        occurred_at=T0 + timedelta(days=1),
        source="web",
        mechanism="checkbox",
        recorded_by="form",
    )
    with rt.data_engine.connect() as conn:
        assert set(conn.execute(audience).scalars()) == {kept}
    assert is_restricted(runtime=rt, subject_id=restricted)
    # lifting the restriction lets the subject back in
    req = next(v for v in request_list.list_requests(runtime=rt).items if v.type == "restriction")
    assert runner.lift_restriction(runtime=rt, ctx=ctx(), request_id=req.id) == 1
    with rt.data_engine.connect() as conn:
        assert set(conn.execute(audience).scalars()) == {kept, restricted}


def test_objection_withdraws_every_marketing_purpose_through_the_ledger(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, identities={IdentityKind.PHONE: "+14155550123"})
    for purpose in MARKETING_PURPOSES:
        consent.record_consent(
            runtime=rt,
            subject_id=sid,
            purpose=purpose,
            status="granted",
            occurred_at=T0,
            source="app",
            mechanism="checkbox",
            recorded_by="app",
        )
    view = request_filing.create(
        runtime=rt,
        type="objection",
        identity_kind="phone",
        identity_value="(415) 555-0123",
        ctx=ctx(),
    )
    request_lifecycle.verify(runtime=rt, request_id=view.id, actor="dpo-1")
    runner.run(runtime=rt, ctx=ctx(), request_id=view.id)
    state = ledger_state.current_state(runtime=rt, subject_id=sid)
    for purpose in MARKETING_PURPOSES:
        assert state[purpose].status == "withdrawn"
        assert state[purpose].mechanism == "request"
        assert state[purpose].source == f"privacy_request:{view.id}"
    assert state["analytics"].status == "granted"  # legitimate interest: not marketing


def test_erasure_request_completes_and_forgets_the_link(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    person = seed_person(rt, "erase")
    done = _served(rt, "erasure", person.email)
    assert done.status == "completed" and done.subject_id is None
    assert done.outcome is not None and done.outcome["keys_shredded"] == 1
    assert "destinations_to_notify" in done.outcome
    assert person.subject_id not in json.dumps(done.outcome)
    table = PrivacyRequest.__table__  # type: ignore[attr-defined]
    with rt.data_engine.connect() as conn:
        tokens = conn.execute(sa.select(table.c.identity_token)).scalars().all()
    assert tokens and all(t is None for t in tokens)
    deletes = [r for r in _audit(rt) if r["action"] == "delete"]
    assert len(deletes) == 1 and deletes[0]["purpose"] == "privacy_request"


def test_a_request_for_someone_unknown_completes_with_nothing_found(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    done = _served(rt, "access", "stranger@example.org")
    assert done.outcome == {"subject_found": False}


def test_the_access_outcome_and_its_audit_record_count_rows_not_tables(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(
        rt, pii={"email": "bare@example.org"}, identities={"email": "bare@example.org"}
    )
    done = _served(rt, "access", "bare@example.org")
    assert done.outcome is not None
    counts = done.outcome["counts"]
    assert counts["recipients"] == counts["traits"] == counts["segments"] == 0
    assert counts["orders"] == counts["events"] == counts["consent_changes"] == 0
    assert counts["personal_fields"] == 1 and counts["audit_trail"] == 1  # the filing's lookup
    data = runner.download_package(runtime=rt, ctx=ctx(), request_id=done.id).data
    assert data["recipients"] and not any(t["rows"] for t in data["recipients"])  # listed, empty
    produced = next(r for r in _audit(rt) if (r["action"], r["resource"]) == ("read", "profile"))
    assert json.loads(str(produced["subject_ids"])) == [sid]
    assert json.loads(str(produced["fields"])) == ["email", "audit_trail"]

    person = seed_person(rt, "counted")  # one row in every registered table
    full = _served(rt, "access", person.email)
    assert full.outcome is not None
    assert full.outcome["counts"]["orders"] == len(person.order_refs)
    package = runner.download_package(runtime=rt, ctx=ctx(), request_id=full.id).data
    for section in ("traits", "segments", "recipients"):
        rows = sum(len(t["rows"]) for t in package[section])
        assert full.outcome["counts"][section] == rows, section


def test_an_expired_package_is_refused_and_deleted_at_download(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    make_subject(rt, pii={"email": "old@example.org"}, identities={"email": "old@example.org"})
    clock = FrozenClock(datetime.now(UTC))
    view = request_filing.create(
        runtime=rt,
        ctx=ctx(),
        type="access",
        identity_kind="email",
        identity_value="old@example.org",
    )
    request_lifecycle.verify(runtime=rt, request_id=view.id, actor="dpo-1")
    runner.run(runtime=rt, ctx=ctx(), request_id=view.id, clock=clock)
    days = rt.settings.privacy_package_days
    clock.advance(days=days)  # the last day it is kept
    assert runner.download_package(runtime=rt, ctx=ctx(), request_id=view.id, clock=clock).data
    clock.advance(seconds=1)
    with pytest.raises(NotFoundError) as caught:
        runner.download_package(runtime=rt, ctx=ctx(), request_id=view.id, clock=clock)
    assert "expired" in str(caught.value) and str(days) in str(caught.value)
    payloads = PrivacyPayload.__table__  # type: ignore[attr-defined]
    with rt.data_engine.connect() as conn:
        assert conn.execute(sa.select(payloads.c.kind)).all() == []
    assert "expired" in (requests.get(runtime=rt, request_id=view.id).steps[-1].note or "")
    downloads = [r for r in _audit(rt) if r["resource"] == "privacy_requests"]
    assert len(downloads) == 1  # only the download that returned data
    with pytest.raises(NotFoundError):
        runner.download_package(runtime=rt, ctx=ctx(), request_id=view.id, clock=clock)
