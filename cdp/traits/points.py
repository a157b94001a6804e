"""The points ledger: earn, reverse, redeem, expire. A balance is the sum of a subject's lines.

* Earn: ``floor(value_base * per_currency_unit)`` points per completed order, and the
  configured points per behaviour event (e.g. ``Checked In``), each line dated at the purchase
  or event. Written set-based (INSERT ... SELECT), idempotent per order and per event.
* Reversal: an order that earned points and is no longer completed (refunded, cancelled) gets
  a negative line for the same amount, dated like the earn line it cancels.
* Redeem: a negative line; refused when the balance (after expiry) is too small.
* Expire, first in, first out: the points earned at or before ``now - expiry_months`` that were
  not consumed since. Consumption (redeem and earlier expiries) always takes the oldest points
  first, so the amount due is ``max(0, old earned - all consumed)``.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from cdp.errors import ConflictError, InvalidInputError, NotFoundError
from cdp.profiles.models import Event, Order
from cdp.traits.bulk import bulk_session
from cdp.traits.config import PointsConfig
from cdp.traits.facts import COMPLETED, completed_orders_before
from cdp.traits.models import PointsEntry
from cdp.traits.sqlfuncs import floor_int, no_index, subtract_months

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


def earn_from_orders(conn: sa.Connection, *, cfg: PointsConfig, now: datetime) -> int:
    """Earn lines for completed orders placed before ``now`` that have none yet."""
    points = floor_int(orders_t.c.value_base * cfg.per_currency_unit)
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
    """Reversal lines for earning orders that are no longer completed."""
    earn = ledger_t.alias("earn")
    rev = ledger_t.alias("rev")
    sel = (
        sa.select(
            earn.c.subject_id,
            sa.literal(REVERSAL),
            -earn.c.points,
            sa.literal("order_" + "reversed"),
            earn.c.order_id,
            sa.null(),
            earn.c.occurred_at,
            _now(now),
        )
        .select_from(earn.join(orders_t, orders_t.c.id == earn.c.order_id))
        .where(
            earn.c.kind == EARN,
            orders_t.c.status != COMPLETED,
            ~sa.exists().where(rev.c.kind == REVERSAL, rev.c.order_id == earn.c.order_id),
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
    """Earn, reverse and expire at ``now``; returns the lines written by kind."""
    with bulk_session(conn):
        return {
            "earn_orders": earn_from_orders(conn, cfg=cfg, now=now),
            "earn_events": earn_from_events(conn, cfg=cfg, now=now),
            "reversals": reverse_cancelled_orders(conn, now=now),
            "expired": expire(conn, cfg=cfg, now=now),
        }
