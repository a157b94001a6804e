"""``POST /v1/consent`` refuses control characters in ``source`` and ``notice_version`` with a 422
naming the field (a NUL used to be a 500 on PostgreSQL, whose text cannot hold one, and was stored
on SQLite); tabs are kept."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from cdp.api.app import create_app
from cdp.consent import service
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
    assert [d["loc"] for d in error["details"]] == [f"body.{field}"]
    assert "web" not in response.text
    assert count(rt, "consent_events") == 0
    good = json.dumps({**body, field: "web\tform"}).encode()
    assert client.post("/v1/consent", content=good, headers=headers).status_code == 200
    assert [getattr(h, field) for h in service.history(runtime=rt, subject_id=sid)] == ["web\tform"]
