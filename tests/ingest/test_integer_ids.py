"""Identifiers sent as JSON integers (``{"customer_id": 12345}``, as shop exports write them) are
their decimal text: the same record from a CSV cell ``"12345"`` and from JSON Lines ``12345``
names the same subject, order, product and event, so one is a duplicate of the other. An integral
float below 2**53 is its integer; a bool, a float with a fraction or beyond 2**53, or a number too
long for an id is refused (the rule is named, never the value)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from cdp.clock import FrozenClock
from cdp.ingest.customer_record import CustomerRecord
from cdp.ingest.fastpath import fast_order
from cdp.ingest.pipeline import ingest_file
from cdp.ingest.records import ConsentRecord, EventRecord, LineItem, OrderRecord
from cdp.runtime import Runtime
from tests.conftest import CdpEnv
from tests.ingest.helpers import count, fast_matches_model, write_csv, write_jsonl
from tests.ingest.test_fastpath import CONTEXT

CUSTOMER = {"customer_id": 12345, "email": "int-id@example.com", "first_name": "Ann"}
ORDER = {
    "order_id": 777001,
    "customer_id": 12345,
    "ordered_at": "2025-03-04T05:06:07Z",
    "total": "10.00",
    "currency": "USD",
    "items": [{"product_id": 42, "sku": 4200, "price": "10.00", "quantity": 1}],
}
CONSENT = {
    "customer_id": 12345,
    "purpose": "email_marketing",
    "status": "granted",
    "occurred_at": "2025-03-04T05:06:07Z",
}
EVENT = {
    "message_id": 9001,
    "customer_id": 12345,
    "event": "Product Viewed",
    "timestamp": "2025-03-04T05:06:07Z",
}
CLOCK = FrozenClock(datetime(2025, 6, 1, tzinfo=UTC))
"""After the records' times, within every retention window (the real clock would age them)."""
KINDS: list[tuple[str, dict[str, Any]]] = [
    ("customers", CUSTOMER),
    ("orders", ORDER),
    ("consents", CONSENT),
    ("events", EVENT),
]


def _as_csv_row(row: dict[str, Any]) -> dict[str, Any]:
    import json

    return {
        k: json.dumps(v) if isinstance(v, list) else "" if v is None else str(v)
        for k, v in row.items()
    }


def _tokens(rt: Runtime) -> list[tuple[str, str]]:
    with rt.data_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT kind, token FROM identities ORDER BY kind, token"))
        return [(r[0], r[1]) for r in rows]


@pytest.mark.parametrize(("kind", "row"), KINDS)
def test_json_integer_ids_are_ingested(
    cdp_env: CdpEnv, tmp_path: Path, kind: str, row: dict[str, Any]
) -> None:
    path = write_jsonl(tmp_path / f"{kind}.jsonl", [row])
    summary = ingest_file(runtime=cdp_env.runtime, kind=kind, path=path, clock=CLOCK)
    assert (summary.read, summary.rejected, summary.inserted) == (1, 0, 1), summary.reasons


@pytest.mark.parametrize("csv_first", [True, False])
@pytest.mark.parametrize(("kind", "row"), KINDS)
def test_a_csv_cell_and_a_json_integer_name_the_same_thing(
    cdp_env: CdpEnv, tmp_path: Path, kind: str, row: dict[str, Any], csv_first: bool
) -> None:
    rt = cdp_env.runtime
    csv_path = write_csv(tmp_path / f"{kind}.csv", [_as_csv_row(row)], list(row))
    jsonl_path = write_jsonl(tmp_path / f"{kind}.jsonl", [row])
    first, second = (csv_path, jsonl_path) if csv_first else (jsonl_path, csv_path)
    one = ingest_file(runtime=rt, kind=kind, path=first, clock=CLOCK)
    assert (one.rejected, one.inserted) == (0, 1), one.reasons
    tokens = _tokens(rt)
    subjects = count(rt, "subjects")
    two = ingest_file(runtime=rt, kind=kind, path=second, clock=CLOCK)
    assert (two.rejected, two.inserted, two.updated, two.duplicates) == (0, 0, 0, 1), two.reasons
    assert _tokens(rt) == tokens  # the same identity tokens, no new ones
    assert count(rt, "subjects") == subjects
    if kind == "orders":
        with rt.data_engine.connect() as conn:
            refs = conn.execute(sa.text("SELECT order_ref FROM orders")).scalars().all()
            products = conn.execute(sa.text("SELECT product_id, sku FROM order_items")).all()
        assert refs == ["777001"]
        assert [tuple(p) for p in products] == [("42", "4200")]
    if kind == "events":
        with rt.data_engine.connect() as conn:
            ids = conn.execute(sa.text("SELECT message_id FROM events")).scalars().all()
        assert ids == ["9001"]


