"""RFM scores (1-5 by quintiles of the buyers) and the named RFM segments, as SQL expressions.

Scoring rule (ties consistent): a buyer's score on a measure is
``1 + floor(5 * (number of buyers with a strictly lower value) / number of buyers)``, i.e.
``1 + floor(5 * percent_rank)`` computed with integers. Equal values always get the same score
(the lowest of the quintiles they span), so a large tie — e.g. every one-time buyer on
frequency — lands in one score and some scores may stay empty. Recency ranks the last purchase
day (later is better), frequency the purchase occasions, monetary the total value rounded to
cents (so that float sums computed in a different order still tie).

Segments are read off the grid of R against FM = ceil((F + M) / 2): see :data:`SEGMENT_GRID`.
"""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

SEGMENTS: Final = (
    "champions",
    "loyal",
    "potential_loyalist",
    "new",
    "promising",
    "need_attention",
    "about_to_sleep",
    "at_risk",
    "cant_lose",
    "hibernating",
    "lost",
)

# (segment, recency scores, FM scores): the first match wins, in this order.
SEGMENT_GRID: Final[tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]] = (
    ("champions", (5,), (4, 5)),
    ("loyal", (3, 4), (4, 5)),
    ("potential_loyalist", (4, 5), (2, 3)),
    ("new", (5,), (1,)),
    ("promising", (4,), (1,)),
    ("need_attention", (3,), (3,)),
    ("about_to_sleep", (3,), (1, 2)),
    ("cant_lose", (1, 2), (5,)),
    ("at_risk", (1, 2), (3, 4)),
    ("lost", (1,), (1,)),
    ("hibernating", (1, 2), (1, 2)),
)


def lower_rank(value: ColumnElement[Any]) -> ColumnElement[int]:
    """``rank() - 1`` over all rows of the query ordered by ``value``: the number of rows with
    a strictly lower value (equal values share it)."""
    return sa.func.rank().over(order_by=value) - 1


def score_from_lower(lower: ColumnElement[Any], buyers: ColumnElement[Any]) -> ColumnElement[int]:
    """``1 + 5 * lower // n``: the score of a buyer with ``lower`` buyers strictly below."""
    return 1 + (5 * lower) // buyers


def quintile_score(value: ColumnElement[Any], buyers: ColumnElement[Any]) -> ColumnElement[int]:
    """``1 + 5 * (rank() - 1) // n`` over all rows of the query, ordered by ``value``."""
    return score_from_lower(lower_rank(value), buyers)


def monetary_key(total: ColumnElement[Any]) -> ColumnElement[Any]:
    """The total rounded to cents, as the monetary ranking key."""
    return sa.func.round(sa.cast(total, sa.Numeric), 2)


def fm_score(frequency: ColumnElement[Any], monetary: ColumnElement[Any]) -> ColumnElement[int]:
    """ceil((F + M) / 2) in integers."""
    return (frequency + monetary + 1) // 2


def segment_name(recency: ColumnElement[Any], fm: ColumnElement[Any]) -> ColumnElement[str]:
    """The named segment for (R, FM) per :data:`SEGMENT_GRID`; NULL without scores."""
    whens = [
        (sa.and_(recency.in_(rs), fm.in_(fs)), sa.literal(name)) for name, rs, fs in SEGMENT_GRID
    ]
    return sa.case(*whens, else_=sa.null())


def python_segment(recency: int, frequency: int, monetary: int) -> str:
    """The same naming in Python (reference, docs, charts)."""
    fm = (frequency + monetary + 1) // 2
    for name, rs, fs in SEGMENT_GRID:
        if recency in rs and fm in fs:
            return name
    raise AssertionError("the grid covers every score pair")
