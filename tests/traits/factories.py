"""Plain factory functions for traits and segment tests: Core inserts of subjects, orders,
items, events and consent events (no ingestion code, no PII)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import sqlalchemy as sa

from cdp.consent.models import ConsentEvent
from cdp.db.models import Subject
from cdp.profiles.models import Event, Order, OrderItem

_refs = itertools.count(1)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
BATCH = 5_000


def _batched(conn: sa.Connection, table: sa.Table, rows: list[dict[str, object]]) -> None:
    for i in range(0, len(rows), BATCH):
        conn.execute(sa.insert(table), rows[i : i + BATCH])


def make_subjects(conn: sa.Connection, ids: Sequence[str]) -> list[str]:
    rows = [{"id": i, "created_at": T0, "updated_at": T0} for i in ids]
    _batched(conn, Subject.__table__, rows)  # type: ignore[attr-defined]
    return list(ids)


def subject_ids(n: int, prefix: int = 0) -> list[str]:
    """``n`` well-formed subject ids (32 hex digits), sortable by creation order."""
    return [f"{prefix:04x}{i:028x}" for i in range(n)]


@dataclass(frozen=True)
class OrderSpec:
    subject_id: str | None
    at: datetime
    value: float
    status: str = "completed"
    categories: tuple[str, ...] = ()


def add_orders(conn: sa.Connection, specs: Iterable[OrderSpec]) -> list[int]:
    """Insert orders (and one item per category); returns their ids."""
    specs = list(specs)
    rows = []
    for s in specs:
        rows.append(
            {
                "order_ref": f"o{next(_refs)}",
                "subject_id": s.subject_id,
                "ordered_at": s.at,
                "status": s.status,
                "currency": "EUR",
                "total_minor": round(s.value * 100),
                "discount_minor": 0,
                "value_base": s.value,
                "source": "test",
                "created_at": s.at,
                "updated_at": s.at,
            }
        )
    order_t = Order.__table__  # type: ignore[attr-defined]
    ids: list[int] = []
    for i in range(0, len(rows), BATCH):
        chunk = rows[i : i + BATCH]
        result = conn.execute(
            sa.insert(order_t).returning(order_t.c.id, sort_by_parameter_order=True), chunk
        )
        ids.extend(int(r[0]) for r in result)
    items = [
        {"order_id": oid, "category": c, "price_minor": 100, "quantity": 1}
        for oid, s in zip(ids, specs, strict=True)
        for c in s.categories
    ]
    if items:
        _batched(conn, OrderItem.__table__, items)  # type: ignore[attr-defined]
    return ids


def add_order(
    conn: sa.Connection,
    subject_id: str | None,
    at: datetime,
    value: float,
    status: str = "completed",
    categories: tuple[str, ...] = (),
) -> int:
    return add_orders(conn, [OrderSpec(subject_id, at, value, status, categories)])[0]


def add_event(conn: sa.Connection, subject_id: str, name: str, at: datetime) -> None:
    conn.execute(
        sa.insert(Event.__table__).values(  # type: ignore[attr-defined]
            message_id=f"m{next(_refs)}",
            subject_id=subject_id,
            type="track",
            name=name,
            occurred_at=at,
            received_at=at,
            source="test",
        )
    )


def add_consents(conn: sa.Connection, rows: Iterable[tuple[str, str, str, datetime]]) -> None:
    """(subject_id, purpose, status, occurred_at) ledger rows."""
    out = [
        {
            "subject_id": sid,
            "purpose": purpose,
            "status": status,
            "occurred_at": at,
            "recorded_at": at,
            "source": "test",
            "mechanism": "api",
            "recorded_by": "test",
            "dedupe_key": f"d{next(_refs)}",
        }
        for sid, purpose, status, at in rows
    ]
    _batched(conn, ConsentEvent.__table__, out)  # type: ignore[attr-defined]


CATEGORIES = ("shoes", "bags", "beauty", "home", "kids")


def generate_shop(
    conn: sa.Connection, *, customers: int, end: datetime, seed: int = 1, days: int = 720
) -> list[str]:
    """A shop of ``customers`` subjects with BG/NBD-like purchases over ``days`` days before
    ``end``: heterogeneous rates and lapses, ties in order days, some refunds and cancels, some
    subjects without orders, consents for email. Returns the subject ids."""
    rng = np.random.default_rng(seed)
    ids = make_subjects(conn, subject_ids(customers, prefix=seed))
    start = end - timedelta(days=days)
    specs: list[OrderSpec] = []
    for sid in ids:
        if rng.random() < 0.1:
            continue  # never bought
        first = rng.integers(0, days)
        rate = rng.gamma(0.8, 1 / 25.0)  # purchases per day
        lapse = rng.beta(1.0, 4.0)
        t = float(first)
        while t < days:
            value = round(float(rng.gamma(2.0, 30.0)) + 1.0, 2)
            status = rng.choice(["completed", "refunded", "cancelled"], p=[0.9, 0.06, 0.04])
            at = start + timedelta(days=t, seconds=int(rng.integers(0, 86_400)))
            cats = tuple(rng.choice(CATEGORIES, size=int(rng.integers(1, 3)), replace=False))
            specs.append(OrderSpec(sid, at, value, str(status), cats))
            if rng.random() < 0.1:  # a second order on the same day
                specs.append(OrderSpec(sid, at + timedelta(minutes=5), 15.0, "completed", ()))
            if rng.random() < lapse:
                break
            t += float(rng.exponential(1 / max(rate, 1e-3)))
    add_orders(conn, specs)
    consents = []
    for sid in ids:
        roll = rng.random()
        if roll < 0.6:
            consents.append((sid, "email_marketing", "granted", start))
            if roll < 0.15:
                consents.append((sid, "email_marketing", "withdrawn", start + timedelta(days=30)))
    add_consents(conn, consents)
    return ids
