"""CLV customer summaries: from the orders, or from the order facts of the last traits run.

The summary of each buyer covers the completed orders up to the end of the calibration day,
in whole UTC days (so it is identical on SQLite and PostgreSQL), converted to weeks:
frequency x = purchase occasions - 1 (repeat purchase days), recency t_x = (last day - first
day) / 7, age T = (calibration day - first day) / 7, and mean spend per repeat occasion
m = (total value - value of the first day) / x.

Two sources, same numbers (``tests/traits/test_clv_facts_summary.py`` checks it):

* :func:`orders_summary` reads every completed order (one pass over the partial covering index,
  grouped by subject): always current, and its cost grows with the orders.
* :func:`facts_summary` reads ``subject_traits``, which ``cdp traits compute`` has just written
  (occasions, first and last order, total value and the first day's value, per buyer), so the
  summary is one scan of a row per buyer. It applies only when the traits were computed on
  the day after the calibration day (``cdp traits compute`` fits on the data up to yesterday);
  the buyers who ordered between midnight and the traits run are summarised again from their
  own orders (index seeks). It is a snapshot of the traits run: orders stored after that run
  count at the next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from cdp.traits.bulk import bulk_session
from cdp.traits.eligibility import marketing_allowed
from cdp.traits.facts import subject_facts
from cdp.traits.models import SubjectTraits
from cdp.traits.sqlfuncs import day_number, python_day

traits_t = SubjectTraits.__table__  # type: ignore[attr-defined]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Summary:
    """Per-buyer BG/NBD inputs (weeks) and mean repeat spend (NaN where x == 0), in subject
    order; ``source`` says where it was read from (``orders`` or ``facts``)."""

    subject_ids: list[str]
    frequency: FloatArray
    recency: FloatArray
    age: FloatArray
    mean_spend: FloatArray
    source: str = "orders"


def day_end(day: date) -> datetime:
    """The first instant after ``day`` (UTC): orders before it belong to the day or earlier."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


def summary_select(
    calibration_end: date, dialect: str = "sqlite", subjects: sa.Select[Any] | None = None
) -> sa.Select[Any]:
    """Per allowed buyer up to the end of ``calibration_end``, in subject order: purchase
    occasions, first and last day, total value and the value of the first day (``subjects``
    limits it to some subjects)."""
    facts = subject_facts(
        day_end(calibration_end), first_value=True, dialect=dialect, subjects=subjects
    )
    c = facts.selected_columns
    return (
        facts.with_only_columns(
            c.subject_id, c.occasions, c.first_day, c.last_day, c.total_value, c.first_value
        )
        .having(marketing_allowed(c.subject_id))
        .order_by(c.subject_id)
    )


def _to_summary(rows: list[Any], calibration_end: date, source: str) -> Summary:
    """Rows of (subject, occasions, first day, last day, total, first day's value)."""
    end_day = python_day(calibration_end)
    cols: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [()] * 6
    ids = list(cols[0])
    occ, first, last, total, first_value = (np.array(c, dtype=np.float64) for c in cols[1:])
    x = occ - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_spend = np.where(x > 0, (total - first_value) / np.maximum(x, 1), np.nan)
    return Summary(ids, x, (last - first) / 7.0, (end_day - first) / 7.0, mean_spend, source)


def orders_summary(conn: sa.Connection, *, calibration_end: date) -> Summary:
    """The summaries of every allowed buyer with a completed order on or before the day.

    One pass over the partial covering index of completed orders (grouped by subject, already
    in subject order) plus an index seek per buyer for the value of its first day; the rows
    are read through the driver (the columns are numbers) into numpy arrays."""
    with bulk_session(conn):
        rows = conn.execute(summary_select(calibration_end, conn.dialect.name)).all()
    return _to_summary(list(rows), calibration_end, "orders")


def facts_computed_at(conn: sa.Connection) -> datetime | None:
    """When the stored order facts were computed, if they can serve a CLV summary: one run
    wrote every row (one ``computed_at``) and every buyer has its first day's value (rows
    written before that column existed do not)."""
    t = traits_t
    stamp = conn.execute(
        sa.select(
            sa.func.min(t.c.computed_at),
            sa.func.max(t.c.computed_at),
            sa.func.count().filter(sa.and_(t.c.orders > 0, t.c.first_day_value.is_(None))),
        )
    ).one()
    low, high, missing = stamp
    if low is None or low != high or missing:
        return None
    return low if isinstance(low, datetime) else None


def facts_summary(conn: sa.Connection, *, calibration_end: date) -> Summary | None:
    """The same summaries from ``subject_traits``, or None when the stored facts do not
    apply to ``calibration_end`` (see the module's docstring)."""
    computed_at = facts_computed_at(conn)
    if computed_at is None or computed_at.astimezone(UTC).date() != calibration_end + timedelta(
        days=1
    ):
        return None
    end = day_end(calibration_end)
    t = traits_t
    # Buyers with an order between the end of the calibration day and the traits run.
    late = sa.select(t.c.subject_id).where(t.c.orders > 0, t.c.last_order_at >= end)
    stored = (
        sa.select(
            t.c.subject_id,
            t.c.occasions,
            day_number(t.c.first_order_at),
            day_number(t.c.last_order_at),
            t.c.total_value,
            t.c.first_day_value,
        )
        .where(t.c.orders > 0, t.c.last_order_at < end, marketing_allowed(t.c.subject_id))
        .order_by(t.c.subject_id)
    )
    with bulk_session(conn):
        rows = list(conn.execute(stored).all())
        again = list(
            conn.execute(summary_select(calibration_end, conn.dialect.name, subjects=late)).all()
        )
    if again:
        rows = sorted(rows + again, key=lambda r: str(r[0]))
    return _to_summary(rows, calibration_end, "facts")


def summary(conn: sa.Connection, *, calibration_end: date, from_facts: bool = False) -> Summary:
    """The CLV summaries up to the end of ``calibration_end``: from the stored order facts
    when ``from_facts`` and they apply (:func:`facts_summary`), else from the orders."""
    if from_facts:
        found = facts_summary(conn, calibration_end=calibration_end)
        if found is not None:
            return found
    return orders_summary(conn, calibration_end=calibration_end)
