"""Date arithmetic that compiles to the same answer on SQLite and PostgreSQL.

Traits count days and months in UTC. SQLite stores ``UtcDateTime`` values as naive UTC text
(``YYYY-MM-DD HH:MM:SS.ffffff``), so the day is read straight from the text (no float rounding
near midnight); PostgreSQL converts the ``timestamptz`` to UTC first, whatever the session's
time zone. Both give integers, so summaries built on them are identical on either backend.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Integer
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

EPOCH = date(1970, 1, 1)


class day_number(FunctionElement[int]):  # noqa: N801  (SQL function style)
    """Days since 1970-01-01 of a UTC timestamp (the UTC calendar day as an integer)."""

    type = Integer()
    inherit_cache = True
    name = "day_number"


class month_number(FunctionElement[int]):  # noqa: N801
    """Months since year 0 (year * 12 + month - 1) of a UTC timestamp."""

    type = Integer()
    inherit_cache = True
    name = "month_number"


def _arg(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    (clause,) = list(element.clauses)
    return compiler.process(clause, **kw)


@compiles(day_number, "sqlite")
def _day_sqlite(element: day_number, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(julianday(substr({_arg(element, compiler, **kw)}, 1, 10)) - 2440587.5 AS INTEGER)"


@compiles(day_number, "postgresql")
def _day_pg(element: day_number, compiler: SQLCompiler, **kw: Any) -> str:
    arg = _arg(element, compiler, **kw)
    return f"(CAST(({arg}) AT TIME ZONE 'UTC' AS DATE) - DATE '1970-01-01')"


@compiles(month_number, "sqlite")
def _month_sqlite(element: month_number, compiler: SQLCompiler, **kw: Any) -> str:
    arg = _arg(element, compiler, **kw)
    return f"(CAST(substr({arg}, 1, 4) AS INTEGER) * 12 + CAST(substr({arg}, 6, 2) AS INTEGER) - 1)"


@compiles(month_number, "postgresql")
def _month_pg(element: month_number, compiler: SQLCompiler, **kw: Any) -> str:
    arg = _arg(element, compiler, **kw)
    utc = f"(({arg}) AT TIME ZONE 'UTC')"
    return (
        f"(CAST(EXTRACT(YEAR FROM {utc}) AS INTEGER) * 12 "
        f"+ CAST(EXTRACT(MONTH FROM {utc}) AS INTEGER) - 1)"
    )


class date_key(FunctionElement[str]):  # noqa: N801
    """A value identifying the UTC calendar day of a timestamp (for grouping and counting)."""

    inherit_cache = True
    name = "date_key"


@compiles(date_key, "sqlite")
def _date_key_sqlite(element: date_key, compiler: SQLCompiler, **kw: Any) -> str:
    return f"substr({_arg(element, compiler, **kw)}, 1, 10)"


@compiles(date_key, "postgresql")
def _date_key_pg(element: date_key, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(({_arg(element, compiler, **kw)}) AT TIME ZONE 'UTC' AS DATE)"


class day_start(FunctionElement[Any]):  # noqa: N801
    """The first instant of the UTC day of a timestamp, comparable with the column itself."""

    inherit_cache = True
    name = "day_start"


class next_day_start(FunctionElement[Any]):  # noqa: N801
    """The first instant of the UTC day after the day of a timestamp."""

    inherit_cache = True
    name = "next_day_start"


@compiles(day_start, "sqlite")
def _day_start_sqlite(element: day_start, compiler: SQLCompiler, **kw: Any) -> str:
    # Stored text 'YYYY-MM-DD HH:MM:SS...' compares after 'YYYY-MM-DD' for the same day.
    return f"substr({_arg(element, compiler, **kw)}, 1, 10)"


@compiles(next_day_start, "sqlite")
def _next_day_sqlite(element: next_day_start, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date(substr({_arg(element, compiler, **kw)}, 1, 10), '+1 day')"


@compiles(day_start, "postgresql")
def _day_start_pg(element: day_start, compiler: SQLCompiler, **kw: Any) -> str:
    arg = _arg(element, compiler, **kw)
    return f"(date_trunc('day', ({arg}) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"


@compiles(next_day_start, "postgresql")
def _next_day_pg(element: next_day_start, compiler: SQLCompiler, **kw: Any) -> str:
    arg = _arg(element, compiler, **kw)
    return (
        f"((date_trunc('day', ({arg}) AT TIME ZONE 'UTC') + INTERVAL '1 day') AT TIME ZONE 'UTC')"
    )


def python_day(moment: datetime | date) -> int:
    """The same day number as :class:`day_number`, computed in Python."""
    if isinstance(moment, datetime):
        moment = moment.astimezone(UTC).date()
    return (moment - EPOCH).days


def python_month(moment: datetime | date) -> int:
    """The same month number as :class:`month_number`, computed in Python."""
    if isinstance(moment, datetime):
        moment = moment.astimezone(UTC)
    return moment.year * 12 + moment.month - 1


def month_label(month: int) -> str:
    """``YYYY-MM`` of a month number."""
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


def subtract_months(moment: datetime, months: int) -> datetime:
    """``moment`` minus whole calendar months, the day clamped to the target month's length."""
    import calendar

    total = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(total, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


class no_index(FunctionElement[Any]):  # noqa: N801
    """The value itself, kept out of SQLite's choice of index (a unary ``+``; SQLAlchemy
    renders no index hints on SQLite). Used on a time range over orders so that SQLite scans
    the partial covering index of completed orders in subject order instead of looking up
    every order in the time range through the ``ordered_at`` index; PostgreSQL gets the bare
    expression (its planner costs both paths)."""

    inherit_cache = True
    name = "no_index"

    def __init__(self, clause: Any) -> None:
        super().__init__(clause)
        self.type = clause.type


@compiles(no_index, "sqlite")
def _no_index_sqlite(element: no_index, compiler: SQLCompiler, **kw: Any) -> str:
    return f"+{_arg(element, compiler, **kw)}"


@compiles(no_index, "postgresql")
def _no_index_pg(element: no_index, compiler: SQLCompiler, **kw: Any) -> str:
    return _arg(element, compiler, **kw)
