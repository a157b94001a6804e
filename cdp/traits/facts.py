"""Order facts per subject, as SQL: the building block of RFM, lifecycle, CLV and metrics.

Rules (docs/traits.md): only ``completed`` orders count — refunded and cancelled orders are left
out of every count and sum (net of refunds); money is ``value_base`` (the reporting currency),
summed exactly (:func:`money_sum`);
a *purchase occasion* is a UTC calendar day with at least one completed order, so several
orders on one day count once for frequency and the repurchase cycle; the repurchase cycle is
the mean number of days between consecutive occasions, (last day - first day) / (occasions - 1).

Performance: one pass over the partial covering index ``ix_orders_completed`` (completed orders
by subject and time, with the value) grouped by subject, plus per-subject index seeks for the
two facts that need the first or last day first (value of the first day, gap before the last
day). No sort of the orders is needed on either backend. The query is one flat GROUP BY (no
derived table), so callers filter groups with HAVING and order by subject for free.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import Select

from cdp.ingest.money import VALUE_BASE_PLACES
from cdp.profiles.models import Order
from cdp.traits.sqlfuncs import date_key, day_number, day_start, next_day_start

orders_t = Order.__table__  # type: ignore[attr-defined]

COMPLETED = "completed"
# Inlined (not a bound parameter) so that the planners can use the partial index.
IS_COMPLETED = orders_t.c.status == sa.literal_column(f"'{COMPLETED}'")


MONEY_SCALE = 10**VALUE_BASE_PLACES
"""``value_base`` holds at most 4 decimals (:meth:`cdp.ingest.money.Converter.value_base` rounds
to them): in ten-thousandths it is a whole number."""
_SCALE = sa.literal_column(str(MONEY_SCALE), sa.BigInteger)
_SCALE_F = sa.literal_column(f"{MONEY_SCALE}.0", sa.Float)


def money_units(value: sa.ColumnElement[Any]) -> sa.ColumnElement[int]:
    """A ``value_base`` in whole ten-thousandths (an exact integer: the float's error is far
    below half a unit at any realistic amount)."""
    return sa.cast(sa.func.round(value * _SCALE), sa.BigInteger)


def units_to_money(units: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """Ten-thousandths back to major units: the float nearest the exact decimal."""
    return sa.cast(units, sa.Float) / _SCALE_F


def money_sum(value: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The sum of ``value_base`` values, exact: added as integers (ten-thousandths), then the
    float nearest the exact total (246.04 + 10 + 43.96 is 300.0; float addition gives
    299.99999999999994, which a 300 threshold or a cents bucket would misjudge)."""
    return units_to_money(sa.func.sum(money_units(value)))


def completed_orders_before(
    end: datetime, ordered_at: sa.ColumnElement[Any] | None = None, table: Any = orders_t
) -> list[sa.ColumnElement[bool]]:
    """Completed orders of known subjects placed before ``end`` (``ordered_at``: the time
    expression to compare, e.g. wrapped in :class:`~cdp.traits.sqlfuncs.no_index`)."""
    at = table.c.ordered_at if ordered_at is None else ordered_at
    return [
        table.c.status == sa.literal_column(f"'{COMPLETED}'"),
        table.c.subject_id.is_not(None),
        at < end,
    ]


