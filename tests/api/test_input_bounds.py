"""Inputs past what cdp can store or compute are refused with a 4xx, never a server error, and an
unknown selection is not echoed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cdp.api.app import create_app
from cdp.cli import app as cli_app
from cdp.errors import InvalidInputError
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.factories import make_subject


@pytest.fixture
def client(cdp_env: CdpEnv) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


def _headers(env: CdpEnv, role: str, purpose: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {make_principal(env.runtime, [role]).token}",
        "X-Purpose": purpose,
    }


@pytest.mark.parametrize("page", ["orders", "consent"])
def test_a_cursor_past_the_largest_id_is_422(
    cdp_env: CdpEnv, client: TestClient, page: str
) -> None:
    sid = make_subject(cdp_env.runtime, {"email": "c@example.com"})
    headers = _headers(cdp_env, "dpo", "privacy_request")
    r = client.get(f"/v1/profiles/{sid}/{page}?cursor=99999999999999999999", headers=headers)
    assert r.status_code == 422, r.text
    assert client.get(f"/v1/profiles/{sid}/{page}?cursor=5", headers=headers).status_code == 200


@pytest.mark.parametrize("query", ["to=0001-01-01", "from=0001-01-01", "to=9999-12-31"])
def test_a_metrics_period_out_of_range_is_422(
    cdp_env: CdpEnv, client: TestClient, query: str
) -> None:
    r = client.get(f"/v1/metrics?{query}", headers=_headers(cdp_env, "analyst", "analytics"))
    assert r.status_code == 422, r.text


def test_a_token_lifetime_past_ten_years_is_refused(cdp_env: CdpEnv, client: TestClient) -> None:
    headers = _headers(cdp_env, "admin", "operations")
    body = {"name": "hx", "roles": ["analyst"], "expires_in_seconds": 10**12}
    assert client.post("/v1/principals", json=body, headers=headers).status_code == 422
    body["expires_in_seconds"] = 3600
    assert client.post("/v1/principals", json=body, headers=headers).status_code in (200, 201)


def test_the_cli_refuses_a_lifetime_past_ten_years(cdp_env: CdpEnv) -> None:
    for duration in ("99999999999w", "4000d"):
        result = CliRunner().invoke(
            cli_app, ["principals", "create", "hx", "--role", "analyst", "--expires-in", duration]
        )
        # main() maps this error to exit status 2; CliRunner shows it as the exception
        assert isinstance(result.exception, InvalidInputError), result.exception
        assert "10 years" in str(result.exception)


def test_unknown_fields_are_counted_not_echoed(cdp_env: CdpEnv, client: TestClient) -> None:
    sid = make_subject(cdp_env.runtime, {"email": "c@example.com"})
    r = client.get(
        f"/v1/profiles/{sid}?fields=email,bob.secret@example.com",
        headers=_headers(cdp_env, "support", "support"),
    )
    assert r.status_code == 422
    assert "bob.secret" not in r.text and "1 unknown" in r.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/segments/a%00b", None),
        ("GET", "/v1/segments/a%00b/members", None),
        ("PUT", "/v1/segments/a%00b", {"rule": {"lifecycle_stage": ["new"]}}),
        ("POST", "/v1/exports", {"segment": "win_back", "destination": "a\u0000b"}),
        ("POST", "/v1/exports", {"segment": "a\u0000b", "destination": "mail"}),
    ],
)
def test_a_nul_character_in_a_name_is_422_on_every_backend(
    cdp_env: CdpEnv, client: TestClient, method: str, path: str, body: object
) -> None:
    """PostgreSQL refuses NUL in text (``DataError``): a name no segment or destination can
    have is refused before any query, the same on both backends."""
    role, purpose = ("marketer", "email_marketing")
    r = client.request(method, path, json=body, headers=_headers(cdp_env, role, purpose))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "validation_failed"


def test_a_value_the_database_refuses_is_422_and_not_quoted(cdp_env: CdpEnv) -> None:
    """The safety net behind validation: a value the database refuses (on PostgreSQL, NUL in
    text) is a 422 naming no value, never a 500, whatever route it slips through."""
    import sqlalchemy as sa
    from fastapi import FastAPI

    app: FastAPI = create_app()

    @app.get("/test-only/compare")
    def compare(value: str) -> dict[str, int]:
        rt = cdp_env.runtime
        with rt.data_engine.connect() as conn:
            if conn.dialect.name != "postgresql":  # SQLite takes NUL: raise what psycopg would
                raise sa.exc.DataError("SELECT :v", {"v": value}, ValueError("NUL in text"))
            n = conn.execute(sa.text("SELECT count(*) FROM subjects WHERE id = :v"), {"v": value})
            return {"n": int(n.scalar_one())}

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/test-only/compare", params={"value": "secret-value\x00x"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "validation_failed"
    assert "secret-value" not in r.text
