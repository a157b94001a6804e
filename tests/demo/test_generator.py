"""The demo shop generator: formats, counts, consistency, determinism and plausible behaviour."""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import cdp.demo.chunks as chunks
from cdp.demo import DEFAULT_END, ShopFiles, generate_shop
from cdp.demo.generator import CONSENT_HEADER, CUSTOMER_HEADER

CUSTOMERS = 2_000
ORDERS = 12_000
ORDER_KEYS = [
    "order_id", "customer_id", "ordered_at", "total", "currency", "discount", "coupon", "status",
    "items",
]  # fmt: skip
ITEM_KEYS = ["product_id", "sku", "category", "name", "price", "quantity"]
CURRENCY = {"CN": "CNY", "US": "USD", "GB": "GBP", "DE": "EUR", "FR": "EUR", "JP": "JPY"}
EVENTS = {
    "Product Viewed", "Product Added", "Checkout Started", "Checked In", "Product Reviewed",
    "Email Opened", "Email Clicked",
}  # fmt: skip
PURPOSES = {
    "email_marketing", "sms_marketing", "push_marketing", "personalization", "analytics",
    "ad_audiences",
}  # fmt: skip
STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
CJK = re.compile(r"[\u4e00-\u9fff]")


@dataclass
class Shop:
    files: ShopFiles
    customers: list[dict[str, str]]
    orders: list[dict[str, Any]]
    consents: list[dict[str, str]]
    events: list[dict[str, Any]]

    def customer_of(self, record: dict[str, Any]) -> str:
        """Customer id of an order or event, resolving guest orders by normalised email."""
        if "customer_id" in record:
            return str(record["customer_id"])
        by_email = {c["email"].strip().lower(): c["customer_id"] for c in self.customers}
        return by_email[record["email"]]


def _load(files: ShopFiles) -> Shop:
    with files.customers.open(encoding="utf-8", newline="") as f:
        customers = list(csv.DictReader(f))
    with files.consents.open(encoding="utf-8", newline="") as f:
        consents = list(csv.DictReader(f))
    orders = [json.loads(line) for line in files.orders.read_text("utf-8").splitlines()]
    events = [json.loads(line) for line in files.events.read_text("utf-8").splitlines()]
    return Shop(files, customers, orders, consents, events)


def _when(stamp: str) -> datetime:
    assert STAMP.match(stamp), stamp
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    out = tmp_path_factory.mktemp("shop")
    return _load(generate_shop(out, customers=CUSTOMERS, orders=ORDERS))


