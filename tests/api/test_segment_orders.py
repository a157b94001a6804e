"""``Order Completed`` through the Segment API: a JSON float amount is rounded to the currency's
minor unit (a JavaScript cart's 0.1 + 0.2 was a 400 that lost the purchase event); a quantity of 0
is refused as in a batch file (it was stored as 1); ``total`` is taken unless null, else
``revenue``; and when only the order part is invalid, the event is stored and the order's problems
are reported (a message without an amount lost its event)."""

from __future__ import annotations

import json
import math
import uuid
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from cdp.ingest.money import EXPONENTS, exponent
from cdp.ingest.segment_models import json_amount
from tests.conftest import CdpEnv
from tests.ingest.helpers import count


def _order(**properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "u-1",
        "messageId": str(uuid.uuid4()),
        "timestamp": "2026-03-01T10:00:00+00:00",
        "properties": {"order_id": f"W-{uuid.uuid4().hex[:8]}", **properties},
    }


def _post(client: TestClient, key: str, *messages: dict[str, Any]) -> Any:
    body = json.dumps({"batch": list(messages)}).encode()
    return client.post(
        "/v1/batch", content=body, auth=(key, ""), headers={"Content-Type": "application/json"}
    )


def _stored(env: CdpEnv, ref: str) -> tuple[Any, ...] | None:
    sql = "SELECT total_minor, discount_minor, currency FROM orders WHERE order_ref = :ref"
    with env.runtime.data_engine.connect() as conn:
        row = conn.execute(sa.text(sql), {"ref": ref}).one_or_none()
    return None if row is None else tuple(row)


def _items(env: CdpEnv, ref: str) -> list[tuple[Any, ...]]:
    sql = (
        "SELECT i.price_minor, i.quantity FROM order_items i JOIN orders o ON o.id = i.order_id "
        "WHERE o.order_ref = :ref ORDER BY i.price_minor"
    )
    with env.runtime.data_engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), {"ref": ref}).all()]


@pytest.mark.parametrize(
    ("properties", "stored"),
    [
        ({"revenue": 0.1 + 0.2, "currency": "USD"}, (30, 0, "USD")),
        ({"revenue": 19.999999999999996, "currency": "EUR"}, (2000, 0, "EUR")),
        ({"total": 10.005, "discount": 0.1 + 0.2, "currency": "usd"}, (1000, 30, "USD")),
        ({"revenue": 1234.4999999999998, "currency": "JPY"}, (1234, 0, "JPY")),
        ({"revenue": 25, "currency": "GBP"}, (2500, 0, "GBP")),
        ({"revenue": "25.50", "currency": "GBP"}, (2550, 0, "GBP")),
        ({"total": None, "revenue": 7, "currency": "USD"}, (700, 0, "USD")),
        ({"total": 9, "revenue": 7, "currency": "USD"}, (900, 0, "USD")),
    ],
)
def test_order_amounts(
    client: TestClient,
    key: str,
    cdp_env: CdpEnv,
    properties: dict[str, Any],
    stored: tuple[Any, ...],
) -> None:
    message = _order(**properties)
    response = _post(client, key, message)
    assert response.status_code == 200, response.text
    assert _stored(cdp_env, message["properties"]["order_id"]) == stored
    assert count(cdp_env.runtime, "events") == 1


def test_float_prices_are_rounded_and_quantities_kept(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    products = [
        {"product_id": "P1", "price": 0.1 + 0.2, "quantity": 3},
        {"product_id": "P2", "price": 4.35},  # no quantity: one
        {"product_id": "P3", "price": 2, "quantity": None},  # null: one
    ]
    message = _order(revenue=5.85, currency="USD", products=products)
    assert _post(client, key, message).status_code == 200
    assert _items(cdp_env, message["properties"]["order_id"]) == [(30, 3), (200, 1), (435, 1)]


@pytest.mark.parametrize(
    ("properties", "loc", "msg"),
    [
        ({"revenue": 10, "products": [{"price": 10, "quantity": 0}]},
         "properties.items.0.quantity", "greater than or equal to 1"),
        ({"revenue": 10, "products": [{"price": 10, "quantity": -2}]},
         "properties.items.0.quantity", "greater than or equal to 1"),
        ({}, "properties.revenue", "an order needs total or revenue"),
        ({"total": None}, "properties.revenue", "an order needs total or revenue"),
        ({"revenue": -3}, "properties.revenue", "greater than or equal to 0"),
        ({"total": "abc"}, "properties.total", "decimal"),
        ({"revenue": 10, "currency": "XXX"}, "properties.currency", "unknown currency"),
    ],
)  # fmt: skip
def test_an_invalid_order_part_keeps_the_event_and_reports_the_order(
    client: TestClient,
    key: str,
    cdp_env: CdpEnv,
    properties: dict[str, Any],
    loc: str,
    msg: str,
) -> None:
    good = {"type": "track", "userId": "u-1", "event": "Fine", "messageId": "fine-1"}
    message = _order(**properties)
    response = _post(client, key, good, message)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["message"] == (
        "1 of 2 messages are invalid (1 of them Order Completed events stored without their"
        " order); the others were accepted"
    )
    [detail] = error["details"]
    assert detail["loc"] == f"batch.1.{loc}"
    assert msg in detail["msg"]
    assert detail["msg"].endswith("(the event was stored, its order was not)")
    assert count(cdp_env.runtime, "events") == 2
    assert count(cdp_env.runtime, "orders") == 0


def test_a_corrected_order_sent_again_is_stored_once_with_its_event(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    message = _order(products=[{"price": 10, "quantity": 0}], revenue=10)
    assert _post(client, key, message).status_code == 400
    message["properties"]["products"][0]["quantity"] = 1
    assert _post(client, key, message).status_code == 200
    assert count(cdp_env.runtime, "events") == 1
    assert _items(cdp_env, message["properties"]["order_id"]) == [(1000, 1)]


def test_an_invalid_event_refuses_the_whole_message(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    message = _order(revenue=-3, products=[{"name": "T\x00ea"}])
    message["messageId"] = "m\x00"
    response = _post(client, key, message)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "1 of 1 messages are invalid; the others were accepted"
    )
    assert count(cdp_env.runtime, "events") == 0
    assert count(cdp_env.runtime, "orders") == 0


_CURRENCIES = sorted(EXPONENTS)


@given(
    st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False),
    st.sampled_from(_CURRENCIES),
)
def test_a_float_amount_is_a_whole_number_of_minor_units_within_half_of_one(
    value: float, currency: str
) -> None:
    out = Decimal(json_amount(value, currency))
    places = exponent(currency)
    assert out == out.quantize(Decimal(1).scaleb(-places))  # a whole number of minor units
    assert abs(out - Decimal(repr(value))) <= Decimal(5).scaleb(-places - 1)


@given(st.sampled_from([math.nan, math.inf, -math.inf]), st.sampled_from(_CURRENCIES))
def test_a_non_finite_amount_is_passed_on_to_be_refused(value: float, currency: str) -> None:
    assert json_amount(value, currency) == repr(value)


@given(st.one_of(st.integers(), st.text(), st.booleans(), st.none()))
def test_integers_and_text_are_passed_on_exactly(value: Any) -> None:
    out = json_amount(value, "USD")
    assert out == (str(value) if isinstance(value, int) and not isinstance(value, bool) else value)
