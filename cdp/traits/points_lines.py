"""What every step of the points ledger shares: the table, the kinds of line, the columns an
``INSERT ... SELECT`` of lines fills, and the exact earn formula (docs/traits.md, "Points
ledger"). The steps are :mod:`cdp.traits.points` (earn, expire, redeem) and
:mod:`cdp.traits.points_changes` (orders changed after they earned: reversal, correction)."""

from __future__ import annotations

from datetime import datetime
from fractions import Fraction
from typing import Any

import sqlalchemy as sa

from cdp.profiles.models import Event, Order
from cdp.traits.facts import MONEY_SCALE, money_units
from cdp.traits.models import PointsEntry

ledger_t = PointsEntry.__table__  # type: ignore[attr-defined]
orders_t = Order.__table__  # type: ignore[attr-defined]
events_t = Event.__table__  # type: ignore[attr-defined]

EARN, ADJUST, REVERSAL, REDEEM, EXPIRE = "earn", "adjust", "reversal", "redeem", "expire"
LOT_KINDS = (EARN, ADJUST, REVERSAL)
"""The lines that make a lot (an order's or event's points, dated at the purchase or event)."""
# INSERT ... SELECT row counts are only kept when asked for (psycopg would report -1).
ROWCOUNT = {"preserve_rowcount": True}
COLUMNS = [
    "subject_id",
    "kind",
    "points",
    "reason",
    "order_id",
    "event_id",
    "occurred_at",
    "recorded_at",
]
"""The columns of an ``INSERT ... SELECT`` of lines (``correction`` and ``value_units`` are
added by the lines of orders that carry them)."""


def now_literal(now: datetime) -> sa.ColumnElement[datetime]:
    return sa.literal(now, type_=ledger_t.c.recorded_at.type)


def int_literal(value: int) -> sa.ColumnElement[int]:
    return sa.literal_column(str(value), sa.BigInteger)


def earned_points(value: sa.ColumnElement[Any], rate: Fraction) -> sa.ColumnElement[int]:
    """``floor(value * rate)`` for a non-negative ``value_base``, exact: the value in whole
    ten-thousandths u (:func:`cdp.traits.facts.money_units`) and the rate as the fraction
    n / d of its decimal give ``floor(u * n / D)`` with ``D = d * 10^4``, computed as
    ``(u / D) * n + ((u % D) * n) / D`` in integers, so no product exceeds ``D * n`` (bounded by
    :class:`~cdp.traits.config.PointsConfig`) whatever the order's value. The float product
    floored 0.29 * 100 to 28."""
    units = money_units(value)
    whole = int_literal(rate.denominator * MONEY_SCALE)
    n = int_literal(rate.numerator)
    return (units // whole) * n + ((units % whole) * n) // whole


def insert_lines(conn: sa.Connection, columns: list[str], select: sa.Select[Any]) -> int:
    """``INSERT INTO points_ledger (columns) SELECT ...``; returns the lines written."""
    result = conn.execute(
        sa.insert(ledger_t).from_select(columns, select), execution_options=ROWCOUNT
    )
    return int(result.rowcount)
