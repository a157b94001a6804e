"""A replayed request adds nothing, whenever it arrives. The clock-skew correction dates a message
by its arrival (``timestamp + receivedAt - sentAt``), so the same body replayed later (an HTTP
retry after a lost answer, a forwarding queue) is dated later: its consent grant was recorded
again, after a withdrawal made in between, and undid it. And a library sets a new ``sentAt`` on
every attempt: a message without ``messageId`` keyed by a hash of its content that included it
was stored again on every retry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

import cdp.ingest.segment as segment
from cdp.consent.ledger_state import has_consent
from cdp.crypto.normalize import IdentityKind
from tests.api.test_segment_api import _subject
from tests.conftest import CdpEnv
from tests.ingest.helpers import count

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def server_clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    clock = _Clock()
    monkeypatch.setitem(segment.ingest_messages.__kwdefaults__, "clock", clock)
    return clock


def _post(client: TestClient, key: str, path: str, body: dict[str, Any]) -> int:
    raw = json.dumps(body).encode()
    response = client.post(
        path, content=raw, auth=(key, ""), headers={"Content-Type": "application/json"}
    )
    return response.status_code


def _choice(message_id: str, at: datetime, email: bool) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": "u-replay",
        "event": "Consent Changed",
        "messageId": message_id,
        "timestamp": at.isoformat(),
        "sentAt": (at + timedelta(seconds=1)).isoformat(),
        "context": {"consent": {"categoryPreferences": {"email": email}}},
    }


def test_a_grant_replayed_after_a_withdrawal_does_not_undo_it(
    client: TestClient, key: str, cdp_env: CdpEnv, server_clock: _Clock
) -> None:
    grant = _choice("g-1", T0, True)
    server_clock.now = T0 + timedelta(seconds=2)
    assert _post(client, key, "/v1/track", grant) == 200  # its answer is lost: it is replayed
    server_clock.now = T0 + timedelta(minutes=30)
    withdrawal = _choice("w-1", server_clock.now - timedelta(seconds=2), False)
    assert _post(client, key, "/v1/track", withdrawal) == 200
    server_clock.now = T0 + timedelta(hours=1)
    assert _post(client, key, "/v1/track", grant) == 200  # the same body, an hour late
    sid = _subject(cdp_env, IdentityKind.CUSTOMER_ID, "u-replay")
    assert sid is not None
    assert not has_consent(runtime=cdp_env.runtime, subject_id=sid, purpose="email_marketing")
    with cdp_env.runtime.data_engine.connect() as conn:
        entries = conn.execute(
            sa.text(
                "SELECT status FROM consent_events WHERE purpose = 'email_marketing' ORDER BY id"
            )
        ).scalars()
        assert list(entries) == ["granted", "withdrawn"]


def test_a_batch_retried_with_a_new_sent_at_is_stored_once(
    client: TestClient, key: str, cdp_env: CdpEnv, server_clock: _Clock
) -> None:
    server_clock.now = T0 + timedelta(minutes=5)
    message = {
        "type": "track",
        "userId": "u-retry",
        "event": "Clicked",
        "timestamp": T0.isoformat(),
    }
    for attempt in range(3):  # no messageId; the library stamps each attempt
        sent = (T0 + timedelta(seconds=attempt)).isoformat()
        assert _post(client, key, "/v1/batch", {"batch": [dict(message)], "sentAt": sent}) == 200
        single = {**message, "sentAt": sent}
        assert _post(client, key, "/v1/track", single) == 200
    assert count(cdp_env.runtime, "events") == 1