def subject_facts(
    end: datetime,
    *,
    first_value: bool = False,
    last_gap: bool = False,
    dialect: str = "sqlite",
    subjects: sa.Select[Any] | None = None,
) -> Select[Any]:
    """Per subject with a completed order before ``end``: orders, occasions, first and last
    order time and day, total value; optionally the value of the first day and the gap in days
    between the last two occasions (NULL with one occasion). Filter and order groups through
    ``.selected_columns.subject_id``.

    Two formulations with the same results, chosen by ``dialect`` (the tests run both against
    the same Python reference): SQLite counts distinct days per group and seeks the first or
    last day's neighbours in the index; PostgreSQL's ``count(DISTINCT)`` sorts every group, so
    there one streamed window pass (``lag`` over each subject's orders in index order, no sort)
    marks the first order of each day and the aggregate counts and sums over the marks.

    ``subjects`` (a one-column select of subject ids) limits the orders read to theirs (index
    seeks instead of the whole index)."""
    only = [] if subjects is None else [orders_t.c.subject_id.in_(subjects)]
    if dialect == "postgresql":
        return _windowed_facts(end, first_value=first_value, last_gap=last_gap, only=only)
    first_at = sa.func.min(orders_t.c.ordered_at)
    last_at = sa.func.max(orders_t.c.ordered_at)
    cols: list[sa.ColumnElement[Any]] = [
        orders_t.c.subject_id,
        sa.func.count().label("orders"),
        sa.func.count(sa.distinct(date_key(orders_t.c.ordered_at))).label("occasions"),
        first_at.label("first_order_at"),
        last_at.label("last_order_at"),
        day_number(first_at).label("first_day"),
        day_number(last_at).label("last_day"),
        money_sum(orders_t.c.value_base).label("total_value"),
    ]
    # The seeks are correlated on the group's subject and its first or last order (an
    # aggregate of the outer query, evaluated per group on both backends).
    o = orders_t.alias("o2")
    if first_value:
        cols.append(
            sa.select(money_sum(o.c.value_base))
            .where(
                o.c.subject_id == orders_t.c.subject_id,
                *completed_orders_before(end, table=o)[:1],
                o.c.ordered_at < next_day_start(first_at),
            )
            .scalar_subquery()
            .label("first_value")
        )
    if last_gap:
        previous = (
            sa.select(sa.func.max(o.c.ordered_at))
            .where(
                o.c.subject_id == orders_t.c.subject_id,
                *completed_orders_before(end, table=o)[:1],
                o.c.ordered_at < day_start(last_at),
            )
            .scalar_subquery()
        )
        cols.append((day_number(last_at) - day_number(previous)).label("last_gap_days"))
    # One flat aggregate (no derived table): the groups come out of the index in subject
    # order, so an ORDER BY subject or a HAVING on the subject costs no sort or extra pass.
    return (
        sa.select(*cols).where(*completed_orders_before(end), *only).group_by(orders_t.c.subject_id)
    )


def day_rows(end: datetime, *extra: sa.ColumnElement[bool]) -> sa.Subquery:
    """Completed orders before ``end`` with their UTC day, the previous order's day of the
    same subject and the subject's first day (windows in the index's order: no sort)."""
    day = day_number(orders_t.c.ordered_at)
    by_subject: dict[str, Any] = {
        "partition_by": orders_t.c.subject_id,
        "order_by": orders_t.c.ordered_at,
    }
    return (
        sa.select(
            orders_t.c.subject_id,
            orders_t.c.ordered_at,
            orders_t.c.value_base,
            day.label("day"),
            sa.func.lag(day).over(**by_subject).label("prev_day"),
            sa.func.first_value(day).over(**by_subject).label("first_day"),
        )
        .where(*completed_orders_before(end), *extra)
        .subquery("day_rows")
    )


def new_day(rows: sa.Subquery) -> sa.ColumnElement[bool]:
    """The row is its subject's first order of a UTC day (a purchase occasion starts)."""
    return rows.c.day.is_distinct_from(rows.c.prev_day)


def _windowed_facts(
    end: datetime, *, first_value: bool, last_gap: bool, only: list[sa.ColumnElement[bool]]
) -> Select[Any]:
    rows = day_rows(end, *only)
    starts = new_day(rows)
    cols: list[sa.ColumnElement[Any]] = [
        rows.c.subject_id,
        sa.func.count().label("orders"),
        sa.func.count().filter(starts).label("occasions"),
        sa.func.min(rows.c.ordered_at).label("first_order_at"),
        sa.func.max(rows.c.ordered_at).label("last_order_at"),
        sa.func.min(rows.c.day).label("first_day"),
        sa.func.max(rows.c.day).label("last_day"),
        money_sum(rows.c.value_base).label("total_value"),
    ]
    if first_value:
        first = sa.func.sum(money_units(rows.c.value_base)).filter(rows.c.day == rows.c.first_day)
        cols.append(units_to_money(first).label("first_value"))
    if last_gap:
        # The previous occasion's day is largest on the last occasion's first order.
        previous = sa.func.max(rows.c.prev_day).filter(starts)
        cols.append((sa.func.max(rows.c.day) - previous).label("last_gap_days"))
    return sa.select(*cols).group_by(rows.c.subject_id)
