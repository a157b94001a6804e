"""Free text holds no control characters (tab and line breaks aside): a NUL in a product name, an
event name or a consent source is a per-row reject naming the field, on SQLite and PostgreSQL
alike. PostgreSQL text cannot hold a NUL at all: such a row used to fail the whole run there
(COPY raised ``DataError``, an internal error) while SQLite stored it."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cdp.clock import FrozenClock
from cdp.ingest.customer_record import CustomerRecord
from cdp.ingest.pipeline import ingest_file
from cdp.ingest.records import ConsentRecord, EventRecord, OrderRecord
from tests.conftest import CdpEnv
from tests.factories import make_subject
from tests.ingest.helpers import CUSTOMER_HEADER, count, customer, order, write_csv, write_jsonl

ITEM = {"product_id": "P1", "sku": "P1-S", "category": "apparel", "name": "Shirt",
        "price": "1.00", "quantity": 1}  # fmt: skip
CONSENT = {"customer_id": "C1", "purpose": "analytics", "status": "granted",
           "occurred_at": "2025-01-01T00:00:00Z", "source": "web",
           "notice_version": "v1"}  # fmt: skip
EVENT = {"customer_id": "C1", "event": "Viewed", "type": "page",
         "timestamp": "2025-01-01T00:00:00Z"}  # fmt: skip


CLOCK = FrozenClock(datetime(2025, 6, 1, tzinfo=UTC))
"""After the records' times, within every retention window (the real clock would age them)."""


def _rejects(path: Path | None) -> dict[int, tuple[str, list[str], str]]:
    assert path is not None
    rows = map(json.loads, path.read_text(encoding="utf-8").splitlines())
    return {r["line"]: (r["reason"], r["fields"], r["message"]) for r in rows}


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    """CSV (items as one JSON cell, as shops export them) or JSON Lines, by the suffix."""
    if path.suffix == ".jsonl":
        return write_jsonl(path, rows)
    header = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    return path


# (kind, good record, the bad one, the rejected field)
_CASES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    *[
        ("orders", order(1, items=[ITEM]), order(2, items=[{**ITEM, name: "a\x00b"}]),
         f"items.0.{name}")
        for name in ("name", "category", "sku", "product_id")
    ],
    ("events", EVENT, {**EVENT, "event": "View\x00ed"}, "event"),
    ("consents", CONSENT, {**CONSENT, "source": "web\x00", "status": "withdrawn"}, "source"),
    ("consents", CONSENT, {**CONSENT, "notice_version": "\x00v2", "status": "withdrawn"},
     "notice_version"),
    ("customers", customer(1), customer(2, first_name="An\x00na"), "first_name"),
    ("customers", customer(1), customer(2, city="Spring\x00field"), "address.city"),
    ("customers", customer(1), customer(2, loyalty="gold\x00"), "traits"),
]  # fmt: skip


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
@pytest.mark.parametrize(
    ("kind", "good", "bad", "field"), _CASES, ids=[f"{k}-{f}" for k, _, _, f in _CASES]
)
def test_a_nul_in_free_text_rejects_its_row_and_the_rest_goes_in(
    cdp_env: CdpEnv,
    tmp_path: Path,
    suffix: str,
    kind: str,
    good: dict[str, Any],
    bad: dict[str, Any],
    field: str,
) -> None:
    path = _write(tmp_path / f"{kind}{suffix}", [good, bad])
    summary = ingest_file(runtime=cdp_env.runtime, kind=kind, path=path, clock=CLOCK)
    assert (summary.read, summary.inserted, summary.rejected) == (2, 1, 1)
    line = 3 if suffix == ".csv" else 2
    reason, fields, message = _rejects(summary.rejects_path)[line]
    assert (reason, fields) == ("invalid", [field])
    assert "control characters" in message and "\x00" not in message


def test_nothing_of_a_rejected_row_is_stored_and_the_good_rows_are(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rows = [order(1, items=[ITEM]), order(2, items=[{**ITEM, "name": "Sh\x00irt"}]), order(3)]
    summary = ingest_file(
        runtime=cdp_env.runtime, kind="orders", path=write_jsonl(tmp_path / "o.jsonl", rows)
    )
    assert (summary.inserted, summary.rejected) == (2, 1)
    rt = cdp_env.runtime
    assert count(rt, "orders") == 2 and count(rt, "order_items") == 2
    assert count(rt, "orders", "WHERE order_ref = 'O000002'") == 0


def test_tabs_and_line_breaks_in_free_text_are_kept(cdp_env: CdpEnv, tmp_path: Path) -> None:
    """Multi-line streets and product names exist; only the other control characters go."""
    rows = [customer(1, street="21 Nelson Terrace\nApt 14", last_name="May\tJr")]
    path = write_csv(tmp_path / "customers.csv", rows, CUSTOMER_HEADER)
    assert ingest_file(runtime=cdp_env.runtime, kind="customers", path=path).inserted == 1
    items = [{**ITEM, "name": "Shirt\tXL", "category": "a\r\nb"}]
    path = write_jsonl(tmp_path / "orders.jsonl", [order(1, items=items)])
    assert ingest_file(runtime=cdp_env.runtime, kind="orders", path=path).inserted == 1


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x7f", "\x85", "\x9f"])
def test_every_control_character_but_tab_and_line_breaks_is_refused(char: str) -> None:
    from pydantic import ValidationError

    for model, data in [
        (OrderRecord, order(1, items=[{**ITEM, "name": f"a{char}b"}])),
        (EventRecord, {**EVENT, "event": f"a{char}b"}),
        (ConsentRecord, {**CONSENT, "source": f"a{char}b"}),
        (CustomerRecord, customer(1, gender=f"a{char}b")),
    ]:
        with pytest.raises(ValidationError, match="control characters"):
            model.model_validate(data)
    for fine in ("\t", "\n", "\r", "\xa0", "\u200d", "中"):
        EventRecord.model_validate({**EVENT, "event": f"a{fine}b"})


def test_the_demo_shop_loses_no_row_to_the_rule(cdp_env: CdpEnv, tmp_path: Path) -> None:
    from cdp.demo import generate_shop

    shop = generate_shop(tmp_path, customers=300, orders=600, events=300, seed=11)
    for path, kind in [
        (shop.customers, "customers"),
        (shop.orders, "orders"),
        (shop.consents, "consents"),
        (shop.events, "events"),
    ]:
        summary = ingest_file(runtime=cdp_env.runtime, kind=kind, path=path)
        if summary.rejects_path is not None:
            messages = [m for _, _, m in _rejects(summary.rejects_path).values()]
            assert not [m for m in messages if "control characters" in m]


def test_the_consent_service_refuses_control_characters(cdp_env: CdpEnv) -> None:
    from datetime import UTC, datetime

    from cdp.consent import service
    from cdp.errors import InvalidInputError

    rt = cdp_env.runtime
    sid = make_subject(rt)
    at = datetime(2025, 1, 1, tzinfo=UTC)
    base = {"runtime": rt, "subject_id": sid, "purpose": "analytics", "status": "granted",
            "occurred_at": at, "source": "cli", "mechanism": "cli",
            "recorded_by": "me"}  # fmt: skip
    for name in ("source", "notice_version", "recorded_by"):
        with pytest.raises(InvalidInputError, match="control characters") as caught:
            service.record_consent(**{**base, name: "x\x00y"})
        assert caught.value.field == name
    assert count(rt, "consent_events") == 0
    assert service.record_consent(**{**base, "notice_version": "v1\tdraft"})
