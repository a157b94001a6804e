"""The consent ledger: recording, replay, derived state, SQL condition, append-only triggers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import DBAPIError, IntegrityError

from cdp.consent import ledger_state, service
from cdp.consent.models import ConsentEvent
from cdp.consent.purposes import MARKETING_PURPOSES, PURPOSES
from cdp.consent.triggers import ledger_unlocked
from cdp.db.models import Subject
from cdp.errors import InvalidInputError, NotFoundError
from cdp.profiles.models import SubjectMerge
from tests.conftest import CdpEnv
from tests.factories import make_subject

T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
CE = ConsentEvent.__table__  # type: ignore[attr-defined]
SUBJECTS = Subject.__table__  # type: ignore[attr-defined]


def _record(rt, subject_id, purpose, status, at, **kw):  # type: ignore[no-untyped-def]
    args = dict(source="web", mechanism="checkbox", recorded_by="tester", notice_version="v1")
    args.update(kw)
    return service.record_consent(
        runtime=rt, subject_id=subject_id, purpose=purpose, status=status, occurred_at=at, **args
    )


def test_history_shows_every_change_with_who_when_source_version_mechanism(
    cdp_env: CdpEnv,
) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt)
    assert _record(rt, sid, "email_marketing", "granted", T0)
    assert _record(
        rt,
        sid,
        "email_marketing",
        "withdrawn",
        T0 + timedelta(days=1),
        mechanism="api",
        source="crm",
        recorded_by="svc-crm",
        notice_version="v2",
    )
    proof = ledger_state.consent_proof(runtime=rt, subject_id=sid)
    assert [
        (r.status, r.source, r.mechanism, r.recorded_by, r.notice_version) for r in proof.history
    ] == [
        ("granted", "web", "checkbox", "tester", "v1"),
        ("withdrawn", "crm", "api", "svc-crm", "v2"),
    ]
    assert all(r.recorded_at is not None and r.occurred_at.tzinfo for r in proof.history)
    assert proof.states["email_marketing"].status == "withdrawn"
    assert set(proof.states) == set(PURPOSES)


def test_replay_adds_nothing(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt)
    assert _record(rt, sid, "sms_marketing", "granted", T0) is True
    assert _record(rt, sid, "sms_marketing", "granted", T0) is False
    assert len(ledger_state.history(runtime=rt, subject_id=sid)) == 1


def test_defaults_follow_the_lawful_basis(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt)
    state = ledger_state.current_state(runtime=rt, subject_id=sid)
    assert state["email_marketing"].status == "withdrawn" and state["email_marketing"].is_default
    assert state["analytics"].status == "granted" and state["analytics"].is_default
    assert not ledger_state.has_consent(runtime=rt, subject_id=sid, purpose="email_marketing")
    assert ledger_state.has_consent(runtime=rt, subject_id=sid, purpose="analytics")
    assert ledger_state.has_consent(runtime=rt, subject_id=sid, purpose="support")


def test_latest_occurrence_wins_and_a_tie_is_a_withdrawal(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    late, tie = make_subject(rt), make_subject(rt)
    # recorded out of order: the older grant arrives after the newer withdrawal
    _record(rt, late, "ad_audiences", "withdrawn", T0 + timedelta(hours=1))
    _record(rt, late, "ad_audiences", "granted", T0, source="import-file")
    _record(rt, tie, "ad_audiences", "granted", T0)
    _record(rt, tie, "ad_audiences", "withdrawn", T0, source="other")
    for sid in (late, tie):
        assert ledger_state.current_state(runtime=rt, subject_id=sid)["ad_audiences"].status == (
            "withdrawn"
        )
        assert not ledger_state.has_consent(runtime=rt, subject_id=sid, purpose="ad_audiences")


def test_invalid_entries_are_refused_without_echoing_values(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt)
    with pytest.raises(InvalidInputError) as exc:
        _record(rt, sid, "telepathy", "granted", T0)
    assert exc.value.field == "purpose" and "telepathy" not in str(exc.value)
    with pytest.raises(InvalidInputError):
        _record(rt, sid, "email_marketing", "maybe", T0)
    with pytest.raises(InvalidInputError):
        _record(rt, sid, "email_marketing", "granted", T0, mechanism="telepathy")
    with pytest.raises(InvalidInputError):
        _record(rt, sid, "email_marketing", "granted", datetime.now(UTC) + timedelta(days=1))
    with pytest.raises(NotFoundError):
        _record(rt, "0" * 32, "email_marketing", "granted", T0)


def test_sql_condition_matches_the_python_state(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    subjects = [make_subject(rt) for _ in range(6)]
    plan = [
        [],
        [("granted", 0)],
        [("granted", 0), ("withdrawn", 1)],
        [("withdrawn", 0), ("granted", 2)],
        [("granted", 3), ("withdrawn", 3)],
        [("withdrawn", 5)],
    ]
    for sid, steps in zip(subjects, plan, strict=True):
        for purpose in ("email_marketing", "analytics"):
            for status, hours in steps:
                _record(rt, sid, purpose, status, T0 + timedelta(hours=hours))
    for purpose in ("email_marketing", "analytics", "support"):
        with rt.data_engine.connect() as conn:
            in_sql = set(conn.execute(ledger_state.granted_subjects(purpose)).scalars())
        in_py = {
            s
            for s in subjects
            if ledger_state.has_consent(runtime=rt, subject_id=s, purpose=purpose)
        }
        assert in_sql == in_py
    assert {
        s
        for s in subjects
        if ledger_state.has_consent(runtime=rt, subject_id=s, purpose="email_marketing")
    } == {subjects[1], subjects[3]}


def test_bulk_record_is_idempotent(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sids = [make_subject(rt) for _ in range(3)]
    items = [
        service.ConsentInput(
            subject_id=s,
            purpose=p,
            status="granted",
            occurred_at=T0,
            source="file.csv",
            mechanism="import",
            recorded_by="ingest",
        )
        for s in sids
        for p in MARKETING_PURPOSES
    ]
    assert service.record_consents(runtime=rt, items=items) == len(items)
    assert service.record_consents(runtime=rt, items=items) == 0


def _reject(rt, statement) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises((DBAPIError, IntegrityError)) as exc, rt.data_engine.begin() as conn:
        conn.execute(statement)
    assert "append-only" in str(exc.value)


def test_update_and_delete_are_rejected_by_the_database(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt)
    _record(rt, sid, "email_marketing", "granted", T0)
    _reject(rt, sa.update(CE).values(status="withdrawn"))
    _reject(rt, sa.update(CE).values(notice_version="forged"))
    _reject(rt, sa.delete(CE))
    # deleting the subject would cascade into the ledger: rejected too
    _reject(rt, sa.delete(SUBJECTS).where(SUBJECTS.c.id == sid))
    assert [r.status for r in ledger_state.history(runtime=rt, subject_id=sid)] == ["granted"]


def test_moving_rows_to_a_merge_survivor_is_the_one_update_allowed(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    survivor, merged, stranger = make_subject(rt), make_subject(rt), make_subject(rt)
    _record(rt, merged, "email_marketing", "granted", T0)
    # no merge recorded: moving proof to another subject is refused
    _reject(rt, sa.update(CE).where(CE.c.subject_id == merged).values(subject_id=stranger))
    with rt.data_engine.begin() as conn:
        conn.execute(
            sa.insert(SubjectMerge.__table__).values(  # type: ignore[attr-defined]
                survivor_id=survivor, merged_id=merged, linked_by="email", merged_at=T0
            )
        )
    # merge recorded, but the update also edits the evidence: refused
    _reject(
        rt,
        sa.update(CE).where(CE.c.subject_id == merged).values(subject_id=survivor, source="x"),
    )
    with rt.data_engine.begin() as conn:
        conn.execute(sa.update(CE).where(CE.c.subject_id == merged).values(subject_id=survivor))
    assert len(ledger_state.history(runtime=rt, subject_id=survivor)) == 1


def test_unlock_is_scoped_to_one_transaction(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt)
    _record(rt, sid, "email_marketing", "granted", T0)
    _record(rt, sid, "sms_marketing", "granted", T0)
    with rt.data_engine.begin() as conn:
        with ledger_unlocked(conn, reason="test"):
            conn.execute(sa.delete(CE).where(CE.c.purpose == "email_marketing"))
        # locked again within the same transaction
        with pytest.raises((DBAPIError, IntegrityError)), conn.begin_nested():
            conn.execute(sa.delete(CE))
    _reject(rt, sa.delete(CE))
    assert [r.purpose for r in ledger_state.history(runtime=rt, subject_id=sid)] == [
        "sms_marketing"
    ]


HISTORY = st.lists(
    st.tuples(st.sampled_from(["granted", "withdrawn"]), st.integers(min_value=0, max_value=3)),
    max_size=4,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(histories=st.lists(HISTORY, min_size=1, max_size=4))
def test_sql_condition_equals_the_ledger_state_over_any_history(
    cdp_env: CdpEnv, histories: list[list[tuple[str, int]]]
) -> None:
    """The SQL condition (latest entry; a tie is a withdrawal; no entry: the purpose's default)
    says what the ledger's own state says, for every purpose, over random histories with ties
    and out-of-order arrival."""
    rt = cdp_env.runtime
    subjects = [make_subject(rt) for _ in histories]
    recorded = ("email_marketing", "analytics")  # default withdrawn; default granted
    for sid, steps in zip(subjects, histories, strict=True):
        for n, (status, hours) in enumerate(steps):
            for purpose in recorded:
                _record(rt, sid, purpose, status, T0 + timedelta(hours=hours), source=f"s{n}")
    for purpose in PURPOSES:
        with rt.data_engine.connect() as conn:
            in_sql = set(conn.execute(ledger_state.granted_subjects(purpose)).scalars())
        for sid in subjects:
            state = ledger_state.current_state(runtime=rt, subject_id=sid)[purpose].status
            assert (sid in in_sql) == (state == "granted"), (purpose, state)
