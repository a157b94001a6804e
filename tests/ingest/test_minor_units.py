"""An amount must be a whole number of its currency's minor units (ISO 4217: JPY 0 decimals, USD
2, KWD 3): a finer one is rejected, naming the field and the minor unit, instead of being rounded
silently (JPY 10.5 was stored as 10, USD 10.555 as 10.56)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cdp.api.app import create_app
from cdp.ingest.fastpath import fast_order
from cdp.ingest.money import exponent, to_minor
from cdp.ingest.pipeline import ingest_file
from cdp.ingest.records import OrderRecord
from cdp.ingest.sources import create_source
from tests.conftest import CdpEnv
from tests.ingest.helpers import count, fast_matches_model, order, write_jsonl


def _totals(env: CdpEnv) -> dict[str, int]:
    with env.runtime.data_engine.connect() as conn:
        return dict(conn.exec_driver_sql("SELECT order_ref, total_minor FROM orders").all())


def test_amounts_finer_than_the_minor_unit_are_rejected_not_rounded(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    def item(price: str) -> list[dict[str, Any]]:
        return [{"product_id": "P1", "price": price, "quantity": 1}]

    rows = [
        order(1, currency="JPY", total="10.5", items=item("10")),
        order(2, currency="USD", total="10.555", items=item("10.00")),
        order(3, currency="USD", total="10.50", items=item("10.500000")),  # trailing zeros: fine
        order(4, currency="JPY", total="1200", items=item("1200.0")),
        order(5, currency="USD", total="10.00", discount="0.005", items=item("10")),
        order(6, currency="USD", total="10.00", items=[*item("4"), *item("6.001")]),
        order(7, currency="USD", total=10, items=item("10")),  # an integer amount
    ]
    path = write_jsonl(tmp_path / "orders.jsonl", rows)
    summary = ingest_file(runtime=cdp_env.runtime, kind="orders", path=path)
    assert (summary.read, summary.inserted, summary.rejected) == (7, 3, 4)
    assert summary.rejects_path is not None
    rejects = {r["line"]: r for r in map(json.loads, summary.rejects_path.read_text().splitlines())}
    assert {n: (r["reason"], r["fields"]) for n, r in rejects.items()} == {
        1: ("invalid", ["total"]),
        2: ("invalid", ["total"]),
        5: ("invalid", ["discount"]),
        6: ("invalid", ["items"]),
    }
    assert "minor unit of JPY (0 decimal places)" in rejects[1]["message"]
    assert "minor unit of USD (2 decimal places)" in rejects[2]["message"]
    assert "item 1" in rejects[6]["message"]
    assert "10.5" not in json.dumps(rejects)  # names the rule, never the value
    assert _totals(cdp_env) == {"O000003": 1050, "O000004": 1200, "O000007": 1000}


def test_a_three_decimal_currency_keeps_its_third_decimal(cdp_env: CdpEnv, tmp_path: Path) -> None:
    item = [{"price": "1.234", "quantity": 1}]
    rows = [
        order(1, currency="KWD", total="1.234", items=item),
        order(2, currency="KWD", total="1.2345", items=item),
    ]
    ctx = {"currencies": {"KWD"}, "latest_time": datetime.now(UTC)}
    assert OrderRecord.model_validate(rows[0], context=ctx).total == Decimal("1.234")
    with pytest.raises(ValidationError, match=r"minor unit of KWD \(3 decimal places\)"):
        OrderRecord.model_validate(rows[1], context=ctx)
    assert to_minor(Decimal("1.234"), "KWD") == 1234


def test_to_minor_refuses_to_round() -> None:
    with pytest.raises(ValueError, match="minor unit of JPY"):
        to_minor(Decimal("10.5"), "JPY")
    assert to_minor(Decimal("10.50"), "USD") == 1050


@pytest.fixture
def client(cdp_env: CdpEnv) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


def test_the_segment_api_answers_400_for_an_amount_finer_than_the_minor_unit(
    client: TestClient, cdp_env: CdpEnv
) -> None:
    key = create_source(runtime=cdp_env.runtime, name="web").write_key
    good = {"order_id": "S1", "revenue": "10.50", "currency": "USD"}
    fine = {"order_id": "S2", "revenue": "10.555", "currency": "USD"}
    batch = [
        {"type": "track", "userId": "u1", "event": "Order Completed", "properties": good},
        {"type": "track", "userId": "u1", "event": "Order Completed", "properties": fine},
    ]
    response = client.post("/v1/batch", json={"batch": batch}, auth=(key, ""))
    assert response.status_code == 400, response.text
    details = response.json()["error"]["details"]
    # (the amount's field: the record's name, or the sender's where the mapping names it)
    assert [d["loc"] for d in details] in (
        ["batch.1.properties.total"],
        ["batch.1.properties.revenue"],
    ), details
    assert "minor unit of USD" in details[0]["msg"]
    assert _totals(cdp_env) == {"S1": 1050}
    assert count(cdp_env.runtime, "events", "WHERE name = 'Order Completed'") >= 1


CURRENCIES = ["USD", "JPY", "KWD", "CNY"]
CONTEXT = {"currencies": frozenset(CURRENCIES), "latest_time": datetime(2030, 1, 1, tzinfo=UTC)}
AMOUNTS = st.decimals(min_value=0, max_value=10**9, places=6, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    currency=st.sampled_from(CURRENCIES),
    total=AMOUNTS,
    discount=AMOUNTS,
    price=AMOUNTS,
    as_text=st.booleans(),
)
def test_an_amount_is_accepted_exactly_when_it_is_whole_minor_units_and_stored_exactly(
    currency: str, total: Decimal, discount: Decimal, price: Decimal, as_text: bool
) -> None:
    def show(d: Decimal) -> str:
        return format(d, "f") if as_text else format(d.normalize(), "f")

    data = {
        "order_id": "O1",
        "customer_id": "C1",
        "ordered_at": "2025-01-01T00:00:00Z",
        "total": show(total),
        "currency": currency,
        "discount": show(discount),
        "items": [{"price": show(price), "quantity": 1}],
    }
    scale = Decimal(10) ** exponent(currency)
    whole = all((a * scale) % 1 == 0 for a in (total, discount, price))
    fast_matches_model(fast_order, OrderRecord, data, CONTEXT)  # the fast path agrees
    try:
        record = OrderRecord.model_validate(data, context=CONTEXT)
    except ValidationError:
        assert not whole
        assert fast_order(data, CONTEXT) is None
        return
    assert whole
    assert to_minor(record.total, currency) == int(total * scale)
    assert to_minor(record.discount, currency) == int(discount * scale)
    assert to_minor(record.items[0].price, currency) == int(price * scale)
