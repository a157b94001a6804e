"""Compile a parsed rule to ONE SQL statement (SQLAlchemy Core), never evaluated row by row.

The statement selects subject ids from ``subjects`` left-joined to the stored traits, loyalty
status and CLV predictions; order, category and consent clauses become correlated
EXISTS/COUNT subqueries. Semantics: a comparison on a trait the subject does not have (NULL,
e.g. no orders yet, or CLV not computed) is false, and ``not`` negates that false — so SQL's
three-valued logic never leaks into membership. Restricted subjects are always excluded
(:func:`cdp.traits.eligibility.marketing_allowed`).

A rule's values are bound with the type of the value, not of the column it is compared with:
PostgreSQL casts a parameter to its bound type, so ``orders <= 2.5`` bound as the INTEGER column
would read ``orders <= 3``, and a 64-bit integer (the rules allow them) would overflow INTEGER.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from cdp.consent.ledger_state import granted_condition
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
from cdp.traits.eligibility import marketing_allowed
from cdp.traits.facts import COMPLETED
from cdp.traits.models import ClvPrediction, LoyaltyStatus, SubjectTraits

subjects_t = Subject.__table__  # type: ignore[attr-defined]
traits_t = SubjectTraits.__table__  # type: ignore[attr-defined]
status_t = LoyaltyStatus.__table__  # type: ignore[attr-defined]
pred_t = ClvPrediction.__table__  # type: ignore[attr-defined]
orders_t = Order.__table__  # type: ignore[attr-defined]
items_t = OrderItem.__table__  # type: ignore[attr-defined]


def trait_column(name: str) -> ColumnElement[Any]:
    """The column holding trait ``name`` (names checked by the parser)."""
    if name == "tier":
        return status_t.c.tier  # type: ignore[no-any-return]
    if name in pred_t.c:
        return pred_t.c[name]  # type: ignore[no-any-return]
    return traits_t.c[name]  # type: ignore[no-any-return]


def _param(value: Any) -> ColumnElement[Any]:
    """``value`` as a parameter of its own type (an integer as BIGINT, a float as FLOAT)."""
    if isinstance(value, bool):
        return sa.literal(value, sa.Boolean())
    if isinstance(value, int):
        return sa.literal(value, sa.BigInteger())
    if isinstance(value, float):
        return sa.literal(value, sa.Float())
    return sa.literal(value, sa.String())


def _compare(col: ColumnElement[Any], op: str, value: Any) -> ColumnElement[bool]:
    cond: ColumnElement[bool]
    if op in ("in", "not_in"):
        params = [_param(v) for v in value]
        cond = col.in_(params) if op == "in" else col.not_in(params)
    else:
        p = _param(value)
        cond = {
            "eq": col.__eq__,
            "ne": col.__ne__,
            "lt": col.__lt__,
            "le": col.__le__,
            "gt": col.__gt__,
            "ge": col.__ge__,
        }[op](p)
    return sa.and_(col.is_not(None), cond)


def condition(clause: Clause, *, subject: ColumnElement[str], now: datetime) -> ColumnElement[bool]:
    """The SQL condition of ``clause`` for the subject in ``subject`` (never NULL)."""
    if isinstance(clause, AllOf):
        return sa.and_(*(condition(c, subject=subject, now=now) for c in clause.clauses))
    if isinstance(clause, AnyOf):
        return sa.or_(*(condition(c, subject=subject, now=now) for c in clause.clauses))
    if isinstance(clause, Not):
        return sa.not_(condition(clause.clause, subject=subject, now=now))
    if isinstance(clause, TraitCmp):
        return _compare(trait_column(clause.name), clause.op, clause.value)
    if isinstance(clause, InList):
        return _compare(trait_column(clause.kind), "in", list(clause.values))
    if isinstance(clause, ClvQuantile):
        q = pred_t.c.clv_quantile
        return sa.and_(q.is_not(None), q >= clause.min, q <= clause.max)
    if isinstance(clause, OrdersInLast):
        count = (
            sa.select(sa.func.count())
            .where(
                orders_t.c.subject_id == subject,
                orders_t.c.status == COMPLETED,
                orders_t.c.ordered_at >= now - timedelta(days=clause.days),
                orders_t.c.ordered_at < now,
            )
            .scalar_subquery()
        )
        conds = [count >= _param(clause.min)]
        if clause.max is not None:
            conds.append(count <= _param(clause.max))
        return sa.and_(*conds)
    if isinstance(clause, BoughtCategory):
        where = [
            orders_t.c.subject_id == subject,
            orders_t.c.status == COMPLETED,
            orders_t.c.ordered_at < now,
            items_t.c.category == clause.category,
        ]
        if clause.within_days is not None:
            where.append(orders_t.c.ordered_at >= now - timedelta(days=clause.within_days))
        return (
            sa.select(sa.literal(1))
            .select_from(orders_t.join(items_t, items_t.c.order_id == orders_t.c.id))
            .where(*where)
            .exists()
        )
    if isinstance(clause, Consent):
        return granted_condition(clause.purpose, subject)
    raise TypeError(f"unknown clause type {type(clause).__name__}")


def compile_rule(clause: Clause, *, now: datetime) -> Select[tuple[str]]:
    """One SELECT of the ids of every allowed subject matching ``clause`` at ``now``."""
    s = subjects_t
    source = (
        s.outerjoin(traits_t, traits_t.c.subject_id == s.c.id)
        .outerjoin(status_t, status_t.c.subject_id == s.c.id)
        .outerjoin(pred_t, pred_t.c.subject_id == s.c.id)
    )
    return (
        sa.select(s.c.id.label("subject_id"))
        .select_from(source)
        .where(condition(clause, subject=s.c.id, now=now), marketing_allowed(s.c.id))
    )
