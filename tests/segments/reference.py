"""A plain Python evaluation of segment rules, row by row, to check the SQL compiler against."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from cdp.consent.models import ConsentEvent
from cdp.consent.purposes import ConsentStatus, get_purpose
from cdp.db.models import Subject
from cdp.profiles.models import Order, OrderItem
from cdp.segments.rules import (
    AllOf,
    AnyOf,
    BoughtCategory,
    Clause,
    ClvQuantile,
    Consent,
    InList,
    Not,
    OrdersInLast,
    TraitCmp,
)
from cdp.traits.models import ClvPrediction, LoyaltyStatus, SubjectTraits


@dataclass
class SubjectData:
    traits: dict[str, Any] = field(default_factory=dict)
    orders: list[tuple[datetime, str, set[str]]] = field(default_factory=list)
    consents: list[tuple[datetime, int, str, str]] = field(default_factory=list)


def load(conn: sa.Connection) -> dict[str, SubjectData]:
    data = {sid: SubjectData() for sid in conn.execute(sa.select(Subject.__table__.c.id)).scalars()}  # type: ignore[attr-defined]
    for table in (SubjectTraits, ClvPrediction, LoyaltyStatus):
        t = table.__table__  # type: ignore[attr-defined]
        for row in conn.execute(sa.select(t)).mappings():
            data[row["subject_id"]].traits.update(dict(row))
    o, i = Order.__table__, OrderItem.__table__  # type: ignore[attr-defined]
    cats: dict[int, set[str]] = {}
    for oid, cat in conn.execute(sa.select(i.c.order_id, i.c.category)):
        cats.setdefault(oid, set()).add(cat)
    for oid, sid, at, status in conn.execute(
        sa.select(o.c.id, o.c.subject_id, o.c.ordered_at, o.c.status)
    ):
        if sid is not None:
            data[sid].orders.append((at, status, cats.get(oid, set())))
    c = ConsentEvent.__table__  # type: ignore[attr-defined]
    for sid, at, cid, purpose, status in conn.execute(
        sa.select(c.c.subject_id, c.c.occurred_at, c.c.id, c.c.purpose, c.c.status)
    ):
        data[sid].consents.append((at, cid, purpose, status))
    return data


def _granted(d: SubjectData, purpose: str) -> bool:
    cfg = get_purpose(purpose)
    if not cfg.withdrawable:
        return True
    events = [(at, status == "withdrawn") for at, _, p, status in d.consents if p == purpose]
    if not events:
        return cfg.default_status is ConsentStatus.GRANTED
    latest = max(events)  # the latest time; at a tie, a withdrawal wins
    return not latest[1]


def _cmp(value: Any, op: str, target: Any) -> bool:
    if value is None:
        return False
    if op == "in":
        return bool(value in target)
    if op == "not_in":
        return bool(value not in target)
    return bool(
        {
            "eq": value == target,
            "ne": value != target,
            "lt": value < target,
            "le": value <= target,
            "gt": value > target,
            "ge": value >= target,
        }[op]
    )


def evaluate(clause: Clause, d: SubjectData, now: datetime) -> bool:
    if isinstance(clause, AllOf):
        return all(evaluate(c, d, now) for c in clause.clauses)
    if isinstance(clause, AnyOf):
        return any(evaluate(c, d, now) for c in clause.clauses)
    if isinstance(clause, Not):
        return not evaluate(clause.clause, d, now)
    if isinstance(clause, TraitCmp):
        return _cmp(d.traits.get(clause.name), clause.op, clause.value)
    if isinstance(clause, InList):
        return _cmp(d.traits.get(clause.kind), "in", clause.values)
    if isinstance(clause, ClvQuantile):
        q = d.traits.get("clv_quantile")
        return q is not None and clause.min <= q <= clause.max
    if isinstance(clause, OrdersInLast):
        since = now - timedelta(days=clause.days)
        n = sum(1 for at, st, _ in d.orders if st == "completed" and since <= at < now)
        return n >= clause.min and (clause.max is None or n <= clause.max)
    if isinstance(clause, BoughtCategory):
        since = now - timedelta(days=clause.within_days) if clause.within_days else None
        return any(
            st == "completed"
            and at < now
            and (since is None or at >= since)
            and clause.category in cats
            for at, st, cats in d.orders
        )
    if isinstance(clause, Consent):
        return _granted(d, clause.purpose)
    raise TypeError(type(clause).__name__)
