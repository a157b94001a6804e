"""A lone surrogate (JSON's "\\ud800", not a character UTF-8 can encode) is refused in every text
field a record has: by the model in the field's own reject, never by an encoder halfway through a
batch. The fast paths used to take such strings as plain and the run died in encryption (a
customer's name) or in the insert (an order's line item)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from cdp.consent.service import CLOCK_SKEW
from cdp.ingest.customer_record import ADDRESS_FIELDS, CustomerRecord
from cdp.ingest.fast_customer import fast_customer
from cdp.ingest.fastpath import fast_order
from cdp.ingest.pipeline import ingest_file
from cdp.ingest.records import ConsentRecord, EventRecord, OrderRecord
from tests.conftest import CdpEnv
from tests.ingest.helpers import count, customer, order

CONTEXT: dict[str, Any] = {
    "currencies": frozenset({"USD"}),
    "default_region": "US",
    "latest_time": datetime.now(UTC) + CLOCK_SKEW,
}
LONE = "\ud800"


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """JSON Lines as a sender writes them: a lone surrogate as its escape (ASCII JSON)."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="ascii")
    return path


def _rejects(path: Path | None) -> dict[int, tuple[str, list[str]]]:
    assert path is not None
    rows = map(json.loads, path.read_text(encoding="utf-8").splitlines())
    return {r["line"]: (r["reason"], r["fields"]) for r in rows}


def test_a_lone_surrogate_in_a_customer_rejects_that_row_only(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rows = [
        customer(1),
        customer(2, first_name=f"An{LONE}na"),  # the fast path took it: a crash in encryption
        customer(3, street=LONE + " Main St"),
        customer(4, loyalty=f"gold{LONE}"),  # a custom trait
        customer(5),
    ]
    path = _jsonl(tmp_path / "customers.jsonl", rows)
    summary = ingest_file(runtime=cdp_env.runtime, kind="customers", path=path)
    assert (summary.read, summary.inserted, summary.rejected) == (5, 2, 3)
    rejects = _rejects(summary.rejects_path)
    assert rejects[2] == ("invalid", ["first_name"])
    assert rejects[3] == ("invalid", ["address.street"])
    assert rejects[4] == ("invalid", ["traits"])
    assert count(cdp_env.runtime, "subjects") == 2


def test_a_lone_surrogate_in_an_order_rejects_that_row_only(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    item = {"product_id": "P1", "price": "1.00", "quantity": 1}
    rows = [
        order(1),
        order(2, items=[{**item, "name": f"Mug{LONE}"}]),  # fast path: a crash in the insert
        order(3, items=[{**item, "category": LONE}]),
        order(4),
    ]
    path = _jsonl(tmp_path / "orders.jsonl", rows)
    summary = ingest_file(runtime=cdp_env.runtime, kind="orders", path=path)
    assert (summary.read, summary.inserted, summary.rejected) == (4, 2, 2)
    assert _rejects(summary.rejects_path) == {
        2: ("invalid", ["items.0.name"]),
        3: ("invalid", ["items.0.category"]),
    }
    assert count(cdp_env.runtime, "order_items") == 2


_TEXT_FIELDS: list[tuple[type[BaseModel], dict[str, Any], str]] = [
    *[(CustomerRecord, customer(1), name) for name in ("first_name", "last_name", "gender")],
    *[(CustomerRecord, customer(1), name) for name in ADDRESS_FIELDS],
    (CustomerRecord, customer(1), "email"),
    (CustomerRecord, customer(1), "phone"),
    (CustomerRecord, customer(1), "customer_id"),
    (CustomerRecord, customer(1), "anonymous_id"),
    (CustomerRecord, customer(1), "a_custom_trait"),
    (OrderRecord, order(1), "order_id"),
    (OrderRecord, order(1), "coupon"),
    (OrderRecord, order(1), "currency"),
    *[(OrderRecord, order(1), f"items.{n}") for n in ("product_id", "sku", "category", "name")],
    (ConsentRecord, {"customer_id": "C1", "purpose": "analytics", "status": "granted",
                     "occurred_at": "2025-01-01T00:00:00Z"}, "source"),
    (ConsentRecord, {"customer_id": "C1", "purpose": "analytics", "status": "granted",
                     "occurred_at": "2025-01-01T00:00:00Z"}, "notice_version"),
    (EventRecord, {"customer_id": "C1", "event": "Viewed",
                   "timestamp": "2025-01-01T00:00:00Z"}, "event"),
    (EventRecord, {"customer_id": "C1", "event": "Viewed",
                   "timestamp": "2025-01-01T00:00:00Z"}, "message_id"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("model", "plain", "field"), _TEXT_FIELDS, ids=[f"{m.__name__}.{f}" for m, _, f in _TEXT_FIELDS]
)
def test_every_text_field_refuses_a_lone_surrogate(
    model: type[BaseModel], plain: dict[str, Any], field: str
) -> None:
    data = json.loads(json.dumps(plain))
    if field.startswith("items."):
        data["items"][0][field.removeprefix("items.")] = f"x{LONE}"
    else:
        data[field] = f"x{LONE}"
    with pytest.raises(ValidationError):
        model.model_validate(data, context=CONTEXT)
    if model is CustomerRecord:
        assert fast_customer(data, CONTEXT) is None
    if model is OrderRecord:
        assert fast_order(data, CONTEXT) is None
