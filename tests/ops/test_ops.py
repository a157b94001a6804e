"""Liveness, readiness and the Prometheus metrics endpoint (restricted to ops readers)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cdp.api.app import create_app
from cdp.settings import reset_settings
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.factories import make_subject
from tests.ops.test_limits import assert_error


@pytest.fixture
def client(cdp_env: CdpEnv) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


def _headers(env: CdpEnv, role: str, purpose: str) -> dict[str, str]:
    made = make_principal(env.runtime, [role])
    return {"Authorization": f"Bearer {made.token}", "X-Purpose": purpose}


def test_healthz_is_public_and_constant(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_passes_every_check(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "status": "ok",
        "checks": {
            "data_database": "ok",
            "key_store": "ok",
            "migrations": "ok",
            "key_file": "ok",
            "policy": "ok",
        },
    }


def test_readyz_fails_without_the_key_file(cdp_env: CdpEnv, client: TestClient) -> None:
    key_file = cdp_env.settings.resolved_key_file
    saved = key_file.read_bytes()
    key_file.unlink()
    try:
        body = assert_error(client.get("/readyz"), 503, "not_ready")
    finally:
        key_file.write_bytes(saved)
    assert body["error"]["details"] == [{"loc": "key_file", "msg": "fail"}]


def test_readyz_fails_when_the_process_has_no_policy(
    cdp_env: CdpEnv, client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker started after the policy files went bad has no policy in force: every
    authorised request would fail, so it is not ready (a process that loaded a policy before
    keeps it, and stays ready)."""
    from cdp.access.engine import reset_policy_engine

    broken = tmp_path / "policies"
    broken.mkdir()
    (broken / "model.conf").write_text("not a model")
    (broken / "policy.csv").write_text("p, nobody\n")
    monkeypatch.setenv("CDP_POLICY_DIR", str(broken))
    reset_settings()
    reset_policy_engine()
    try:
        body = assert_error(client.get("/readyz"), 503, "not_ready")
    finally:
        monkeypatch.delenv("CDP_POLICY_DIR")
        reset_settings()
        reset_policy_engine()
    assert body["error"]["details"] == [{"loc": "policy", "msg": "fail"}]
    assert client.get("/readyz").status_code == 200


def test_readyz_fails_when_the_schema_is_behind(cdp_env: CdpEnv, client: TestClient) -> None:
    engine = cdp_env.runtime.data_engine
    with engine.begin() as conn:
        heads = [r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")]
        conn.execute(sa.text("DELETE FROM alembic_version WHERE version_num = :v"), {"v": heads[0]})
    try:
        body = assert_error(client.get("/readyz"), 503, "not_ready")
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO alembic_version VALUES (:v)"), {"v": heads[0]})
    assert body["error"]["details"] == [{"loc": "migrations", "msg": "fail"}]
    assert client.get("/readyz").status_code == 200


def test_readyz_fails_when_the_database_is_unreachable(
    cdp_env: CdpEnv, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDP_DATABASE_URL", "postgresql+psycopg://cdp@127.0.0.1:1/nowhere")
    reset_settings()
    body = assert_error(client.get("/readyz"), 503, "not_ready")
    assert {d["loc"] for d in body["error"]["details"]} == {"data_database", "migrations"}
    assert "127.0.0.1" not in str(body)


def test_metrics_need_an_ops_reader(cdp_env: CdpEnv, client: TestClient) -> None:
    assert_error(client.get("/metrics"), 401, "unauthenticated")
    denied = client.get("/metrics", headers=_headers(cdp_env, "analyst", "analytics"))
    assert_error(denied, 403, "forbidden")
    wrong_purpose = client.get("/metrics", headers=_headers(cdp_env, "admin", "analytics"))
    assert_error(wrong_purpose, 403, "forbidden")


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.rsplit("} ", 1)[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_by_route_template(cdp_env: CdpEnv, client: TestClient) -> None:
    admin = _headers(cdp_env, "admin", "operations")
    sid = make_subject(cdp_env.runtime, {"email": "m@example.com"}, identities={})
    before = client.get("/metrics", headers=admin)
    assert before.status_code == 200
    assert before.headers["content-type"].startswith("text/plain")
    route = "/v1/profiles/{subject_id}"
    start = _sample(before.text, "cdp_http_requests_total", route=route, status="403")
    client.get(f"/v1/profiles/{sid}", headers=_headers(cdp_env, "analyst", "support"))
    client.get("/healthz")
    after = client.get("/metrics", headers=admin).text
    assert _sample(after, "cdp_http_requests_total", route=route, status="403") == start + 1
    assert _sample(after, "cdp_http_requests_total", route="/healthz", status="200") >= 1
    assert _sample(after, "cdp_http_request_duration_seconds_count", route=route) >= 1
    assert sid not in after  # ids are never labels


def test_an_unknown_method_is_counted_as_other(cdp_env: CdpEnv, client: TestClient) -> None:
    """HTTP lets a request line carry any token as its method; each one a label of its own would
    let unauthenticated clients grow /metrics without bound."""
    admin = _headers(cdp_env, "admin", "operations")
    start = _sample(
        client.get("/metrics", headers=admin).text,
        "cdp_http_requests_total",
        method="other",
        route="/healthz",
    )
    methods = [f"M{'X' * 40}{i}" for i in range(25)]
    for method in methods:
        assert client.request(method, "/healthz").status_code == 405
    after = client.get("/metrics", headers=admin).text
    total = _sample(after, "cdp_http_requests_total", method="other", route="/healthz")
    assert total == start + 25
    assert not any(m in after for m in methods)


def test_metrics_count_refusals_by_limit(
    cdp_env: CdpEnv, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = _headers(cdp_env, "admin", "operations")
    text = client.get("/metrics", headers=admin).text
    start = _sample(text, "cdp_http_limited_total", reason="body_too_large")
    too_big = b"x" * (2 * 1024 * 1024)
    assert client.post("/v1/principals", content=too_big, headers=admin).status_code == 413
    text = client.get("/metrics", headers=admin).text
    assert _sample(text, "cdp_http_limited_total", reason="body_too_large") == start + 1