def _digest(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# --- determinism ------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_whatever_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks, so that this small shop spans several of them and several workers.
    monkeypatch.setattr(chunks, "TARGET_ORDERS_PER_CHUNK", 300)
    monkeypatch.setattr(chunks, "MIN_CHUNK_CUSTOMERS", 50)
    generate_shop(tmp_path / "a", customers=400, orders=2_000, seed=11, workers=1)
    generate_shop(tmp_path / "b", customers=400, orders=2_000, seed=11, workers=1)
    generate_shop(tmp_path / "c", customers=400, orders=2_000, seed=11, workers=2)
    first = _digest(tmp_path / "a")
    assert first == _digest(tmp_path / "b")
    assert first == _digest(tmp_path / "c")
    assert set(first) == {"customers.csv", "orders.jsonl", "consents.csv", "events.jsonl"}


def test_different_seed_gives_different_files(tmp_path: Path) -> None:
    generate_shop(tmp_path / "a", customers=200, orders=800, seed=1)
    generate_shop(tmp_path / "b", customers=200, orders=800, seed=2)
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert all(a[name] != b[name] for name in a)


# --- counts and formats -----------------------------------------------------------------------


def test_counts_are_exact(shop: Shop) -> None:
    assert len(shop.customers) == shop.files.customer_count == CUSTOMERS
    assert len(shop.orders) == shop.files.order_count == ORDERS
    assert len(shop.events) == shop.files.event_count == 2 * ORDERS
    assert len(shop.consents) == shop.files.consent_count > CUSTOMERS


def test_explicit_event_count_and_tiny_shops(tmp_path: Path) -> None:
    files = generate_shop(tmp_path / "a", customers=50, orders=30, events=7)
    assert len(files.orders.read_text().splitlines()) == 30
    assert len(files.events.read_text().splitlines()) == 7
    files = generate_shop(tmp_path / "b", customers=1, orders=0)
    assert files.orders.read_text() == "" and files.events.read_text() == ""
    assert len(files.customers.read_text().splitlines()) == 2


def test_customers_csv_format(shop: Shop) -> None:
    header = shop.files.customers.read_text("utf-8").splitlines()[0]
    assert header == ",".join(CUSTOMER_HEADER)
    ids = [c["customer_id"] for c in shop.customers]
    assert ids == [f"C{k:06d}" for k in range(1, CUSTOMERS + 1)]
    for c in shop.customers:
        assert None not in c and all(v is not None for v in c.values()), c
        assert c["country"] in CURRENCY
        assert c["gender"] in {"female", "male", "other", ""}
        assert c["birthday"] == "" or date.fromisoformat(c["birthday"]) < date(2010, 1, 1)
        assert c["loyalty_opt_in"] in {"true", "false"}
        assert c["acquisition_channel"]
        assert "@" in c["email"] and c["first_name"] and c["last_name"] and c["street"]
        _when(c["created_at"])
    empty_birthdays = sum(c["birthday"] == "" for c in shop.customers) / CUSTOMERS
    assert 0.12 < empty_birthdays < 0.28
    assert set(CURRENCY) == {c["country"] for c in shop.customers}
    countries = Counter(c["country"] for c in shop.customers)
    assert countries.most_common(1)[0][0] == "CN"


def test_names_and_phones_follow_the_locale(shop: Shop) -> None:
    chinese = [c for c in shop.customers if c["country"] == "CN"]
    assert all(CJK.search(c["last_name"]) for c in chinese)
    patterns = {
        "CN": r"^1\d{2} \d{4} \d{4}$",
        "US": r"^\(\d{3}\) \d{3}-\d{4}$",
        "GB": r"^0\d{2,4} \d{3,4} ?\d{3,4}$",
        "DE": r"^0\d{2,4} \d{7,9}$",
        "FR": r"^0\d( \d{2}){4}$",
        "JP": r"^0\d{1,2}-\d{4}-\d{4}$",
    }
    phones = [c for c in shop.customers if c["phone"]]
    assert len(phones) > 0.85 * CUSTOMERS
    for c in phones:
        assert re.match(patterns[c["country"]], c["phone"]), (c["country"], c["phone"])


def test_emails_exercise_identity_merging(shop: Shop) -> None:
    emails = [c["email"] for c in shop.customers]
    untidy = [e for e in emails if e != e.strip().lower()]
    assert any(e != e.strip() for e in untidy) and any(
        e.strip() != e.strip().lower() for e in untidy
    )
    shared = [e for e, n in Counter(e.strip().lower() for e in emails).items() if n > 1]
    assert 1 <= len(shared) <= 0.02 * CUSTOMERS


# --- orders -----------------------------------------------------------------------------------


def _money(text: str, currency: str) -> Decimal:
    pattern = r"^\d+$" if currency == "JPY" else r"^\d+\.\d{2}$"
    assert re.match(pattern, text), (text, currency)
    return Decimal(text)


def test_orders_parse_and_add_up(shop: Shop) -> None:
    countries = {c["customer_id"]: c["country"] for c in shop.customers}
    for order in shop.orders:
        keys = list(order)
        who = "customer_id" if "customer_id" in order else "email"
        assert keys == [k if k != "customer_id" else who for k in ORDER_KEYS]
        assert re.match(r"^O\d{7}$", order["order_id"])
        currency = order["currency"]
        assert currency == CURRENCY[countries[shop.customer_of(order)]]
        assert order["status"] in {"completed", "refunded", "cancelled"}
        assert order["items"]
        subtotal = Decimal(0)
        for item in order["items"]:
            assert list(item) == ITEM_KEYS
            assert item["sku"].startswith(item["product_id"] + "-")
            assert isinstance(item["quantity"], int) and item["quantity"] >= 1
            subtotal += _money(item["price"], currency) * item["quantity"]
        discount = _money(order["discount"], currency)
        assert _money(order["total"], currency) == subtotal - discount
        assert (order["coupon"] is None) == (discount == 0)
    ids = [o["order_id"] for o in shop.orders]
    assert len(set(ids)) == ORDERS and ids[0] == "O0000001"


def test_order_mix_is_plausible(shop: Shop) -> None:
    n = len(shop.orders)
    status = Counter(o["status"] for o in shop.orders)
    assert 0.025 < status["refunded"] / n < 0.06
    assert 0.01 < status["cancelled"] / n < 0.035
    guests = sum("email" in o for o in shop.orders) / n
    assert 0.01 < guests < 0.035
    coupons = Counter(o["coupon"] for o in shop.orders)
    assert {"NEW10", "WELCOMEBACK", "VIP15", "618SALE", "1111SALE"} <= set(coupons)
    for order in shop.orders:
        if order["coupon"] in {"618SALE", "1111SALE"}:
            assert order["currency"] == "CNY"
    assert len({i["product_id"] for o in shop.orders for i in o["items"]}) > 200
    assert len({i["category"] for o in shop.orders for i in o["items"]}) == 8


def test_every_order_belongs_to_an_existing_customer_after_signup(shop: Shop) -> None:
    created = {c["customer_id"]: _when(c["created_at"]) for c in shop.customers}
    for order in shop.orders:
        customer = shop.customer_of(order)
        assert customer in created
        if "customer_id" in order:
            assert _when(order["ordered_at"]) >= created[customer]


def test_repeat_purchases_are_plausible(shop: Shop) -> None:
    per_customer: dict[str, list[datetime]] = defaultdict(list)
    for order in shop.orders:
        per_customer[shop.customer_of(order)].append(_when(order["ordered_at"]))
    counts = Counter(len(v) for v in per_customer.values())
    buyers = len(per_customer)
    assert 0.6 * CUSTOMERS < buyers < 0.9 * CUSTOMERS
    assert counts[1] / buyers > 0.1
    assert sum(n for k, n in counts.items() if k >= 5) / buyers > 0.1
    by_id = [o for o in shop.orders if "customer_id" in o]
    for previous, current in itertools.pairwise(by_id):
        if previous["customer_id"] == current["customer_id"]:
            assert previous["ordered_at"] <= current["ordered_at"]


def test_eleven_eleven_is_a_peak_in_china(tmp_path: Path) -> None:
    files = generate_shop(tmp_path, customers=3_000, orders=30_000, seed=3)
    days = Counter(
        json.loads(line)["ordered_at"][:10]
        for line in files.orders.read_text().splitlines()
        if '"currency": "CNY"' in line
    )
    ordinary = [days[f"2025-11-{d:02d}"] for d in range(13, 31)]
    assert days["2025-11-11"] > 2.5 * sum(ordinary) / len(ordinary)


# --- time range -------------------------------------------------------------------------------


def test_every_timestamp_lies_in_the_period(shop: Shop) -> None:
    low = datetime(2024, 11, 1, tzinfo=UTC)
    high = datetime.combine(DEFAULT_END + timedelta(days=1), datetime.min.time(), UTC)
    stamps = (
        [c["created_at"] for c in shop.customers]
        + [o["ordered_at"] for o in shop.orders]
        + [r["occurred_at"] for r in shop.consents]
        + [e["timestamp"] for e in shop.events]
    )
    assert all(low <= _when(s) < high for s in stamps)
    signup_months = Counter(c["created_at"][:7] for c in shop.customers)
    assert signup_months["2026-09"] > signup_months["2024-12"]  # the shop grows


def test_custom_period(tmp_path: Path) -> None:
    files = generate_shop(
        tmp_path, customers=100, orders=300, start=date(2025, 1, 1), end=date(2025, 3, 31)
    )
    loaded = _load(files)
    stamps = [o["ordered_at"] for o in loaded.orders] + [e["timestamp"] for e in loaded.events]
    stamps += [c["created_at"] for c in loaded.customers]
    assert all("2025-01-01" <= s[:10] <= "2025-03-31" for s in stamps)


# --- consents and events ----------------------------------------------------------------------


def test_consent_rows_are_grouped_and_time_ordered(shop: Shop) -> None:
    header = shop.files.consents.read_text().splitlines()[0]
    assert header == ",".join(CONSENT_HEADER)
    seen: set[str] = set()
    previous: dict[str, str] | None = None
    for row in shop.consents:
        assert row["purpose"] in PURPOSES
        assert row["status"] in {"granted", "withdrawn"}
        assert row["mechanism"] in {"checkbox", "banner", "import", "api", "gpc"}
        assert row["source"] and re.match(r"^\d{4}-\d{2}$", row["notice_version"])
        if row["mechanism"] == "gpc":
            assert (row["purpose"], row["status"]) == ("ad_audiences", "withdrawn")
        if previous is None or previous["customer_id"] != row["customer_id"]:
            assert row["customer_id"] not in seen
            seen.add(row["customer_id"])
        else:
            assert previous["occurred_at"] <= row["occurred_at"]
        previous = row
    email = {
        r["customer_id"]
        for r in shop.consents
        if r["purpose"] == "email_marketing" and r["status"] == "granted"
    }
    assert 0.5 < len(email) / CUSTOMERS < 0.8
    gpc = {r["customer_id"] for r in shop.consents if r["mechanism"] == "gpc"}
    assert 0.01 < len(gpc) / CUSTOMERS < 0.06


def _email_consent_windows(shop: Shop) -> dict[str, list[tuple[str, str]]]:
    windows: dict[str, list[tuple[str, str]]] = defaultdict(list)
    opened: dict[str, str] = {}
    for row in shop.consents:
        if row["purpose"] != "email_marketing":
            continue
        who = row["customer_id"]
        if row["status"] == "granted":
            opened.setdefault(who, row["occurred_at"])
        elif who in opened:
            windows[who].append((opened.pop(who), row["occurred_at"]))
    for who, since in opened.items():
        windows[who].append((since, "9999"))
    return windows


def test_events_are_well_formed_and_consistent(shop: Shop) -> None:
    customers = {c["customer_id"]: c for c in shop.customers}
    windows = _email_consent_windows(shop)
    assert len({e["message_id"] for e in shop.events}) == len(shop.events)
    kinds = Counter(e["event"] for e in shop.events)
    assert set(kinds) == EVENTS
    assert kinds["Product Viewed"] == max(kinds.values())
    order_ids = {o["order_id"] for o in shop.orders}
    anonymous = 0
    for event in shop.events:
        keys = list(event)
        assert keys[0] == "message_id" and keys[2:] == ["event", "properties", "timestamp"]
        assert re.match(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
                        event["message_id"])  # fmt: skip
        props = event["properties"]
        if keys[1] == "anonymous_id":
            anonymous += 1
            assert event["anonymous_id"].startswith("anon-")
            continue
        assert keys[1] == "customer_id" and event["customer_id"] in customers
        assert event["timestamp"] >= customers[event["customer_id"]]["created_at"]
        name = event["event"]
        if name in {"Product Viewed", "Product Added"}:
            assert {"product_id", "sku", "price", "currency"} <= set(props)
        elif name == "Checkout Started":
            assert props["order_id"] in order_ids
        elif name == "Product Reviewed":
            assert 1 <= props["rating"] <= 5
        elif name == "Checked In":
            assert customers[event["customer_id"]]["loyalty_opt_in"] == "true"
        else:  # email events happen only while email marketing is consented
            stamp = event["timestamp"]
            spans = windows[event["customer_id"]]
            assert any(lo <= stamp < hi for lo, hi in spans), (event, spans)
    assert 0 < anonymous < 0.15 * len(shop.events)


def test_events_are_in_time_order_per_customer(shop: Shop) -> None:
    with_id = [e for e in shop.events if "customer_id" in e]
    for previous, event in itertools.pairwise(with_id):
        if previous["customer_id"] == event["customer_id"]:
            assert previous["timestamp"] <= event["timestamp"]


# --- API --------------------------------------------------------------------------------------


def test_progress_reports_orders_written(tmp_path: Path) -> None:
    seen: list[int] = []
    generate_shop(tmp_path, customers=300, orders=1_000, progress=seen.append)
    assert seen and seen[-1] == 1_000 and seen == sorted(seen)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"customers": 0, "orders": 1},
        {"customers": 1, "orders": -1},
        {"customers": 1, "orders": 1, "events": -1},
        {"customers": 1, "orders": 1, "workers": 0},
        {"customers": 1, "orders": 1, "start": date(2026, 1, 2), "end": date(2026, 1, 1)},
    ],
)
def test_invalid_arguments_are_refused(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        generate_shop(tmp_path, **kwargs)


def test_cdp_generate_takes_an_end_date(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cdp.cli import app

    runner = CliRunner()
    out = tmp_path / "shop"
    args = ["generate", "--customers", "20", "--orders", "40", "--out", str(out)]
    done = runner.invoke(app, [*args, "--end", "2025-03-31"])
    assert done.exit_code == 0, done.output
    with (out / "orders.jsonl").open() as fh:
        last = max(json.loads(line)["ordered_at"] for line in fh)
    assert "2024-04-01" <= last[:10] <= "2025-03-31"
    for bad in ("31/03/2025", "2025-02-30", "0001-01-01"):
        refused = runner.invoke(app, [*args, "--end", bad])
        assert refused.exit_code == 2 and "--end" in refused.output, refused.output
