"""Order facts per subject, as SQL: the building block of RFM, lifecycle, CLV and metrics.

Rules (docs/traits.md): only ``completed`` orders count — refunded and cancelled orders are left
out of every count and sum (net of refunds); money is ``value_base`` (the reporting currency);
a *purchase occasion* is a UTC calendar day with at least one completed order, so several
orders on one day count once for frequency and the repurchase cycle; the repurchase cycle is
the mean number of days between consecutive occasions, (last day - first day) / (occasions - 1).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.sql import Select
from sqlalchemy.sql.selectable import CTE

from cdp.profiles.models import Order
from cdp.traits.sqlfuncs import day_number

orders_t = Order.__table__  # type: ignore[attr-defined]

COMPLETED = "completed"


def completed_orders_before(end: datetime) -> sa.ColumnElement[bool]:
    """Completed orders of known subjects placed before ``end``."""
    return sa.and_(
        orders_t.c.status == COMPLETED,
        orders_t.c.subject_id.is_not(None),
        orders_t.c.ordered_at < end,
    )


def daily_purchases(end: datetime) -> CTE:
    """One row per subject and purchase day: orders, value, first and last order time, and the
    previous and next purchase day of the same subject (NULL at the ends)."""
    day = day_number(orders_t.c.ordered_at)
    daily = (
        sa.select(
            orders_t.c.subject_id.label("subject_id"),
            day.label("day"),
            sa.func.count().label("n_orders"),
            sa.func.sum(orders_t.c.value_base).label("value"),
            sa.func.min(orders_t.c.ordered_at).label("first_at"),
            sa.func.max(orders_t.c.ordered_at).label("last_at"),
        )
        .where(completed_orders_before(end))
        .group_by(orders_t.c.subject_id, day)
        .subquery("daily")
    )
    part, order = daily.c.subject_id, daily.c.day
    return sa.select(
        *daily.c,
        sa.func.lag(daily.c.day).over(partition_by=part, order_by=order).label("prev_day"),
        sa.func.lead(daily.c.day).over(partition_by=part, order_by=order).label("next_day"),
    ).cte("purchase_days")


def subject_facts(end: datetime) -> Select[tuple[object, ...]]:
    """Per subject with a completed order before ``end``: orders, occasions, first and last
    order time and day, total value, value of the first day, gap before the last day."""
    d = daily_purchases(end)
    return sa.select(
        d.c.subject_id,
        sa.func.sum(d.c.n_orders).label("orders"),
        sa.func.count().label("occasions"),
        sa.func.min(d.c.first_at).label("first_order_at"),
        sa.func.max(d.c.last_at).label("last_order_at"),
        sa.func.min(d.c.day).label("first_day"),
        sa.func.max(d.c.day).label("last_day"),
        sa.func.sum(d.c.value).label("total_value"),
        sa.func.sum(sa.case((d.c.prev_day.is_(None), d.c.value), else_=0.0)).label("first_value"),
        sa.func.max(
            sa.case(
                (sa.and_(d.c.next_day.is_(None), d.c.prev_day.is_not(None)), d.c.day - d.c.prev_day)
            )
        ).label("last_gap_days"),
    ).group_by(d.c.subject_id)
