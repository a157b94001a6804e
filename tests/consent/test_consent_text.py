"""``POST /v1/consent`` refuses control characters in ``source`` and ``notice_version`` with a 422
naming the field (a NUL used to be a 500 on PostgreSQL, whose text cannot hold one, and was stored
on SQLite); tabs are kept."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from cdp.api.app import create_app
from cdp.consent import ledger_state
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.factories import make_subject
from tests.ingest.helpers import count


@pytest.fixture
def client(cdp_env: CdpEnv) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("field", ["source", "notice_version"])
@pytest.mark.parametrize("text", ["web\x00", "\x1b[31mweb", "v\ud800"])
def test_control_characters_and_lone_surrogates_are_a_422(
    cdp_env: CdpEnv, client: TestClient, field: str, text: str
) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt)
    made = make_principal(rt, ["dpo"])
    headers = {
        "Authorization": f"Bearer {made.token}",
        "X-Purpose": "privacy_request",
        "Content-Type": "application/json",
    }
    body = {"subject_id": sid, "purpose": "analytics", "status": "granted", field: text}
    raw = json.dumps(body).encode()  # ASCII JSON: "\u0000", "\ud800"
    response = client.post("/v1/consent", content=raw, headers=headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    # the consent service refuses control characters (its field name); a lone surrogate is not
    # text the JSON body parser accepts at all (a body location)
    where = f"body.{field}" if "\ud800" in text else field
    assert [d["loc"] for d in error["details"]] == [where]
    assert "web" not in response.text
    assert count(rt, "consent_events") == 0
    good = json.dumps({**body, field: "web\tform"}).encode()
    assert client.post("/v1/consent", content=good, headers=headers).status_code == 200
    assert [getattr(h, field) for h in ledger_state.history(runtime=rt, subject_id=sid)] == [
        "web\tform"
    ]


@pytest.mark.parametrize("when", [1700000000, "1700000000", 1.7e9, "20240115"])
def test_a_consent_time_given_as_a_number_is_a_422(
    cdp_env: CdpEnv, client: TestClient, when: object
) -> None:
    """Consent evidence must carry the time the person chose: a number was read as Unix seconds
    (an int as 2023, a string of digits as 1970), as ingestion refuses to do."""
    rt = cdp_env.runtime
    sid = make_subject(rt)
    made = make_principal(rt, ["dpo"])
    headers = {"Authorization": f"Bearer {made.token}", "X-Purpose": "privacy_request"}
    body = {"subject_id": sid, "purpose": "analytics", "status": "granted", "occurred_at": when}
    response = client.post("/v1/consent", json=body, headers=headers)
    assert response.status_code == 422, response.text
    assert [d["loc"] for d in response.json()["error"]["details"]] == ["body.occurred_at"]
    assert count(rt, "consent_events") == 0
    body["occurred_at"] = "2024-01-15T10:00:00Z"
    assert client.post("/v1/consent", json=body, headers=headers).status_code == 200


def test_report_bounds_given_as_numbers_are_a_422(cdp_env: CdpEnv, client: TestClient) -> None:
    made = make_principal(cdp_env.runtime, ["auditor"])
    headers = {"Authorization": f"Bearer {made.token}", "X-Purpose": "audit"}
    path = "/v1/audit/reports/principal-activity"
    for bound in ("since", "until"):
        r = client.get(path, params={"principal": "x", bound: "-41006"}, headers=headers)
        assert r.status_code == 422, r.text
    ok = client.get(
        path, params={"principal": "x", "until": "2026-01-01T00:00:00Z"}, headers=headers
    )
    assert ok.status_code == 200, ok.text
