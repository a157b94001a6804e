"""Malformed Segment messages are answered 400 with reasons, never a server error, and the
reasons name no key or value the sender chose."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cdp.jsonio import MAX_DEPTH
from tests.conftest import CdpEnv
from tests.ingest.helpers import count


def _post(client: TestClient, key: str, path: str, body: Any) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        path, content=raw, auth=(key, ""), headers={"Content-Type": "application/json"}
    )


ORDER = {"type": "track", "userId": "u", "event": "Order Completed"}


@pytest.mark.parametrize(
    ("path", "message", "loc"),
    [
        ("/v1/identify", {"type": "identify", "userId": "u", "context": {"traits": "x"}},
         "context.traits"),
        ("/v1/identify", {"type": "identify", "userId": "u", "context": {"traits": [1]}},
         "context.traits"),
        ("/v1/track", {**ORDER, "properties": {"order_id": "o", "total": 1, "products": 5}},
         "properties.products"),
        ("/v1/track", {**ORDER, "properties": {"order_id": "o", "total": 1, "products": True}},
         "properties.products"),
    ],
)  # fmt: skip
def test_a_malformed_message_gets_400(
    client: TestClient, key: str, path: str, message: dict[str, Any], loc: str
) -> None:
    response = _post(client, key, path, message)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_messages"
    assert any(d["loc"].endswith(loc) for d in error["details"]), error["details"]


def test_a_sent_at_without_a_zone_is_utc(client: TestClient, key: str, cdp_env: CdpEnv) -> None:
    message = {
        "type": "track",
        "userId": "u",
        "event": "x",
        "originalTimestamp": "2026-03-01T10:00:00Z",
        "sentAt": "2026-03-01T10:00:01",
    }
    assert _post(client, key, "/v1/track", message).status_code == 200
    assert count(cdp_env.runtime, "events") == 1


@pytest.mark.parametrize("depth", [MAX_DEPTH + 10, 1100])
def test_a_body_nested_too_deep_gets_400(client: TestClient, key: str, depth: int) -> None:
    nested = b"[" * depth + b"]" * depth
    message = b'{"type":"track","userId":"u","event":"x","properties":{"a":' + nested + b"}}"
    for path, body in (
        ("/v1/track", b"[" * depth + b"]" * depth),
        ("/v1/track", message),
        ("/v1/batch", b'{"batch":[' + message + b"]}"),
    ):
        response = _post(client, key, path, body)
        assert response.status_code == 400, (path, response.status_code)


def test_a_nesting_within_the_limit_is_stored(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    inner: Any = 1
    for _ in range(MAX_DEPTH - 2):  # the message and its properties are two levels
        inner = [inner]
    message = {"type": "track", "userId": "u", "event": "x", "properties": {"a": inner}}
    assert _post(client, key, "/v1/track", message).status_code == 200
    assert count(cdp_env.runtime, "events") == 1


def test_a_trait_key_is_not_echoed(client: TestClient, key: str) -> None:
    secret = "Alice Liddell +14155550123"
    message = {"type": "identify", "userId": "u", "traits": {secret: "\ud800"}}
    response = _post(client, key, "/v1/identify", message)
    assert response.status_code == 400
    assert "Alice" not in response.text and "14155550123" not in response.text


def test_an_event_from_a_fast_device_clock_is_kept_dated_at_arrival(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    fast = {"type": "track", "userId": "u", "event": "x", "timestamp": "2099-01-01T00:00:00Z"}
    # a sentAt centuries off: the correction overflows, so the message's own time is used
    skewed = {
        "type": "track",
        "userId": "u",
        "event": "y",
        "originalTimestamp": "9999-12-31T10:00:00Z",
        "sentAt": "0001-01-01T00:00:00Z",
    }
    for message in (fast, skewed):
        assert _post(client, key, "/v1/track", message).status_code == 200
    with cdp_env.runtime.data_engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT occurred_at FROM events").scalars().all()
    assert len(stored) == 2
    assert not any(str(at).startswith(("2099", "9999")) for at in stored)
