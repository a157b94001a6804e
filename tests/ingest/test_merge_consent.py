"""Consent after a merge is the most restrictive of the two subjects' states, each read as the
consent service reads it. A grant and a withdrawal at the same time are a withdrawal there; the
merge used to read them by recording order (the later row won), so one account's withdrawal could
be lost in a merge and the person emailed."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cdp.clock import FrozenClock
from cdp.consent.ledger_state import ConsentState, current_state
from cdp.consent.purposes import PURPOSE_NAMES
from cdp.crypto.normalize import IdentityKind
from cdp.ingest.pipeline import ingest_file
from cdp.runtime import Runtime
from tests.conftest import CdpEnv
from tests.ingest.helpers import write_csv
from tests.ingest.test_ingest_merge import _subject_of

CONSENT_HEADER = ["customer_id", "purpose", "status", "occurred_at", "source"]
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _states(rt: Runtime, sid: str) -> dict[str, ConsentState]:
    with rt.data_engine.connect() as conn:
        return current_state(conn=conn, subject_id=sid)


def _customers(rt: Runtime, tmp: Path, name: str, rows: list[dict[str, str]]) -> None:
    header = ["customer_id", "email", "first_name", "created_at"]
    path = write_csv(tmp / f"{name}.csv", rows, header)
    ingest_file(runtime=rt, kind="customers", path=path, clock=FrozenClock(NOW))


def test_a_withdrawal_tied_with_a_grant_survives_the_merge(cdp_env: CdpEnv, tmp_path: Path) -> None:
    """The review's reproduction: S1 granted; A1 withdrew and granted at the same time (the
    service reads a withdrawal); a shared email then merges them."""
    rt = cdp_env.runtime
    _customers(rt, tmp_path, "s", [{"customer_id": "S1", "first_name": "Sam",
                                     "created_at": "2024-01-01T00:00:00Z"}])  # fmt: skip
    _customers(rt, tmp_path, "a", [{"customer_id": "A1", "first_name": "Sam",
                                     "created_at": "2024-02-01T00:00:00Z"}])  # fmt: skip

    def row(customer_id: str, status: str, at: str) -> dict[str, str]:
        return {"customer_id": customer_id, "purpose": "email_marketing", "status": status,
                "occurred_at": at, "source": "web"}  # fmt: skip

    consents = write_csv(
        tmp_path / "cons.csv",
        [
            row("S1", "granted", "2024-06-01T00:00:00Z"),
            row("A1", "withdrawn", "2024-03-01T00:00:00Z"),
            row("A1", "granted", "2024-03-01T00:00:00Z"),
        ],
        CONSENT_HEADER,
    )
    ingest_file(runtime=rt, kind="consents", path=consents, clock=FrozenClock(NOW))
    s1 = _subject_of(cdp_env, IdentityKind.CUSTOMER_ID, "S1")
    a1 = _subject_of(cdp_env, IdentityKind.CUSTOMER_ID, "A1")
    assert _states(rt, s1)["email_marketing"].status == "granted"
    assert _states(rt, a1)["email_marketing"].status == "withdrawn"
    _customers(rt, tmp_path, "link", [
        {"customer_id": "S1", "email": "sam.tie@example.com"},
        {"customer_id": "A1", "email": "sam.tie@example.com"},
    ])  # fmt: skip
    survivor = _subject_of(cdp_env, IdentityKind.CUSTOMER_ID, "S1")
    assert _subject_of(cdp_env, IdentityKind.CUSTOMER_ID, "A1") == survivor
    assert _states(rt, survivor)["email_marketing"].status == "withdrawn"


def _restrictive(a: ConsentState, b: ConsentState) -> str:
    """The most restrictive of two states; a purpose's default is not a choice, so a state with
    no entry yields to the other's."""
    if a.is_default:
        return b.status
    if b.is_default:
        return a.status
    return "withdrawn" if "withdrawn" in (a.status, b.status) else "granted"


_TIMES = [
    NOW - timedelta(days=30),
    NOW - timedelta(hours=1),
    NOW + timedelta(minutes=4),  # ahead of the merge's clock, within the allowed skew
]
_ENTRIES = st.lists(
    st.tuples(
        st.sampled_from(["S", "A"]),
        st.sampled_from(["email_marketing", "analytics", "support"]),
        st.sampled_from(["granted", "withdrawn"]),
        st.sampled_from(_TIMES),
    ),
    max_size=8,
)
_RUN = itertools.count()
_T = NOW - timedelta(hours=1)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(entries=_ENTRIES)
@example(  # the review's case: a tie read as a withdrawal by the service
    entries=[
        ("S", "email_marketing", "granted", NOW - timedelta(days=30)),
        ("A", "email_marketing", "withdrawn", _T),
        ("A", "email_marketing", "granted", _T),
    ]
)
@example(  # a grant ahead of the merge's clock
    entries=[
        ("S", "email_marketing", "granted", NOW + timedelta(minutes=4)),
        ("A", "email_marketing", "withdrawn", _T),
    ]
)
def test_the_merged_state_is_the_most_restrictive_of_the_two(
    cdp_env: CdpEnv, tmp_path: Path, entries: list[tuple[str, str, str, datetime]]
) -> None:
    """``entries`` (subject, purpose, status, time) are recorded in their order, so ties are
    recorded either way round."""
    rt = cdp_env.runtime
    run = next(_RUN)
    tmp = tmp_path / str(run)
    tmp.mkdir()
    s, a = f"S{run}", f"A{run}"
    _customers(rt, tmp, "s", [{"customer_id": s, "first_name": "Sam"}])
    _customers(rt, tmp, "a", [{"customer_id": a, "first_name": "Sam"}])
    rows = [
        {"customer_id": s if who == "S" else a, "purpose": purpose, "status": status,
         "occurred_at": _iso(at), "source": "web"}
        for who, purpose, status, at in entries
    ]  # fmt: skip
    if rows:
        path = write_csv(tmp / "cons.csv", rows, CONSENT_HEADER)
        summary = ingest_file(runtime=rt, kind="consents", path=path, clock=FrozenClock(NOW))
        assert summary.rejected == 0
    before = (
        _states(rt, _subject_of(cdp_env, IdentityKind.CUSTOMER_ID, s)),
        _states(rt, _subject_of(cdp_env, IdentityKind.CUSTOMER_ID, a)),
    )
    email = f"sam{run}@example.com"
    _customers(rt, tmp, "link", [{"customer_id": s, "email": email},
                                 {"customer_id": a, "email": email}])  # fmt: skip
    survivor = _subject_of(cdp_env, IdentityKind.CUSTOMER_ID, s)
    assert _subject_of(cdp_env, IdentityKind.CUSTOMER_ID, a) == survivor
    after = _states(rt, survivor)
    for purpose in PURPOSE_NAMES:
        mine, theirs = before[0][purpose], before[1][purpose]
        assert after[purpose].status == _restrictive(mine, theirs), purpose
