"""The points ledger: earn, correct, reverse, redeem, expire. A balance is the sum of a
subject's lines.

* Earn: ``floor(value_base * per_currency_unit)`` points per completed order, in exact decimal
  arithmetic (:func:`~cdp.traits.points_lines.earned_points`), and the configured points per
  behaviour event (e.g. ``Checked In``), each line dated at the purchase or event. Written
  set-based (INSERT ... SELECT), idempotent per order and per event. An order's earn line
  records the value it reflects (``value_units``).
* Correction and reversal (:mod:`cdp.traits.points_changes`): an order whose value was
  corrected since it earned gets an adjust line bringing its lot to what the new value earns;
  an order no longer completed gets a reversal line; either takes at most what is left of the
  order's lot (points of it already expired or redeemed are not taken a second time).
* Redeem: a negative line; refused when the balance (after expiry) is too small.
* Expire, first in, first out: the points earned at or before ``now - expiry_months`` that were
  not consumed since. Consumption (redeem and earlier expiries) always takes the oldest points
  first, so the amount due is ``max(0, old earned - all consumed)``.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from cdp.errors import ConflictError, InvalidInputError, NotFoundError
from cdp.traits.bulk import bulk_session, without_nested_loops
from cdp.traits.config import PointsConfig
from cdp.traits.facts import completed_orders_before, money_units
from cdp.traits.points_changes import settle_changed_orders
from cdp.traits.points_lines import (
    ADJUST,
    COLUMNS,
    EARN,
    EXPIRE,
    LOT_KINDS,
    REDEEM,
    REVERSAL,
    earned_points,
    events_t,
    insert_lines,
    ledger_t,
    now_literal,
    orders_t,
)
from cdp.traits.recompute_lock import step_lock
from cdp.traits.sqlfuncs import no_index, subtract_months

__all__ = [
    "ADJUST",
    "EARN",
    "EXPIRE",
    "REDEEM",
    "REVERSAL",
    "balance",
    "earn_from_events",
    "earn_from_orders",
    "earned_points",
    "expire",
    "redeem",
    "update_ledger",
]


def earn_from_orders(conn: sa.Connection, *, cfg: PointsConfig, now: datetime) -> int:
    """Earn lines for completed orders placed before ``now`` that have none yet."""
    points = earned_points(orders_t.c.value_base, cfg.rate)
    sel = sa.select(
        orders_t.c.subject_id,
        sa.literal(EARN),
        points,
        sa.literal("order"),
        orders_t.c.id,
        sa.null(),
        orders_t.c.ordered_at,
        now_literal(now),
        money_units(orders_t.c.value_base),
    ).where(
        # SQLite would pick the ordered_at index for "ordered_at < now" and look up every
        # order; the partial covering index reads completed orders only.
        *completed_orders_before(now, no_index(orders_t.c.ordered_at)),
        points > 0,
        ~sa.exists().where(ledger_t.c.kind == EARN, ledger_t.c.order_id == orders_t.c.id),
    )
    if conn.dialect.name == "sqlite":
        # Subject order: SQLite then reads the partial covering index of completed orders
        # (not the whole table) and appends to the ledger's subject index in order.
        sel = sel.order_by(orders_t.c.subject_id)
    return insert_lines(conn, [*COLUMNS, "value_units"], sel)


def earn_from_events(conn: sa.Connection, *, cfg: PointsConfig, now: datetime) -> int:
    """Earn lines for configured behaviour events that happened before ``now``."""
    if not cfg.events:
        return 0
    points = sa.case(cfg.events, value=events_t.c.name)
    sel = sa.select(
        events_t.c.subject_id,
        sa.literal(EARN),
        points,
        sa.literal("event"),
        sa.null(),
        events_t.c.id,
        events_t.c.occurred_at,
        now_literal(now),
    ).where(
        events_t.c.name.in_(list(cfg.events)),
        events_t.c.occurred_at < now,
        ~sa.exists().where(ledger_t.c.kind == EARN, ledger_t.c.event_id == events_t.c.id),
    )
    return insert_lines(conn, COLUMNS, sel)


def expire(
    conn: sa.Connection, *, cfg: PointsConfig, now: datetime, subject_id: str | None = None
) -> int:
    """Expiry lines (dated ``now``) for points older than ``expiry_months``; returns lines."""
    cutoff = subtract_months(now, cfg.expiry_months)
    old_earned = sa.func.sum(
        sa.case(
            (
                sa.and_(ledger_t.c.kind.in_(LOT_KINDS), ledger_t.c.occurred_at <= cutoff),
                ledger_t.c.points,
            ),
            else_=0,
        )
    )
    consumed = -sa.func.sum(
        sa.case((ledger_t.c.kind.in_((REDEEM, EXPIRE)), ledger_t.c.points), else_=0)
    )
    per_subject = sa.select(ledger_t.c.subject_id, (old_earned - consumed).label("due")).group_by(
        ledger_t.c.subject_id
    )
    if subject_id is not None:
        per_subject = per_subject.where(ledger_t.c.subject_id == subject_id)
    due = per_subject.subquery("due")
    sel = sa.select(
        due.c.subject_id,
        sa.literal(EXPIRE),
        -due.c.due,
        sa.literal("expiry"),
        sa.null(),
        sa.null(),
        now_literal(now),
        now_literal(now),
    ).where(due.c.due > 0)
    return insert_lines(conn, COLUMNS, sel)


def balance(conn: sa.Connection, *, subject_id: str) -> int:
    """The subject's points: the sum of its ledger lines."""
    value = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(ledger_t.c.points), 0)).where(
            ledger_t.c.subject_id == subject_id
        )
    ).scalar_one()
    return int(value)


