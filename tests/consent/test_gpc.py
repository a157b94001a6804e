"""``Sec-GPC: 1`` on the Segment endpoints withdraws ``ad_audiences`` (mechanism ``gpc``) through
the ledger, so the consent service, its SQL condition and the next export all see it."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from cdp.api.app import create_app
from cdp.consent import ledger_state, service
from cdp.crypto.normalize import IdentityKind
from cdp.ingest.sources import create_source
from tests.conftest import CdpEnv
from tests.factories import make_subject


@pytest.fixture
def client(cdp_env: CdpEnv) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


def test_gpc_withdraws_ad_audiences_over_an_earlier_grant(
    cdp_env: CdpEnv, client: TestClient
) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, identities={IdentityKind.CUSTOMER_ID: "gpc-1"})
    service.record_consent(
        runtime=rt,
        subject_id=sid,
        purpose="ad_audiences",
        status="granted",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        source="banner",
        mechanism="banner",
        recorded_by="cmp",
    )
    assert ledger_state.has_consent(runtime=rt, subject_id=sid, purpose="ad_audiences")
    key = create_source(runtime=rt, name="shop-web").write_key
    message = {
        "type": "track",
        "messageId": str(uuid.uuid4()),
        "userId": "gpc-1",
        "event": "Viewed",
        "timestamp": datetime.now(UTC).isoformat(),
    }
    body = gzip.compress(json.dumps({"batch": [message]}).encode())
    r = client.post(
        "/v1/batch",
        content=body,
        auth=(key, ""),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip", "Sec-GPC": "1"},
    )
    assert r.status_code == 200, r.text
    state = ledger_state.current_state(runtime=rt, subject_id=sid)["ad_audiences"]
    assert (state.status, state.mechanism) == ("withdrawn", "gpc")
    assert not ledger_state.has_consent(runtime=rt, subject_id=sid, purpose="ad_audiences")
    with rt.data_engine.connect() as conn:
        assert sid not in set(conn.execute(ledger_state.granted_subjects("ad_audiences")).scalars())
    # the grant stays in the history: the ledger shows both choices
    assert [h.mechanism for h in ledger_state.history(runtime=rt, subject_id=sid)] == [
        "banner",
        "gpc",
    ]
