"""Intervals written as a number and a unit: ``30m``, ``6h``, ``1d`` (export schedules'
``--every``, ``CDP_TRAITS_INTERVAL``, ``rotate-secret --overlap``)."""

from __future__ import annotations

import re

_EVERY = re.compile(r"^(\d+)([smhd])\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_EVERY_SECONDS = 60
MAX_EVERY_SECONDS = 366 * 86_400
"""At most once a year: a schedule's interval is stored as a 32-bit integer on PostgreSQL, and
next-run times must stay within the calendar."""


def parse_every(text: str) -> int:
    """``"30m"``, ``"6h"``, ``"1d"`` -> seconds, from one minute to 366 days; ``ValueError``
    saying which rule the text breaks (never quoting it)."""
    match = _EVERY.match(text.strip())
    if match is None:
        raise ValueError("must look like 30m, 6h or 1d")
    digits = match.group(1)
    if len(digits) > 12:
        raise ValueError("must be at most 366 days")
    seconds = int(digits) * _UNITS[match.group(2)]
    if seconds < MIN_EVERY_SECONDS:
        raise ValueError("must be at least one minute")
    if seconds > MAX_EVERY_SECONDS:
        raise ValueError("must be at most 366 days")
    return seconds


def parse_span(text: str, *, at_most: int) -> int:
    """``"0"``, ``"90s"``, ``"30m"``, ``"24h"``, ``"7d"`` -> seconds, from 0 to ``at_most``;
    ``ValueError`` saying which rule the text breaks (never quoting it)."""
    text = text.strip()
    if text == "0":
        return 0
    match = _EVERY.match(text)
    if match is None:
        raise ValueError("must be 0 or look like 30m, 24h or 1d")
    digits = match.group(1)
    too_long = f"must be at most {at_most} seconds"
    if len(digits) > 12:
        raise ValueError(too_long)
    seconds = int(digits) * _UNITS[match.group(2)]
    if seconds > at_most:
        raise ValueError(too_long)
    return seconds