ID_FIELDS: list[tuple[type[BaseModel], str, dict[str, Any]]] = [
    (CustomerRecord, "customer_id", {}),
    (CustomerRecord, "anonymous_id", {"customer_id": "C1"}),
    (OrderRecord, "order_id", {k: v for k, v in ORDER.items() if k != "order_id"}),
    (OrderRecord, "customer_id", {k: v for k, v in ORDER.items() if k != "customer_id"}),
    (OrderRecord, "anonymous_id", ORDER),
    (OrderRecord, "coupon", ORDER),
    (ConsentRecord, "customer_id", {k: v for k, v in CONSENT.items() if k != "customer_id"}),
    (ConsentRecord, "anonymous_id", CONSENT),
    (EventRecord, "message_id", {k: v for k, v in EVENT.items() if k != "message_id"}),
    (EventRecord, "customer_id", {k: v for k, v in EVENT.items() if k != "customer_id"}),
    (EventRecord, "anonymous_id", EVENT),
    (LineItem, "product_id", {}),
    (LineItem, "sku", {}),
]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(ID_FIELDS), st.integers(min_value=0, max_value=10**60))
def test_an_integer_id_equals_its_decimal_text(
    case: tuple[type[BaseModel], str, dict[str, Any]], n: int
) -> None:
    model, name, rest = case
    as_int = model.model_validate({**rest, name: n}, context=CONTEXT)
    as_text = model.model_validate({**rest, name: str(n)}, context=CONTEXT)
    assert as_int == as_text
    assert getattr(as_int, name) == str(n)


@pytest.mark.parametrize("case", ID_FIELDS)
@pytest.mark.parametrize(
    "value", [True, False, 1.5, -0.25, 1e20, 2.0**53, float("nan"), float("inf"), -7, 10**300]
)
def test_other_numbers_are_refused_without_their_value(
    case: tuple[type[BaseModel], str, dict[str, Any]], value: Any
) -> None:
    model, name, rest = case
    with pytest.raises(ValidationError) as caught:
        model.model_validate({**rest, name: value}, context=CONTEXT)
    errors = caught.value.errors(include_url=False, include_input=False)
    assert any(name in e["loc"] for e in errors), errors
    said = " ".join(str(e["msg"]) for e in errors)  # (str() adds pydantic's "information" URL)
    assert str(value) not in said and str(value).lower() not in said


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(ID_FIELDS), st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1))
def test_an_exact_integral_float_is_its_integer(
    case: tuple[type[BaseModel], str, dict[str, Any]], n: int
) -> None:
    model, name, rest = case
    if str(n).startswith("-"):  # like the text "-5": refused as a formula
        with pytest.raises(ValidationError):
            model.model_validate({**rest, name: float(n)}, context=CONTEXT)
        return
    as_float = model.model_validate({**rest, name: float(n)}, context=CONTEXT)
    assert getattr(as_float, name) == str(n)


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "order_id": st.one_of(st.integers(min_value=-3, max_value=10**40), st.booleans()),
            "customer_id": st.one_of(st.integers(min_value=-3, max_value=10**20), st.just("C")),
            "product_id": st.one_of(st.integers(min_value=-3, max_value=10**20), st.floats()),
            "coupon": st.one_of(st.none(), st.integers(min_value=-3, max_value=10**70)),
        }
    )
)
def test_the_fast_path_agrees_with_the_model_on_integer_ids(ids: dict[str, Any]) -> None:
    item = {"product_id": ids.pop("product_id"), "price": "1.00"}
    data = {**ORDER, **ids, "items": [item]}
    fast_matches_model(fast_order, OrderRecord, data, CONTEXT)


def test_plain_integer_ids_take_the_fast_path() -> None:
    record = fast_matches_model(fast_order, OrderRecord, ORDER, CONTEXT)
    assert isinstance(record, OrderRecord)
    assert (record.order_id, record.customer_id) == ("777001", "12345")
