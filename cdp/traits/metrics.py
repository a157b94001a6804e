"""Shop metrics over a period, the cohort retention matrix and the RFM grid, all in SQL.

Definitions (completed orders only, ``value_base`` money, period = [start, end) in UTC):

* active customers: subjects with at least one completed order in the period;
* new customers: active customers whose first completed order ever is in the period; the
  others are returning; revenue is split the same way;
* repurchase rate: share of active customers with two or more purchase occasions (days) in
  the period;
* purchase frequency: orders per active customer; AOV: revenue per order;
* churn rate: share of the customers active in the previous period of the same length who
  are not active in this one;
* cohort matrix: customers by the month of their first completed order (cohorts starting in
  the period), and for each month since, how many of them bought in that month.

Population: the subjects the traits may profile (:func:`cdp.traits.eligibility.marketing_allowed`,
checked once per subject, in the groups below): a subject under an open restriction of
processing, or whose ``analytics`` purpose is withdrawn (an upheld objection to profiling; the
purpose these aggregates serve), counts in no metric, as it has no stored trait and so no cell
of the RFM grid. Orders of erased subjects (no subject) count in none either.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from cdp.errors import InvalidInputError
from cdp.profiles.models import Order
from cdp.runtime import Runtime
from cdp.traits.eligibility import marketing_allowed
from cdp.traits.facts import COMPLETED, MONEY_SCALE, completed_orders_before, money_units
from cdp.traits.models import SubjectTraits
from cdp.traits.rfm import fm_score
from cdp.traits.sqlfuncs import date_key, month_label, month_number, python_month

orders_t = Order.__table__  # type: ignore[attr-defined]
traits_t = SubjectTraits.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class CohortRow:
    cohort: str
    customers: int
    active: list[int]

    @property
    def retention(self) -> list[float]:
        return [n / self.customers if self.customers else 0.0 for n in self.active]


@dataclass
class ShopMetrics:
    start: datetime
    end: datetime
    active_customers: int = 0
    new_customers: int = 0
    returning_customers: int = 0
    orders: int = 0
    revenue: float = 0.0
    new_revenue: float = 0.0
    returning_revenue: float = 0.0
    aov: float | None = None
    purchase_frequency: float | None = None
    repurchase_rate: float | None = None
    previous_active_customers: int = 0
    churn_rate: float | None = None
    cohorts: list[CohortRow] = field(default_factory=list)
    rfm_grid: list[list[int]] = field(default_factory=list)  # [recency 1-5][FM 1-5]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["start"], out["end"] = self.start.isoformat(), self.end.isoformat()
        out["cohorts"] = [{**asdict(c), "retention": c.retention} for c in self.cohorts]
        return out


def _completed(start: datetime | None, end: datetime) -> list[sa.ColumnElement[bool]]:
    conds = completed_orders_before(end)
    if start is not None:
        conds.append(orders_t.c.ordered_at >= start)
    return conds


def _first_orders(end: datetime) -> sa.Subquery:
    """The first completed order of every buyer who may be profiled: the summary and the cohorts
    join to it, so it also decides who they count."""
    return (
        sa.select(
            orders_t.c.subject_id,
            sa.func.min(orders_t.c.ordered_at).label("first_at"),
        )
        .where(*_completed(None, end))
        .group_by(orders_t.c.subject_id)
        .having(marketing_allowed(orders_t.c.subject_id))
        .subquery("first_orders")
    )


def _period_summary(conn: sa.Connection, m: ShopMetrics) -> None:
    per = (
        sa.select(
            orders_t.c.subject_id,
            sa.func.count().label("n"),
            sa.func.count(sa.distinct(date_key(orders_t.c.ordered_at))).label("occ"),
            sa.func.sum(money_units(orders_t.c.value_base)).label("units"),
        )
        .where(*_completed(m.start, m.end))
        .group_by(orders_t.c.subject_id)
        .subquery("per")
    )
    first = _first_orders(m.end)
    is_new = first.c.first_at >= m.start
    row = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(per.c.n), 0),
            sa.func.coalesce(sa.func.sum(per.c.units), 0),
            sa.func.coalesce(sa.func.sum(sa.case((per.c.occ >= 2, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((is_new, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((is_new, per.c.units), else_=0)), 0),
        ).select_from(per.join(first, first.c.subject_id == per.c.subject_id))
    ).one()
    active, orders, revenue, repeaters, new, new_revenue = row
    # Revenue is summed in exact ten-thousandths (cdp.traits.facts.money_units), then turned
    # into the float nearest each exact total.
    m.active_customers, m.orders, m.revenue = int(active), int(orders), int(revenue) / MONEY_SCALE
    m.new_customers, m.new_revenue = int(new), int(new_revenue) / MONEY_SCALE
    m.returning_customers = m.active_customers - m.new_customers
    m.returning_revenue = (int(revenue) - int(new_revenue)) / MONEY_SCALE
    if m.orders:
        m.aov = m.revenue / m.orders
    if m.active_customers:
        m.purchase_frequency = m.orders / m.active_customers
        m.repurchase_rate = int(repeaters) / m.active_customers


def _churn(conn: sa.Connection, m: ShopMetrics) -> None:
    previous_start = m.start - (m.end - m.start)
    prev = (
        sa.select(orders_t.c.subject_id)
        .where(*_completed(previous_start, m.start))
        .distinct()
        .subquery("prev")
    )
    now = orders_t.alias("now")
    still = (
        sa.select(sa.literal(1))
        .where(
            now.c.subject_id == prev.c.subject_id,
            now.c.status == COMPLETED,
            now.c.ordered_at >= m.start,
            now.c.ordered_at < m.end,
        )
        .exists()
    )
    total, lost = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(sa.case((~still, 1), else_=0)), 0),
        )
        .select_from(prev)
        .where(marketing_allowed(prev.c.subject_id))
    ).one()
    m.previous_active_customers = int(total)
    m.churn_rate = int(lost) / int(total) if total else None


def _cohorts(conn: sa.Connection, m: ShopMetrics) -> None:
    first = _first_orders(m.end)
    cohort = month_number(first.c.first_at)
    sizes = dict(
        conn.execute(
            sa.select(cohort, sa.func.count()).where(first.c.first_at >= m.start).group_by(cohort)
        ).all()
    )
    offset = month_number(orders_t.c.ordered_at) - cohort
    cells = conn.execute(
        sa.select(cohort, offset, sa.func.count(sa.distinct(orders_t.c.subject_id)))
        .select_from(orders_t.join(first, first.c.subject_id == orders_t.c.subject_id))
        .where(*_completed(m.start, m.end), first.c.first_at >= m.start)
        .group_by(cohort, offset)
    ).all()
    last_month = python_month(m.end - timedelta(microseconds=1))
    grid: dict[int, list[int]] = {c: [0] * (last_month - c + 1) for c in sizes}
    for c, k, n in cells:
        if c in grid and 0 <= k < len(grid[c]):
            grid[c][k] = int(n)
    m.cohorts = [CohortRow(month_label(c), int(sizes[c]), grid[c]) for c in sorted(grid)]


def _rfm_grid(conn: sa.Connection, m: ShopMetrics) -> None:
    fm = fm_score(traits_t.c.frequency_score, traits_t.c.monetary_score)
    rows = conn.execute(
        sa.select(traits_t.c.recency_score, fm, sa.func.count())
        .where(traits_t.c.recency_score.is_not(None))
        .group_by(traits_t.c.recency_score, fm)
    ).all()
    grid = [[0] * 5 for _ in range(5)]
    for r, f, n in rows:
        grid[int(r) - 1][int(f) - 1] = int(n)
    m.rfm_grid = grid


def shop_metrics(*, runtime: Runtime, start: datetime, end: datetime) -> ShopMetrics:
    """Every metric of the period [start, end), and the RFM grid of the stored traits."""
    if not start < end:
        raise InvalidInputError("the period must start before it ends", field="from")
    m = ShopMetrics(start=start, end=end)
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        _period_summary(conn, m)
        _churn(conn, m)
        _cohorts(conn, m)
        _rfm_grid(conn, m)
    return m
