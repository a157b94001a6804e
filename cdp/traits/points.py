"""The points ledger: earn, reverse, redeem, expire. A balance is the sum of a subject's lines.

* Earn: ``floor(value_base * per_currency_unit)`` points per completed order, in exact decimal
  arithmetic (:func:`earned_points`), and the configured points per behaviour event (e.g.
  ``Checked In``), each line dated at the purchase or event. Written set-based
  (INSERT ... SELECT), idempotent per order and per event.
* Reversal: an order that earned points and is no longer completed (refunded, cancelled) gets
  a negative line, dated like the earn line it cancels, for what is left of that lot: the lot's
  points less what consumption (first in, first out) already took from it. Points of the lot
  that expired or were redeemed are gone already; taking them again would take the person's
  newer points. Taking what is left of one lot changes no other lot's remainder, so all the
  reversals of a run are computed from the same state.
* Redeem: a negative line; refused when the balance (after expiry) is too small.
* Expire, first in, first out: the points earned at or before ``now - expiry_months`` that were
  not consumed since. Consumption (redeem and earlier expiries) always takes the oldest points
  first, so the amount due is ``max(0, old earned - all consumed)``.
"""

from __future__ import annotations

from datetime import datetime
from fractions import Fraction
from typing import Any

import sqlalchemy as sa

from cdp.errors import ConflictError, InvalidInputError, NotFoundError
from cdp.profiles.models import Event, Order
from cdp.traits.bulk import bulk_session, temp_table
from cdp.traits.config import PointsConfig
from cdp.traits.facts import COMPLETED, MONEY_SCALE, completed_orders_before, money_units
from cdp.traits.models import PointsEntry
from cdp.traits.recompute_lock import step_lock
from cdp.traits.sqlfuncs import no_index, subtract_months

ledger_t = PointsEntry.__table__  # type: ignore[attr-defined]
orders_t = Order.__table__  # type: ignore[attr-defined]
events_t = Event.__table__  # type: ignore[attr-defined]

EARN, REVERSAL, REDEEM, EXPIRE = "earn", "reversal", "redeem", "expire"
# INSERT ... SELECT row counts are only kept when asked for (psycopg would report -1).
ROWCOUNT = {"preserve_rowcount": True}
_COLS = [
    "subject_id",
    "kind",
    "points",
    "reason",
    "order_id",
    "event_id",
    "occurred_at",
    "recorded_at",
]


def _now(now: datetime) -> sa.ColumnElement[datetime]:
    return sa.literal(now, type_=ledger_t.c.recorded_at.type)


def _int(value: int) -> sa.ColumnElement[int]:
    return sa.literal_column(str(value), sa.BigInteger)


