"""A consent withdrawal (a banner's ``false``, the ``Sec-GPC: 1`` signal) is recorded whenever its
message names a subject by a valid ``userId`` or ``anonymousId``, even when something else in the
message is invalid (a bad timestamp, trait, event name or type): the answer is still a 400 naming
the invalid part. A grant in an invalid message is not recorded. The withdrawal used to be dropped
with the rest of the message, leaving the person eligible for what they refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.clock import FrozenClock
from cdp.consent import ledger_state
from cdp.crypto.normalize import IdentityKind
from cdp.ingest.segment_plan import plan_messages
from tests.api.test_segment_api import _consent, _post_batch, _subject
from tests.conftest import CdpEnv

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

CORRUPTIONS: dict[str, tuple[str, Any]] = {
    "timestamp": ("timestamp", "not a time"),
    "epoch": ("timestamp", 1_700_000_000),
    "old": ("timestamp", "1850-01-01T00:00:00Z"),
    "event": ("event", "bad\x00name"),
    "no event": ("event", None),
    "type": ("type", "bogus"),
    "messageId": ("messageId", "m\x07id"),
    "traits": ("traits", "not an object"),
    "context.traits": ("context.traits", "x"),
    "email": ("traits.email", "not-an-email"),
    "birthday": ("traits.birthday", "someday"),
    "created": ("traits.createdAt", "2199-01-01T00:00:00Z"),
    "products": ("properties.products", 5),
    "properties": ("properties", [1, 2]),
}
TRAITS = {"email", "birthday", "created"}
"""Corruptions of traits an identify reads (a track ignores its traits)."""


def _message(user: str, prefs: dict[str, bool], *broken: str) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "type": "identify" if TRAITS & set(broken) else "track",
        "messageId": str(uuid.uuid4()),
        "userId": user,
        "event": "Order Completed",
        "timestamp": datetime.now(UTC).isoformat(),
        "properties": {"order_id": f"o-{user}", "total": 5, "currency": "USD"},
        "traits": {},
        "context": {"consent": {"categoryPreferences": prefs}},
    }
    for name in broken:
        path, value = CORRUPTIONS[name]
        target = msg
        *parents, last = path.split(".")
        for p in parents:
            target = target[p]
        target[last] = value
    return msg


@pytest.mark.parametrize("broken", sorted(CORRUPTIONS))
def test_a_withdrawal_in_an_invalid_message_is_recorded_and_its_grant_is_not(
    client: TestClient, key: str, cdp_env: CdpEnv, broken: str
) -> None:
    msg = _message("w-1", {"analytics": False, "personalization": True}, broken)
    response = _post_batch(client, key, [msg])
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"]
    sid = _subject(cdp_env, IdentityKind.CUSTOMER_ID, "w-1")
    assert sid is not None
    assert _consent(cdp_env, sid) == [("analytics", "withdrawn", "sdk")]


def test_gpc_reaches_the_subject_of_an_invalid_message(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    msg = _message("w-2", {"advertising": True}, "event", "timestamp")
    response = _post_batch(client, key, [msg], **{"Sec-GPC": "1"})
    assert response.status_code == 400, response.text
    assert sorted(d["loc"] for d in response.json()["error"]["details"]) == [
        "batch.0.event",
        "batch.0.timestamp",
    ]
    sid = _subject(cdp_env, IdentityKind.CUSTOMER_ID, "w-2")
    assert sid is not None
    assert _consent(cdp_env, sid) == [("ad_audiences", "withdrawn", "gpc")]


def test_a_valid_id_beside_a_broken_one_still_withdraws(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    msg = _message("=broken", {"analytics": False})
    msg["anonymousId"] = "dev-w3"
    response = _post_batch(client, key, [msg], **{"Sec-GPC": "1"})
    assert response.status_code == 400, response.text
    assert [d["loc"] for d in response.json()["error"]["details"]] == ["batch.0.userId"]
    sid = _subject(cdp_env, IdentityKind.ANONYMOUS_ID, "dev-w3")
    assert sid is not None
    assert _consent(cdp_env, sid) == [
        ("ad_audiences", "withdrawn", "gpc"),
        ("analytics", "withdrawn", "sdk"),
    ]
    assert _subject(cdp_env, IdentityKind.CUSTOMER_ID, "=broken") is None


def test_a_message_without_a_valid_id_withdraws_nothing(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    msg = _message("=broken", {"analytics": False})
    response = _post_batch(client, key, [msg], **{"Sec-GPC": "1"})
    assert response.status_code == 400
    rt = cdp_env.runtime
    with rt.data_engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM consent_events").scalar_one() == 0


def test_the_withdrawal_of_an_invalid_message_is_dated_by_its_valid_time(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    at = datetime(2026, 1, 5, 8, 30, tzinfo=UTC)
    msg = _message("w-4", {"analytics": False}, "event")
    msg["timestamp"] = at.isoformat()
    assert _post_batch(client, key, [msg]).status_code == 400
    sid = _subject(cdp_env, IdentityKind.CUSTOMER_ID, "w-4")
    assert sid is not None
    state = ledger_state.current_state(runtime=cdp_env.runtime, subject_id=sid)["analytics"]
    assert state.status == "withdrawn"
    # the request's sentAt (now) corrects the time by the request's transit: milliseconds
    assert abs(state.occurred_at - at) < timedelta(minutes=1)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    broken=st.sets(st.sampled_from(sorted(CORRUPTIONS)), min_size=1, max_size=4),
    prefs=st.dictionaries(
        st.sampled_from(["analytics", "marketing", "advertising", "personalization", "email"]),
        st.booleans(),
        min_size=1,
    ),
    gpc=st.booleans(),
    anonymous=st.booleans(),
)
def test_every_withdrawal_of_a_named_subject_is_planned_and_no_grant_of_an_invalid_one(
    cdp_env: CdpEnv,
    broken: set[str],
    prefs: dict[str, bool],
    gpc: bool,
    anonymous: bool,
) -> None:
    msg = _message("w-h", prefs, *sorted(broken))
    if anonymous:  # the subject named by its anonymousId alone
        del msg["userId"]
        msg["anonymousId"] = "dev-h"
    plan, invalid, _ = plan_messages(
        cdp_env.runtime, [msg], gpc=gpc, source="segment:web", clock=FrozenClock(NOW)
    )
    assert invalid
    planned = {(r.purpose, r.status, r.mechanism) for _, r in plan.consents + plan.gpc}
    withdrawn = {p for p, _s, _m in planned}
    assert all(s == "withdrawn" for _p, s, _m in planned)  # no grant of an invalid message
    expected = set()
    for category, value in prefs.items():
        if not value:
            expected |= {
                "analytics": {"analytics"},
                "marketing": {"email_marketing", "sms_marketing", "push_marketing"},
                "advertising": {"ad_audiences"},
                "personalization": {"personalization"},
                "email": {"email_marketing"},
            }[category]
    if gpc:
        expected.add("ad_audiences")
    assert withdrawn == expected
    for _, r in plan.consents + plan.gpc:
        assert (r.customer_id, r.anonymous_id) == ((None, "dev-h") if anonymous else ("w-h", None))
