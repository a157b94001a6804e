"""A choice dated ahead of cdp's clock (within the allowed skew) is stored as made when cdp
received it: a later withdrawal, an objection or a GPC signal dated by cdp itself must not lose
to a grant whose sender's clock ran a few minutes fast."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from cdp.api.app import create_app
from cdp.clock import FrozenClock
from cdp.consent import ledger_state, service
from cdp.crypto.normalize import IdentityKind
from cdp.ingest.pipeline import ingest_file
from cdp.ingest.sources import create_source
from tests.conftest import CdpEnv
from tests.factories import make_subject

AHEAD = timedelta(minutes=4)  # inside service.CLOCK_SKEW


def _grant(rt, sid: str, at: datetime, clock=None) -> bool:  # type: ignore[no-untyped-def]
    return service.record_consent(
        runtime=rt,
        subject_id=sid,
        purpose="push_marketing",
        status="granted",
        occurred_at=at,
        source="app",
        mechanism="checkbox",
        recorded_by="tester",
        **({"clock": clock} if clock else {}),
    )


def test_a_withdrawal_minutes_after_a_fast_clock_s_grant_wins(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt)
    now = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert _grant(rt, sid, now + AHEAD, FrozenClock(now))
    [entry] = ledger_state.history(runtime=rt, subject_id=sid)
    assert entry.occurred_at == entry.recorded_at == now
    assert not _grant(rt, sid, now + AHEAD, FrozenClock(now + timedelta(minutes=1)))  # a replay
    service.record_consent(
        runtime=rt,
        subject_id=sid,
        purpose="push_marketing",
        status="withdrawn",
        occurred_at=now + timedelta(minutes=1),
        source="app",
        mechanism="api",
        recorded_by="tester",
        clock=FrozenClock(now + timedelta(minutes=1)),
    )
    assert ledger_state.current_state(runtime=rt, subject_id=sid)["push_marketing"].status == (
        "withdrawn"
    )


def test_the_api_s_undated_withdrawal_beats_a_grant_dated_ahead(cdp_env: CdpEnv) -> None:
    from tests.audit.factories import make_principal

    rt = cdp_env.runtime
    sid = make_subject(rt, identities={IdentityKind.EMAIL: "skew.person@example.com"})
    token = make_principal(rt, ["dpo"]).token
    headers = {"Authorization": f"Bearer {token}", "X-Purpose": "privacy_request"}
    ahead = (datetime.now(UTC) + AHEAD).isoformat()
    with TestClient(create_app()) as client:
        for body in (
            {"status": "granted", "occurred_at": ahead},
            {"status": "withdrawn"},
        ):
            r = client.post(
                "/v1/consent",
                json={
                    "subject_id": sid,
                    "purpose": "push_marketing",
                    "source": "app",
                    "mechanism": "api",
                    **body,
                },
                headers=headers,
            )
            assert r.status_code in (200, 201), r.text
    assert not ledger_state.has_consent(runtime=rt, subject_id=sid, purpose="push_marketing")


def test_gpc_beats_a_file_s_grant_dated_ahead(cdp_env: CdpEnv, tmp_path: Path) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, identities={IdentityKind.CUSTOMER_ID: "skew-1"})
    ahead = (datetime.now(UTC) + AHEAD).isoformat()
    grants = tmp_path / "consents.csv"
    grants.write_text(
        "customer_id,purpose,status,occurred_at,source,notice_version,mechanism\n"
        f"skew-1,ad_audiences,granted,{ahead},cmp,v1,banner\n"
    )
    assert ingest_file(runtime=rt, kind="consents", path=grants).inserted == 1
    assert ledger_state.has_consent(runtime=rt, subject_id=sid, purpose="ad_audiences")
    key = create_source(runtime=rt, name="shop-web").write_key
    message = {
        "type": "track",
        "messageId": str(uuid.uuid4()),
        "userId": "skew-1",
        "event": "Viewed",
        "timestamp": datetime.now(UTC).isoformat(),
    }
    with TestClient(create_app()) as client:
        r = client.post(
            "/v1/batch",
            content=gzip.compress(json.dumps({"batch": [message]}).encode()),
            auth=(key, ""),
            headers={
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "Sec-GPC": "1",
            },
        )
        assert r.status_code == 200, r.text
    assert not ledger_state.has_consent(runtime=rt, subject_id=sid, purpose="ad_audiences")
    assert ingest_file(runtime=rt, kind="consents", path=grants).duplicates == 1  # a replay