def redeem(
    conn: sa.Connection,
    *,
    cfg: PointsConfig,
    subject_id: str,
    points: int,
    now: datetime,
    reason: str = "redeem",
) -> int:
    """Spend ``points`` (after expiring what is due); returns the new balance."""
    if points <= 0:
        raise InvalidInputError("points to redeem must be positive", field="points")
    from cdp.db.models import Subject

    exists = conn.execute(
        sa.select(sa.literal(1)).where(Subject.__table__.c.id == subject_id)  # type: ignore[attr-defined]
    ).first()
    if exists is None:
        raise NotFoundError("subject not found")
    expire(conn, cfg=cfg, now=now, subject_id=subject_id)
    current = balance(conn, subject_id=subject_id)
    if current < points:
        raise ConflictError("not enough points to redeem")
    conn.execute(
        sa.insert(ledger_t).values(
            subject_id=subject_id,
            kind=REDEEM,
            points=-points,
            reason=reason[:64],
            occurred_at=now,
            recorded_at=now,
        )
    )
    return current - points


def update_ledger(conn: sa.Connection, *, cfg: PointsConfig, now: datetime) -> dict[str, int]:
    """Earn, correct, reverse and expire at ``now``, in that order (a correction or reversal
    takes from a lot as this run's earn lines leave it; expiry counts what they left); returns
    the lines written by kind. All under the step's lock (:mod:`cdp.traits.recompute_lock`),
    taken before the orders and events are read: a merge or erasure is either seen whole or
    waits for the commit, so no line is written for a subject, order or event that one of them
    deletes meanwhile (its foreign-key check would fail the step)."""
    with bulk_session(conn), step_lock(conn, ledger_t):
        # The earn inserts' anti-joins read the ledger they fill (bulk.without_nested_loops).
        with without_nested_loops(conn):
            earned = {
                "earn_orders": earn_from_orders(conn, cfg=cfg, now=now),
                "earn_events": earn_from_events(conn, cfg=cfg, now=now),
            }
        return {
            **earned,
            **settle_changed_orders(conn, cfg=cfg, now=now),
            "expired": expire(conn, cfg=cfg, now=now),
        }
