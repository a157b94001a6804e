"""The customer fast path accepts only what the model accepts, and builds the same record."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.consent.service import CLOCK_SKEW
from cdp.demo import generate_shop
from cdp.ingest.customer_record import ADDRESS_FIELDS, Address, CustomerRecord
from cdp.ingest.fast_customer import _ADDRESS_LIMITS, fast_customer
from tests.ingest.helpers import UNUSUAL_TEXT, fast_matches_model

CONTEXT: dict[str, Any] = {"default_region": "US", "latest_time": datetime.now(UTC) + CLOCK_SKEW}


def _same(data: dict[str, Any]) -> bool:
    """fast_customer(data) is None, or equals the model's record in every field and type."""
    got = fast_matches_model(fast_customer, CustomerRecord, data, CONTEXT)
    if got is None:
        return False
    assert isinstance(got, CustomerRecord)
    assert got.pii() == CustomerRecord.model_validate(data, context=CONTEXT).pii()
    return True


PLAIN: dict[str, Any] = {
    "customer_id": "C000002",
    "email": "Kayla_May35764@icloud.com",
    "phone": "(215) 237-3934",
    "first_name": "Kayla",
    "last_name": "May",
    "birthday": "2005-12-05",
    "gender": "",
    "street": "21 Nelson Terrace, Apt 14",
    "city": "West Raymondview",
    "postal_code": "34507",
    "state": "NM",
    "country": "US",
    "created_at": "2024-11-01T01:33:35Z",
    "loyalty_opt_in": "true",
    "acquisition_channel": "paid_search",
}


def test_address_limits_are_the_models() -> None:
    for name in ADDRESS_FIELDS:
        assert _ADDRESS_LIMITS[name] == Address.model_fields[name].metadata[0].max_length


def test_plain_rows_take_the_fast_path() -> None:
    assert _same(PLAIN)
    assert _same({**PLAIN, "country": "JP", "phone": "080-2013-6001", "state": ""})
    assert _same({k: v for k, v in PLAIN.items() if k not in ("street", "city", "country")})
    assert _same({"email": "a@b.co"})  # no address, no traits
    assert _same({**PLAIN, "gender": " "})  # a blank cell is absent


def test_anything_unusual_falls_back_to_the_model() -> None:
    cases = [
        {**PLAIN, "email": "not-an-email"},
        {**PLAIN, "customer_id": " C1"},  # to be trimmed
        {**PLAIN, "customer_id": "=HYPERLINK(1)"},  # formula
        {**PLAIN, "customer_id": "", "email": "", "phone": ""},  # no identity
        {**PLAIN, "birthday": "2024-02-30"},  # impossible date
        {**PLAIN, "birthday": "1899-12-31"},  # out of range
        {**PLAIN, "created_at": "2024-11-01 01:33:35"},  # unusual timestamp
        {**PLAIN, "phone": "12"},
        {**PLAIN, "city": "x" * 129},
        {**PLAIN, "notes": "y" * 1025},  # an over-long custom trait
        {**PLAIN, "address": {"city": "Paris"}},  # nested (JSON) shape
        {**PLAIN, "loyalty_opt_in": True},  # a typed JSON value
        {**PLAIN, "first_name": "Kay\ud800"},  # a lone surrogate
        {**PLAIN, "city": "West\x00Raymondview"},  # a control character
        {**PLAIN, "acquisition_channel": "paid\ud800"},  # in a custom trait
        {**PLAIN, "street": "21 Nelson Terrace\nApt 14"},  # a line break: the model decides
    ]
    for data in cases:
        assert fast_customer(data, CONTEXT) is None
        _same(data)


def test_demo_shop_rows_all_take_the_fast_path_and_match(tmp_path: Path) -> None:
    shop = generate_shop(tmp_path, customers=400, orders=10, events=0, seed=5)
    with shop.customers.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    taken = sum(_same(row) for row in rows)
    assert taken >= 0.95 * len(rows)  # the generator writes a few deliberately odd rows


_cell = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "A1", " a ", "=1+1", "x" * 300, "C\x00", "中文", "+1", "JP", "us"]),
    st.sampled_from(UNUSUAL_TEXT),
    st.text(max_size=8),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=8),  # surrogates too
)
_row = st.fixed_dictionaries(
    {},
    optional={
        "customer_id": _cell,
        "anonymous_id": _cell,
        "email": st.one_of(_cell, st.sampled_from(["a@b.co", " A@B.CO", "a@b", "x@bücher.de"])),
        "phone": st.one_of(
            _cell, st.sampled_from(["+14155552671", "4155552671", "03-1234-5678", "020 7946 0958"])
        ),
        "first_name": _cell,
        "last_name": _cell,
        "gender": _cell,
        "birthday": st.one_of(_cell, st.dates().map(str), st.sampled_from(["2001-02-29"])),
        "created_at": st.one_of(
            _cell,
            st.datetimes().map(lambda d: d.isoformat() + "Z"),
            st.sampled_from(["2024-11-01T01:33:35+09:00", "2024-11-01"]),
        ),
        "street": _cell,
        "city": _cell,
        "postal_code": _cell,
        "state": _cell,
        "country": st.one_of(_cell, st.sampled_from(["US", "JP", "GB", "Germany", "cn"])),
        "loyalty_opt_in": st.one_of(_cell, st.booleans(), st.integers()),
        "x" * 70: _cell,
    },
)


@settings(max_examples=500, deadline=None)
@given(_row)
def test_fast_path_agrees_with_the_model(data: dict[str, Any]) -> None:
    _same(data)
