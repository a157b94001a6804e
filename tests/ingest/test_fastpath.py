"""The order fast path accepts only what the model accepts, and builds the same record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.consent.service import CLOCK_SKEW
from cdp.ingest.fastpath import fast_order
from cdp.ingest.records import OrderRecord
from tests.ingest.helpers import UNUSUAL_TEXT, fast_matches_model

CONTEXT: dict[str, Any] = {
    "currencies": frozenset({"USD", "CNY", "JPY"}),
    "default_region": "US",
    "latest_time": datetime.now(UTC) + CLOCK_SKEW,
}


def _same(data: dict[str, Any]) -> bool:
    """fast_order(data) is None, or equals the model's record in every field and type."""
    return fast_matches_model(fast_order, OrderRecord, data, CONTEXT) is not None


PLAIN: dict[str, Any] = {
    "order_id": "O1",
    "customer_id": "C1",
    "ordered_at": "2024-11-04T00:32:18Z",
    "total": "272.98",
    "currency": "USD",
    "discount": "0.00",
    "coupon": None,
    "status": "refunded",
    "items": [
        {"product_id": "P1", "sku": "P1-B", "category": "home", "name": "Mug", "price": "9.5"},
        {"product_id": "P2", "price": "1", "quantity": 3},
    ],
}


def test_plain_order_takes_the_fast_path() -> None:
    assert _same(PLAIN)
    assert _same({**PLAIN, "items": '[{"product_id": "P3", "price": "2.50", "quantity": 2}]'})
    assert _same({k: v for k, v in PLAIN.items() if k not in ("discount", "status", "items")})
    assert _same({**PLAIN, "email": "A@Example.COM", "phone": "+14155552671", "total": 12})
    assert _same({**PLAIN, "currency": "usd"})  # upper-cased like the model does


def test_anything_unusual_falls_back_to_the_model() -> None:
    cases = [
        {**PLAIN, "total": "-1"},  # negative
        {**PLAIN, "total": 1.5},  # float
        {**PLAIN, "currency": "XXX"},  # unknown currency
        {**PLAIN, "ordered_at": "2024-02-30T00:00:00Z"},  # impossible date
        {**PLAIN, "ordered_at": "1899-12-31T00:00:00Z"},  # out of range
        {**PLAIN, "order_id": " O1"},  # to be trimmed
        {**PLAIN, "order_id": "=cmd|' /C calc'!A0"},  # formula
        {**PLAIN, "customer_id": None},  # no identity
        {**PLAIN, "email": "not-an-email"},
        {**PLAIN, "status": "lost"},
        {**PLAIN, "extra": "x"},
        {**PLAIN, "items": [{"price": "1", "quantity": 0}]},
        {**PLAIN, "items": [{"price": "1", "quantity": True}]},
        {**PLAIN, "items": "not json"},
        {**PLAIN, "coupon": ""},  # blank cell
        {**PLAIN, "items": [{"name": "Mug\ud800", "price": "1"}]},  # a lone surrogate
        {**PLAIN, "items": [{"category": "home\x00", "price": "1"}]},  # a control character
        {**PLAIN, "items": [{"name": "Mug\tXL", "price": "1"}]},  # a tab: the model decides
    ]
    for data in cases:
        assert fast_order(data, CONTEXT) is None
        _same(data)


_text = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "A1", " a ", "=1+1", "x" * 300, "C\x00", "中文", "+1"]),
    st.sampled_from(UNUSUAL_TEXT),
    st.text(max_size=8),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=8),  # surrogates too
)
_money = st.one_of(
    st.none(),
    st.sampled_from(["0", "00.1", "1.", ".5", "1e3", "NaN", "-0", "12.3456789", "1" * 19]),
    st.from_regex(r"\A(0|[1-9]\d{0,13})(\.\d{0,7})?\Z"),
    st.integers(min_value=-5, max_value=10**13),
    st.floats(allow_nan=True),
)
_time = st.one_of(
    st.sampled_from(
        ["2024-11-04 00:32:18", "2024-11-04T00:32:18", "2024-11-04", "20241104T003218Z"]
    ),
    st.from_regex(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?(Z|[+-]\d{2}:\d{2})?\Z"),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
)
_item = st.dictionaries(
    st.sampled_from(["product_id", "sku", "category", "name", "price", "quantity", "other"]),
    st.one_of(_text, _money, st.integers(min_value=-1, max_value=100_001), st.booleans()),
    max_size=6,
)
_order = st.fixed_dictionaries(
    {"order_id": _text, "ordered_at": _time, "total": _money},
    optional={
        "customer_id": _text,
        "anonymous_id": _text,
        "email": st.one_of(_text, st.sampled_from(["a@b.co", " A@B.CO", "a@b"])),
        "phone": st.one_of(_text, st.sampled_from(["+14155552671", "4155552671", "+1"])),
        "currency": st.one_of(_text, st.sampled_from(["USD", "CNY", "usd", "EUR"])),
        "discount": _money,
        "coupon": _text,
        "status": st.one_of(_text, st.sampled_from(["completed", "refunded", "cancelled"])),
        "items": st.one_of(st.lists(_item, max_size=3), _text),
        "updated_at": st.one_of(_time, st.none()),
    },
)


@settings(max_examples=400, deadline=None)
@given(_order)
def test_fast_path_agrees_with_the_model(data: dict[str, Any]) -> None:
    _same(data)
