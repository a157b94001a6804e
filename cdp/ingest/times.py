"""What a record's time may be: ISO 8601 text (never a number read as Unix seconds), in UTC,
within 1900-2099 and no further ahead of the clock than the consent service's ``CLOCK_SKEW``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from cdp.clock import utcnow
from cdp.consent.service import CLOCK_SKEW

MIN_DATE = date(1900, 1, 1)
MAX_DATE = date(2100, 1, 1)


def latest_time(context: Mapping[str, Any] | None) -> datetime:
    """The latest time a record may carry: ``latest_time`` in the validation context (the run's
    or request's clock plus the skew), else now plus the clock skew the consent service allows."""
    latest = (context or {}).get("latest_time")
    return latest if latest is not None else utcnow() + CLOCK_SKEW


def not_future(value: datetime, context: Mapping[str, Any] | None) -> datetime:
    """A time ahead of the clock (beyond the skew) is refused: a consent grant dated 2095 would
    outrank every later withdrawal, a customer record would win precedence forever, an order or
    event would distort recency — the consent service refuses them too."""
    if value > latest_time(context):
        raise ValueError(f"lies in the future (more than {CLOCK_SKEW} ahead of the clock)")
    return value


RANGE_MESSAGE = "date is outside 1900-2099"


def aware(value: datetime) -> datetime:
    """Naive timestamps are read as UTC; every stored time is UTC, within 1900-2099.

    A time whose offset takes it past year 1 or 9999 in UTC (``0001-01-01T00:00:00+01:00``)
    cannot even be converted (``OverflowError``, which pydantic would not turn into a
    validation error): it is outside the range as well, and refused with the same ValueError."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise ValueError(RANGE_MESSAGE) from None
    if not (MIN_DATE <= value.date() < MAX_DATE):
        raise ValueError(RANGE_MESSAGE)
    return value
