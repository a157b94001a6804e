"""A corrected email or phone replaces only the value it corrects, and stays corrected.

A person merged from two accounts holds both accounts' emails as identities. Correcting the
email used to drop every email identity of the person: a later record with the other account's
email found nobody and started a new person with default consent (``analytics`` granted again
after an objection), and a record with the corrected-away value did the same."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdp.clock import FrozenClock
from cdp.consent import service as consent
from cdp.consent.ledger_state import current_state
from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Identity
from cdp.ingest.pipeline import Summary, ingest_file
from cdp.privacy import request_filing, request_lifecycle, runner
from cdp.runtime import Runtime
from tests.conftest import CdpEnv
from tests.factories import make_subject
from tests.ingest.helpers import count, write_csv
from tests.privacy.test_requests import ctx

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HEADER = ["customer_id", "email", "phone", "first_name", "created_at"]
KEPT, ABSORBED, NEW = "sam@example.com", "sam.shop@example.com", "sam.new@example.com"


def _owner(rt: Runtime, kind: IdentityKind, value: str) -> str | None:
    tokens = [t.value for t in rt.tokenizer.lookup_tokens(kind, value)]
    with rt.data_engine.connect() as conn:
        owners = conn.execute(
            sa.select(Identity.subject_id).where(  # type: ignore[call-overload]
                Identity.kind == kind.value,
                Identity.token.in_(tokens),  # type: ignore[attr-defined]
            )
        ).scalars()
        found = set(owners)
    assert len(found) <= 1
    return found.pop() if found else None


def _customers(rt: Runtime, path: Path, rows: list[dict[str, str]], at: datetime) -> Summary:
    return ingest_file(
        runtime=rt,
        kind="customers",
        path=write_csv(path, rows, HEADER),
        clock=FrozenClock(at),
    )


def _rectify(rt: Runtime, kind: str, value: str, corrections: dict[str, str]) -> None:
    view = request_filing.create(
        runtime=rt,
        type="rectification",
        identity_kind=kind,
        identity_value=value,
        ctx=ctx(),
        corrections=corrections,
    )
    request_lifecycle.verify(runtime=rt, request_id=view.id, actor="dpo-1")
    assert runner.run(runtime=rt, ctx=ctx(), request_id=view.id).status == "completed"


def _analytics(rt: Runtime, sid: str) -> str:
    with rt.data_engine.connect() as conn:
        return current_state(conn=conn, subject_id=sid)["analytics"].status


def _merged_person_who_objected(rt: Runtime, tmp_path: Path) -> str:
    """Two accounts (the older one's email kept), merged by a shared phone number; the person's
    objection to analytics is upheld. Returns the merged subject."""
    _customers(rt, tmp_path / "s.csv", [{"customer_id": "S1", "email": KEPT}], NOW - timedelta(2))
    _customers(
        rt, tmp_path / "a.csv", [{"customer_id": "A1", "email": ABSORBED}], NOW - timedelta(1)
    )
    assert _owner(rt, IdentityKind.EMAIL, KEPT) != _owner(rt, IdentityKind.EMAIL, ABSORBED)
    phone = "+14155550100"
    link = [{"customer_id": "S1", "phone": phone}, {"customer_id": "A1", "phone": phone}]
    assert _customers(rt, tmp_path / "link.csv", link, NOW).merges == 1
    person = _owner(rt, IdentityKind.CUSTOMER_ID, "S1")
    assert person is not None and _owner(rt, IdentityKind.EMAIL, ABSORBED) == person
    consent.record_consent(runtime=rt, subject_id=person, purpose="analytics", status="withdrawn",
                           occurred_at=NOW, source="objection", mechanism="cli",
                           recorded_by="dpo-1", clock=FrozenClock(NOW))  # fmt: skip
    return person


def test_correcting_a_merged_persons_email_keeps_the_other_accounts_email(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    person = _merged_person_who_objected(rt, tmp_path)
    _rectify(rt, "email", KEPT, {"email": NEW})
    assert _owner(rt, IdentityKind.EMAIL, NEW) == person
    assert _owner(rt, IdentityKind.EMAIL, KEPT) is None  # the value corrected
    assert _owner(rt, IdentityKind.EMAIL, ABSORBED) == person  # not corrected: still theirs
    subjects = count(rt, "subjects")
    late = [{"email": ABSORBED, "first_name": "Sam"}]
    summary = _customers(rt, tmp_path / "late.csv", late, NOW + timedelta(1))
    assert (summary.subjects_created, summary.rejected) == (0, 0)
    assert count(rt, "subjects") == subjects
    assert _owner(rt, IdentityKind.EMAIL, ABSORBED) == person
    assert _analytics(rt, person) == "withdrawn"


@pytest.mark.parametrize(
    ("field", "kind", "old", "new"),
    [
        ("email", IdentityKind.EMAIL, KEPT, NEW),
        ("phone", IdentityKind.PHONE, "+14155550177", "+14155550178"),
    ],
)
def test_a_record_with_the_corrected_away_value_is_refused_not_made_a_new_person(
    cdp_env: CdpEnv, tmp_path: Path, field: str, kind: IdentityKind, old: str, new: str
) -> None:
    rt = cdp_env.runtime
    person = make_subject(rt, {field: old}, {kind: old, IdentityKind.CUSTOMER_ID: "C1"})
    consent.record_consent(runtime=rt, subject_id=person, purpose="analytics", status="withdrawn",
                           occurred_at=NOW, source="objection", mechanism="cli",
                           recorded_by="dpo-1", clock=FrozenClock(NOW))  # fmt: skip
    _rectify(rt, "customer_id", "C1", {field: new})
    assert (_owner(rt, kind, new), _owner(rt, kind, old)) == (person, None)
    # alone (a new person with default consent) or beside the person's customer id (a stale
    # source giving the corrected value back): both refused, and said so
    late = [{field: old, "first_name": "Sam"}, {"customer_id": "C1", field: old}]
    rejects = tmp_path / "late.rejects.jsonl"
    path = write_csv(tmp_path / "late.csv", late, HEADER)
    summary = ingest_file(runtime=rt, kind="customers", path=path, rejects_path=rejects,
                          clock=FrozenClock(NOW + timedelta(1)))  # fmt: skip
    assert (summary.subjects_created, summary.rejected) == (0, 2)
    assert summary.reasons == {"rectified": 2}
    assert count(rt, "subjects") == 1 and _owner(rt, kind, old) is None
    lines = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [line["reason"] for line in lines] == ["rectified", "rectified"]
    assert old not in rejects.read_text()
    assert _analytics(rt, person) == "withdrawn"


def test_a_correction_to_a_value_corrected_away_from_someone_gives_it_to_them(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    """The value was wrong for the first person; a verified correction says it is the second's,
    so it identifies them from then on."""
    rt = cdp_env.runtime
    first = make_subject(rt, {"email": KEPT}, {IdentityKind.EMAIL: KEPT})
    second = make_subject(rt, {"email": ABSORBED}, {IdentityKind.EMAIL: ABSORBED})
    _rectify(rt, "email", KEPT, {"email": NEW})
    _rectify(rt, "email", ABSORBED, {"email": KEPT})
    assert _owner(rt, IdentityKind.EMAIL, KEPT) == second
    assert _owner(rt, IdentityKind.EMAIL, NEW) == first
    late = [{"email": KEPT, "first_name": "Sam"}, {"email": ABSORBED, "first_name": "Sam"}]
    summary = _customers(rt, tmp_path / "late.csv", late, NOW)
    # the second person's value is theirs; their own corrected-away value is refused now
    assert (summary.subjects_created, summary.rejected, summary.reasons) == (0, 1, {"rectified": 1})


def test_a_withdrawal_carrying_a_corrected_away_value_reaches_the_person(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    """A consent file row naming the person's customer id and their corrected-away email: a
    withdrawal is still the person saying no (recorded for them, nothing linked back), a grant
    is refused like any record carrying that value."""
    rt = cdp_env.runtime
    person = make_subject(
        rt, {"email": KEPT}, {IdentityKind.EMAIL: KEPT, IdentityKind.CUSTOMER_ID: "C1"}
    )
    _rectify(rt, "customer_id", "C1", {"email": NEW})
    header = ["customer_id", "email", "purpose", "status", "occurred_at", "source"]
    rows = [
        {"customer_id": "C1", "email": KEPT, "purpose": "email_marketing", "status": status,
         "occurred_at": at, "source": "newsletter-footer"}
        for status, at in (("withdrawn", "2026-03-02T10:00:00Z"),
                           ("granted", "2026-03-03T10:00:00Z"))
    ]  # fmt: skip
    summary = ingest_file(runtime=rt, kind="consents",
                          path=write_csv(tmp_path / "c.csv", rows, header),
                          clock=FrozenClock(NOW + timedelta(days=3)))  # fmt: skip
    assert (summary.inserted, summary.rejected, summary.reasons) == (1, 1, {"rectified": 1})
    with rt.data_engine.connect() as conn:
        assert current_state(conn=conn, subject_id=person)["email_marketing"].status == "withdrawn"
    assert _owner(rt, IdentityKind.EMAIL, KEPT) is None and count(rt, "subjects") == 1
