"""Limits: body size (413), rate per principal and per source (429 + Retry-After), response
deadline (504), page size caps (422) — every refusal in the one documented error body shape."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cdp.api.app import create_app
from cdp.api.limits import TokenBuckets, credential_key
from cdp.api.openapi import ERROR_SCHEMA
from cdp.ingest.sources import create_source
from cdp.settings import reset_settings
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """``response`` is a refusal in the documented shape, carrying its request id."""
    assert response.status_code == status, response.text
    body = response.json()
    jsonschema.validate(body, ERROR_SCHEMA)
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return body


def _settings(monkeypatch: pytest.MonkeyPatch, **values: object) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"CDP_{name.upper()}", str(value))
    reset_settings()


def _admin(env: CdpEnv) -> dict[str, str]:
    made = make_principal(env.runtime, ["admin"])
    return {"Authorization": f"Bearer {made.token}", "X-Purpose": "operations"}


@pytest.fixture
def client(cdp_env: CdpEnv) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


def test_declared_body_over_the_limit_is_refused_unread(
    cdp_env: CdpEnv, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _settings(monkeypatch, max_request_bytes=600 * 1024)
    body = b'{"name": "' + b"x" * (700 * 1024) + b'"}'
    r = client.post("/v1/principals", content=body, headers=_admin(cdp_env))
    assert_error(r, 413, "payload_too_large")


def test_streamed_body_over_the_limit_is_refused(
    cdp_env: CdpEnv, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _settings(monkeypatch, max_request_bytes=600 * 1024)

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        yield b'{"name": "'
        for _ in range(100):
            yield b"x" * 8192
        yield b'"}'

    headers = _admin(cdp_env) | {"Content-Type": "application/json"}
    r = client.post("/v1/principals", content=chunks(), headers=headers)
    assert_error(r, 413, "payload_too_large")


def test_a_body_under_the_limit_reaches_the_route(
    cdp_env: CdpEnv, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _settings(monkeypatch, max_request_bytes=600 * 1024)
    r = client.post(
        "/v1/principals", json={"name": "ops-bot", "roles": ["admin"]}, headers=_admin(cdp_env)
    )
    assert r.status_code == 201, r.text


def test_segment_keeps_its_own_smaller_limit(cdp_env: CdpEnv, client: TestClient) -> None:
    key = create_source(runtime=cdp_env.runtime, name="web").write_key
    auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    big = {"type": "track", "userId": "u1", "event": "x", "properties": {"p": "y" * 40_000}}
    r = client.post("/v1/track", json=big, headers=auth)
    assert_error(r, 413, "payload_too_large")


def test_a_principal_over_its_rate_gets_429_with_retry_after(
    cdp_env: CdpEnv, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _settings(monkeypatch, rate_limit_principal_per_second=0.01, rate_limit_principal_burst=2)
    hot, calm = _admin(cdp_env), _admin(cdp_env)
    assert client.get("/v1/principals", headers=hot).status_code == 200
    assert client.get("/v1/principals", headers=hot).status_code == 200
    r = client.get("/v1/principals", headers=hot)
    assert_error(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) == 100  # one token at 0.01/s
    assert client.get("/v1/principals", headers=calm).status_code == 200


def test_a_source_over_its_rate_gets_429(
    cdp_env: CdpEnv, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _settings(monkeypatch, rate_limit_source_per_second=0.5, rate_limit_source_burst=1)
    key = create_source(runtime=cdp_env.runtime, name="web").write_key
    auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    msg = {"userId": "u1", "event": "Viewed", "messageId": "m-1"}
    assert client.post("/v1/track", json=msg, headers=auth).status_code == 200
    r = client.post("/v1/track", json=msg, headers=auth)
    assert_error(r, 429, "rate_limited")
    assert r.headers["retry-after"] == "2"


def test_a_write_key_in_the_body_shares_its_sources_rate(
    cdp_env: CdpEnv, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """analytics.js sends its key in the body, no header: the same bucket as the header's key,
    and a 429 a browser of the shop's origin can read. It was never limited (the limit looked
    at the Authorization header only)."""
    _settings(monkeypatch, rate_limit_source_per_second=0.5, rate_limit_source_burst=2)
    key = create_source(runtime=cdp_env.runtime, name="web").write_key
    auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    plain = {"Content-Type": "text/plain", "Origin": "https://shop.example"}

    def body(n: int) -> bytes:
        msg = {"userId": "u1", "event": "Viewed", "messageId": f"m-{n}", "writeKey": key}
        return json.dumps(msg).encode()

    assert client.post("/v1/t", content=body(1), headers=plain).status_code == 200
    assert (
        client.post("/v1/track", json={"userId": "u1", "event": "V"}, headers=auth).status_code
        == 200
    )
    for path in ("/v1/t", "/v1/track"):
        r = client.post(path, content=body(2), headers=plain)
        assert_error(r, 429, "rate_limited")
        assert r.headers["retry-after"] == "2"
        assert r.headers["access-control-allow-origin"] == "*"
    r = client.post("/v1/track", json={"userId": "u1", "event": "V"}, headers={**auth, **plain})
    assert r.status_code == 429 and r.headers["access-control-allow-origin"] == "*"


def test_zero_rate_turns_the_limit_off(
    cdp_env: CdpEnv, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _settings(monkeypatch, rate_limit_principal_per_second=0, rate_limit_principal_burst=1)
    headers = _admin(cdp_env)
    assert all(client.get("/v1/principals", headers=headers).status_code == 200 for _ in range(5))


def test_token_bucket_refills_at_its_rate_and_stays_bounded() -> None:
    now = [0.0]
    buckets = TokenBuckets(clock=lambda: now[0], max_keys=3)
    key = ("principal", b"a")
    assert [buckets.take(key, rate=2.0, burst=2) for _ in range(3)] == [0.0, 0.0, 0.5]
    now[0] = 0.25  # half a token back
    assert buckets.take(key, rate=2.0, burst=2) == pytest.approx(0.25)
    now[0] = 10.0  # refilled, but never above the burst
    assert [buckets.take(key, rate=2.0, burst=2) for _ in range(3)] == [0.0, 0.0, 0.5]
    for i in range(10):
        buckets.take(("principal", bytes([i])), rate=1.0, burst=1)
    assert len(buckets._state) == 3


def test_buckets_are_keyed_by_a_hash_of_the_credential() -> None:
    token = b"cdp_secret-token"
    key = credential_key([(b"authorization", b"Bearer " + token)])
    assert key is not None and key[0] == "principal" and token not in key[1]
    basic = base64.b64encode(b"wk_123:ignored")
    assert credential_key([(b"authorization", b"Basic " + basic)]) == credential_key(
        [(b"authorization", b"Basic " + base64.b64encode(b"wk_123:other"))]
    )
    assert credential_key([]) is None
    assert credential_key([(b"authorization", b"Digest abc")]) is None


def _slow_app(started: threading.Event, release: threading.Event, done: threading.Event) -> FastAPI:
    app = create_app()

    @app.get("/slow-for-test")
    def slow() -> dict[str, str]:
        started.set()
        release.wait(timeout=30)
        done.set()
        return {"late": "answer"}

    return app


def test_a_slow_handler_gets_504_and_still_runs_to_its_end(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    _settings(monkeypatch, request_timeout_seconds=1)
    started, release, done = threading.Event(), threading.Event(), threading.Event()
    with TestClient(_slow_app(started, release, done)) as client:
        assert client.get("/healthz").status_code == 200  # warm: middleware stack built
        timer = threading.Timer(2.5, release.set)
        timer.start()
        began = time.monotonic()
        r = client.get("/slow-for-test")
        assert_error(r, 504, "deadline_exceeded")
        # The thread could not be stopped: it ran to its end, and the request (which the test
        # client, like a server shutting down, waits for) ended only then.
        assert started.is_set() and done.is_set()
        assert time.monotonic() - began >= 2.4
        timer.join()
        assert client.get("/healthz").status_code == 200


def test_a_prompt_answer_is_untouched_by_the_deadline(
    cdp_env: CdpEnv, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _settings(monkeypatch, request_timeout_seconds=5)
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


PAGE_PARAMS = {"limit", "page_size", "per_page", "size"}


def _has_maximum(schema: dict[str, Any]) -> bool:
    options = schema.get("anyOf", [schema])
    return all("maximum" in o for o in options if o.get("type") == "integer")


def test_every_page_size_parameter_has_a_maximum() -> None:
    schema = create_app().openapi()
    seen = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for param in operation.get("parameters", []):
                if param["in"] == "query" and param["name"] in PAGE_PARAMS:
                    seen.append(f"{method} {path}")
                    assert _has_maximum(param["schema"]), f"{method} {path} {param['name']}"
    assert len(seen) >= 3


def test_a_page_size_over_the_cap_is_422(cdp_env: CdpEnv, client: TestClient) -> None:
    made = make_principal(cdp_env.runtime, ["analyst"])
    headers = {"Authorization": f"Bearer {made.token}", "X-Purpose": "analytics"}
    r = client.get(f"/v1/profiles/{'a' * 32}/orders?limit=201", headers=headers)
    body = assert_error(r, 422, "validation_failed")
    assert body["error"]["details"][0]["loc"] == "query.limit"


def test_framework_errors_share_the_shape(cdp_env: CdpEnv, client: TestClient) -> None:
    assert_error(client.get("/no/such/route"), 404, "not_found")
    assert_error(client.delete("/healthz"), 405, "method_not_allowed")
    assert_error(client.get("/v1/principals"), 401, "unauthenticated")


def test_openapi_documents_the_error_body_everywhere() -> None:
    schema = create_app().openapi()
    assert schema["components"]["schemas"]["ErrorBody"] == ERROR_SCHEMA
    for item in schema["paths"].values():
        for operation in item.values():
            default = operation["responses"]["default"]["content"]["application/json"]
            assert default["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
            if "422" in operation["responses"]:
                assert operation["responses"]["422"]["content"] == {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                }


@pytest.mark.parametrize("declared", ["abc", "-1", "1e3", ""])
def test_a_content_length_that_is_not_a_number_is_400(
    cdp_env: CdpEnv, client: TestClient, declared: str
) -> None:
    r = client.post(
        "/v1/principals", content=b"{}", headers={**_admin(cdp_env), "Content-Length": declared}
    )
    assert_error(r, 400, "http_error")
    assert "Content-Length" in r.json()["error"]["message"]