def earned_points(value: sa.ColumnElement[Any], rate: Fraction) -> sa.ColumnElement[int]:
    """``floor(value * rate)`` for a non-negative ``value_base``, exact: the value in whole
    ten-thousandths u (:func:`cdp.traits.facts.money_units`) and the rate as the fraction
    n / d of its decimal give ``floor(u * n / D)`` with ``D = d * 10^4``, computed as
    ``(u / D) * n + ((u % D) * n) / D`` in integers, so no product exceeds ``D * n`` (bounded by
    :class:`~cdp.traits.config.PointsConfig`) whatever the order's value. The float product
    floored 0.29 * 100 to 28."""
    units = money_units(value)
    whole = _int(rate.denominator * MONEY_SCALE)
    n = _int(rate.numerator)
    return (units // whole) * n + ((units % whole) * n) // whole


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
        _now(now),
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
    return int(
        conn.execute(
            sa.insert(ledger_t).from_select(_COLS, sel), execution_options=ROWCOUNT
        ).rowcount
    )


def reverse_cancelled_orders(conn: sa.Connection, *, now: datetime) -> int:
    """Reversal lines for earning orders that are no longer completed: each takes away what is
    left of its order's lot, first in, first out (points of the lot already expired or redeemed
    are gone and are not taken again); a lot with nothing left gets a line of 0, which marks the
    order as reversed."""
    earn = ledger_t.alias("earn")
    rev = ledger_t.alias("rev")
    unreversed = (
        sa.select(earn.c.id, earn.c.subject_id, earn.c.order_id, earn.c.occurred_at, earn.c.points)
        .select_from(earn.join(orders_t, orders_t.c.id == earn.c.order_id))
        .where(
            earn.c.kind == EARN,
            orders_t.c.status != COMPLETED,
            ~sa.exists().where(rev.c.kind == REVERSAL, rev.c.order_id == earn.c.order_id),
        )
    )
    columns = [sa.Column(c.name, c.type) for c in unreversed.selected_columns]
    # Found once (one pass over the earn lines, as before); the usual run finds none.
    with temp_table(conn, "reverse", columns, unreversed, primary_key="id") as todo:
        if conn.execute(sa.select(sa.literal(1)).select_from(todo).limit(1)).first() is None:
            return 0
        return _reverse(conn, todo, now)


def _reverse(conn: sa.Connection, todo: sa.Table, now: datetime) -> int:
    whose = sa.select(todo.c.subject_id)
    # The lots of those subjects (earn lines net of their reversal) with the running total in
    # the order consumption takes them: oldest first, the earlier line first on a tie.
    lot = ledger_t.alias("lot")
    lot_rev = ledger_t.alias("lot_rev")
    upto = sa.func.sum(lot.c.points + sa.func.coalesce(lot_rev.c.points, 0)).over(
        partition_by=lot.c.subject_id, order_by=(lot.c.occurred_at, lot.c.id), rows=(None, 0)
    )
    lots = (
        sa.select(lot.c.id, upto.label("upto"))
        .select_from(
            lot.outerjoin(
                lot_rev, sa.and_(lot_rev.c.kind == REVERSAL, lot_rev.c.order_id == lot.c.order_id)
            )
        )
        .where(lot.c.kind == EARN, lot.c.subject_id.in_(whose))
        .subquery("lots")
    )
    # Everything consumed so far (redemptions and expiries), per subject.
    used = (
        sa.select(ledger_t.c.subject_id, (-sa.func.sum(ledger_t.c.points)).label("used"))
        .where(ledger_t.c.kind.in_((REDEEM, EXPIRE)), ledger_t.c.subject_id.in_(whose))
        .group_by(ledger_t.c.subject_id)
        .subquery("used")
    )
    # What consumption left of the lots up to this one, at most this lot's own points.
    left = lots.c.upto - sa.func.coalesce(used.c.used, 0)
    remaining = sa.case((left <= 0, 0), (left >= todo.c.points, todo.c.points), else_=left)
    sel = sa.select(
        todo.c.subject_id,
        sa.literal(REVERSAL),
        -remaining,
        sa.literal("order_" + "reversed"),
        todo.c.order_id,
        sa.null(),
        todo.c.occurred_at,
        _now(now),
    ).select_from(
        todo.join(lots, lots.c.id == todo.c.id).outerjoin(
            used, used.c.subject_id == todo.c.subject_id
        )
    )
    return int(
        conn.execute(
            sa.insert(ledger_t).from_select(_COLS, sel), execution_options=ROWCOUNT
        ).rowcount
    )


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
        _now(now),
    ).where(
        events_t.c.name.in_(list(cfg.events)),
        events_t.c.occurred_at < now,
        ~sa.exists().where(ledger_t.c.kind == EARN, ledger_t.c.event_id == events_t.c.id),
    )
    return int(
        conn.execute(
            sa.insert(ledger_t).from_select(_COLS, sel), execution_options=ROWCOUNT
        ).rowcount
    )


def expire(
    conn: sa.Connection, *, cfg: PointsConfig, now: datetime, subject_id: str | None = None
) -> int:
    """Expiry lines (dated ``now``) for points older than ``expiry_months``; returns lines."""
    cutoff = subtract_months(now, cfg.expiry_months)
    old_earned = sa.func.sum(
        sa.case(
            (
                sa.and_(ledger_t.c.kind.in_((EARN, REVERSAL)), ledger_t.c.occurred_at <= cutoff),
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
        _now(now),
        _now(now),
    ).where(due.c.due > 0)
    return int(
        conn.execute(
            sa.insert(ledger_t).from_select(_COLS, sel), execution_options=ROWCOUNT
        ).rowcount
    )


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
    """Earn, reverse and expire at ``now``; returns the lines written by kind. All under the
    step's lock (:mod:`cdp.traits.recompute_lock`), taken before the orders and events are
    read: a merge or erasure is either seen whole or waits for the commit, so no line is
    written for a subject, order or event that one of them deletes meanwhile (its foreign-key
    check would fail the step)."""
    with bulk_session(conn), step_lock(conn, ledger_t):
        return {
            "earn_orders": earn_from_orders(conn, cfg=cfg, now=now),
            "earn_events": earn_from_events(conn, cfg=cfg, now=now),
            "reversals": reverse_cancelled_orders(conn, now=now),
            "expired": expire(conn, cfg=cfg, now=now),
        }
