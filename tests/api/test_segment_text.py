"""Control characters in a Segment message's text: a NUL in an event name, a page name, a product
name or category, or a messageId is that message's 400 reason; the request's other messages are
stored. On PostgreSQL such a message used to be a 500 that lost the whole request (text cannot
hold a NUL), on SQLite it was stored."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import CdpEnv
from tests.ingest.helpers import count


@pytest.fixture
def write_key(key: str) -> str:
    return key  # the conftest's source write key, under this module's name


def _msg(kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "messageId": str(uuid.uuid4()),
        "userId": "u-1",
        "timestamp": "2026-03-01T10:00:00+00:00",
        **fields,
    }


def _order(**product: Any) -> dict[str, Any]:
    item = {"product_id": "P1", "price": 2, "quantity": 1, "name": "Tea", "category": "grocery"}
    return _msg(
        "track",
        event="Order Completed",
        properties={"order_id": f"W-{uuid.uuid4().hex[:8]}", "total": 2, "currency": "USD",
                    "products": [{**item, **product}]},
    )  # fmt: skip


_BAD: list[tuple[str, dict[str, Any], str]] = [
    ("track", _msg("track", event="Product\x00Viewed"), "event"),
    ("page", _msg("page", name="Home\x00"), "name"),
    ("page", _msg("page", properties={"name": "Home\x00"}), "event"),
    ("track", _order(name="T\x00ea"), "properties.items.0.name"),
    ("track", _order(category="\x00grocery"), "properties.items.0.category"),
    ("identify", _msg("identify", messageId="m\x00", traits={"plan": "gold"}), "messageId"),
    ("identify", _msg("identify", traits={"firstName": "N\x00a"}), "traits.first_name"),
]


@pytest.mark.parametrize(("path", "message", "loc"), _BAD, ids=[b[2] for b in _BAD])
def test_a_nul_is_the_message_s_400_reason_not_a_500(
    client: TestClient, write_key: str, path: str, message: dict[str, Any], loc: str
) -> None:
    body = json.dumps(message).encode()
    response = client.post(
        f"/v1/{path}",
        content=body,
        auth=(write_key, ""),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_messages"
    reason = "Value error, contains control characters"
    if loc.startswith("properties.items."):  # an order's problem: its event is stored
        reason += " (the event was stored, its order was not)"
    assert error["details"] == [{"loc": f"batch.0.{loc}", "msg": reason}]


def test_a_batch_with_a_nul_message_stores_the_others(
    client: TestClient, write_key: str, cdp_env: CdpEnv
) -> None:
    batch = [
        _msg("track", event="Fine"),
        _msg("track", event="Bro\x00ken"),
        _order(name="T\x00ea"),
        _order(),
        _msg("page", name="Home"),
    ]
    response = client.post("/v1/batch", json={"batch": batch}, auth=(write_key, ""))
    assert response.status_code == 400, response.text
    assert [d["loc"] for d in response.json()["error"]["details"]] == [
        "batch.1.event",
        "batch.2.properties.items.0.name",
    ]
    rt = cdp_env.runtime
    assert count(rt, "events") == 4  # Fine, both orders' tracks, Home
    assert count(rt, "orders") == 1 and count(rt, "order_items") == 1


def test_tabs_in_names_are_kept(client: TestClient, write_key: str, cdp_env: CdpEnv) -> None:
    response = client.post(
        "/v1/track", json=_msg("track", event="Viewed\tTwice"), auth=(write_key, "")
    )
    assert response.status_code == 200, response.text
    assert count(cdp_env.runtime, "events") == 1
