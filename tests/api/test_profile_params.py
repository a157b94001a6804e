"""GET /v1/profiles/{id} reads its path and query parameters itself: the same answers FastAPI's
declared parameters gave (422 with the same body for a malformed id, the last ``fields`` wins),
after authorisation, and nothing is read or recorded for a malformed id."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.api.app import create_app
from cdp.audit.writer import LOG
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.factories import make_subject

BAD_ID = {
    "loc": "path.subject_id",
    "msg": "String should match pattern '^[0-9a-f]{32}$'",
}


@pytest.fixture
def client(cdp_env: CdpEnv) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


def _headers(env: CdpEnv) -> dict[str, str]:
    made = make_principal(env.runtime, ["support"])
    return {"Authorization": f"Bearer {made.token}", "X-Purpose": "support"}


def _records(env: CdpEnv) -> int:
    with env.runtime.data_engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(LOG)).scalar_one())


@pytest.mark.parametrize(
    "raw", ["A" * 32, "abc", "0" * 31, "0" * 33, "0" * 32 + "%0A", "0" * 32 + "%20", "g" * 32]
)
def test_malformed_id_is_422_with_the_validation_body(
    cdp_env: CdpEnv, client: TestClient, raw: str
) -> None:
    r = client.get(f"/v1/profiles/{raw}", headers=_headers(cdp_env))
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "validation_failed" and error["details"] == [BAD_ID]
    assert error["request_id"] == r.headers["x-request-id"]
    assert _records(cdp_env) == 0  # nothing attempted, nothing recorded


def test_authentication_comes_before_the_id_check(cdp_env: CdpEnv, client: TestClient) -> None:
    assert client.get("/v1/profiles/abc", headers={"X-Purpose": "support"}).status_code == 401


def test_the_last_fields_parameter_wins(cdp_env: CdpEnv, client: TestClient) -> None:
    sid = make_subject(cdp_env.runtime, {"email": "a@example.com", "phone": "+14155550123"})
    headers = _headers(cdp_env)
    r = client.get(f"/v1/profiles/{sid}?fields=bogus&fields=email", headers=headers)
    assert r.status_code == 200 and set(r.json()) == {"subject_id", "email"}
    r = client.get(f"/v1/profiles/{sid}?fields=email&fields=bogus", headers=headers)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == "fields"
    r = client.get(f"/v1/profiles/{sid}?fields=", headers=headers)
    assert r.status_code == 200 and "phone" in r.json()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(alphabet="0123456789abcdefABCDEF-_xz", min_size=1, max_size=40))
def test_only_32_lowercase_hex_is_an_id(cdp_env: CdpEnv, client: TestClient, raw: str) -> None:
    status = client.get(f"/v1/profiles/{raw}", headers=_headers(cdp_env)).status_code
    well_formed = len(raw) == 32 and all(c in "0123456789abcdef" for c in raw)
    assert status == (404 if well_formed else 422)


@pytest.mark.parametrize("query", ["", "?email=a@example.com&customer_id=c1"])
def test_a_lookup_names_exactly_one_identity(
    cdp_env: CdpEnv, client: TestClient, query: str
) -> None:
    r = client.get(f"/v1/profiles{query}", headers=_headers(cdp_env))
    assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == "query"
    ok = client.get("/v1/profiles?customer_id=c1", headers=_headers(cdp_env))
    assert ok.status_code == 200 and ok.json() == {"items": []}
