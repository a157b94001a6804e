"""An ``Order Completed`` for an order id cdp already holds with other content (another total,
discount, coupon or currency) is reported — a 400 detail naming the order, its event stored, its
order not — instead of a silent 200; the same order sent again (a replay, or the shop firing the
event twice) stays a duplicate under a 200, and so does an order a later export updated (a refund).
The other messages of the request are stored. A currency change was refused by the order writer
(``currency_changed``, as in a batch file) and the refusal never reached the caller."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cdp.ingest.pipeline import ingest_file
from tests.api.test_segment_orders import _post, _stored
from tests.conftest import CdpEnv
from tests.ingest.helpers import count, order, write_jsonl

SUFFIX = "(the event was stored, its order was not)"


def _completed(ref: str, **properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "u-c",
        "messageId": str(uuid.uuid4()),
        "timestamp": "2026-03-01T10:00:00+00:00",
        "properties": {"order_id": ref, "total": 10, "currency": "USD", **properties},
    }


def _fine() -> dict[str, Any]:
    return {"type": "track", "userId": "u-c", "event": "Fine", "messageId": str(uuid.uuid4())}


@pytest.mark.parametrize(
    ("change", "loc", "words"),
    [
        ({"total": 12}, "properties.order_id", "total"),
        ({"revenue": 12, "total": None}, "properties.order_id", "total"),
        ({"discount": 1}, "properties.order_id", "discount"),
        ({"coupon": "SPRING"}, "properties.order_id", "coupon"),
        ({"currency": "EUR"}, "properties.currency", "currency"),
    ],
)
def test_a_conflicting_order_is_reported_and_the_rest_is_stored(
    client: TestClient, key: str, cdp_env: CdpEnv, change: dict[str, Any], loc: str, words: str
) -> None:
    assert _post(client, key, _completed("C-1")).status_code == 200
    response = _post(client, key, _fine(), _completed("C-1", **change))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_messages"
    assert "1 of them Order Completed events stored without their order" in error["message"]
    [detail] = error["details"]
    assert detail["loc"] == f"batch.1.{loc}"
    assert words in detail["msg"] and detail["msg"].endswith(SUFFIX)
    assert "SPRING" not in response.text
    assert _stored(cdp_env, "C-1") == (1000, 0, "USD")
    assert count(cdp_env.runtime, "events") == 3


def test_a_conflict_within_one_request_keeps_the_first(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    response = _post(client, key, _completed("C-2"), _completed("C-2", total=11))
    assert response.status_code == 400, response.text
    assert [d["loc"] for d in response.json()["error"]["details"]] == [
        "batch.1.properties.order_id"
    ]
    assert _stored(cdp_env, "C-2") == (1000, 0, "USD")
    assert count(cdp_env.runtime, "events") == 2


def test_the_same_order_again_is_a_duplicate(client: TestClient, key: str, cdp_env: CdpEnv) -> None:
    first = _completed("C-3", total="10.00", discount=0)
    assert _post(client, key, first).status_code == 200
    assert _post(client, key, first).status_code == 200  # a replay
    twice = {**_completed("C-3"), "timestamp": "2026-03-01T10:05:00+00:00"}  # a second firing
    assert _post(client, key, twice, _completed("C-3", total=10.0)).status_code == 200
    assert count(cdp_env.runtime, "orders") == 1
    assert count(cdp_env.runtime, "events") == 3


def test_an_order_a_later_export_updated_is_not_a_conflict(
    client: TestClient, key: str, cdp_env: CdpEnv, tmp_path: Path
) -> None:
    """A refund (a file row) changed the stored total: a late Order Completed is older news."""
    rows = [order(7, status="refunded", total="0", items=[])]
    ingest_file(
        runtime=cdp_env.runtime, kind="orders", path=write_jsonl(tmp_path / "o.jsonl", rows)
    )
    late = _completed("O000007", total="100.50")
    assert _post(client, key, late).status_code == 200
    assert _stored(cdp_env, "O000007") == (0, 0, "USD")


@pytest.mark.parametrize("absent", [{}, {"discount": None, "coupon": None}])
def test_an_order_completed_without_discount_or_coupon_does_not_contradict_them(
    client: TestClient, key: str, cdp_env: CdpEnv, absent: dict[str, Any]
) -> None:
    """A message that says nothing of the discount or the coupon (left out, or null) says
    nothing against the stored ones: the same order again, a duplicate under a 200. A discount
    of 0 that is given still contradicts a stored discount."""
    assert _post(client, key, _completed("C-4", discount=2, coupon="SPRING")).status_code == 200
    response = _post(client, key, _completed("C-4", **absent))
    assert response.status_code == 200, response.text
    assert _stored(cdp_env, "C-4") == (1000, 200, "USD")
    assert count(cdp_env.runtime, "orders") == 1
    given = _post(client, key, _completed("C-4", discount=0, coupon="SPRING"))
    assert given.status_code == 400, given.text
    assert "discount" in given.json()["error"]["details"][0]["msg"]
