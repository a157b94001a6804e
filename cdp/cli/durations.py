"""Durations on the command line: ``3600s``, ``90m``, ``12h``, ``30d``, ``2w``."""

from __future__ import annotations

import re
from datetime import timedelta

from cdp.errors import InvalidInputError

_DURATION = re.compile(r"^(\d+)([smhdw])\Z")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str, *, option: str, most: timedelta, too_long: str) -> timedelta:
    """``90m``, ``12h``, ``30d``, ``2w`` -> a timedelta; ``InvalidInputError`` naming ``option``
    when it does not parse, or saying ``too_long`` when it is longer than ``most``."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise InvalidInputError("durations look like 3600s, 90m, 12h, 30d or 2w", field=option)
    try:
        value = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    except OverflowError:
        raise InvalidInputError(too_long, field=option) from None
    if value > most:
        raise InvalidInputError(too_long, field=option)
    return value
