"""The shop's calendar: the generated period, shopping seasons and timestamp formatting.

Purchases follow a non-homogeneous rhythm: a daily curve (quiet at night, busy in the evening),
a weekly one, and the retail calendar of each market (11.11 and 6.18 in China, Black Friday and
the December run-up elsewhere, a dip over Chinese New Year). The calendar is turned into an
*operational clock* per market: one operational day is one average shopping day, so a
homogeneous purchase process on the operational clock becomes a seasonal one in calendar time.
All times are whole seconds since the Unix epoch, in UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from cdp.demo.locales import MARKETS

DAY = 86_400
HOUR = 3_600

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# Local hour-of-day curve (0h..23h), before normalisation.
_HOURS = np.array(
    [0.45, 0.25, 0.15, 0.10, 0.08, 0.10, 0.20, 0.40, 0.65, 0.85, 1.00, 1.10,
     1.25, 1.20, 1.05, 1.00, 1.00, 1.05, 1.15, 1.35, 1.60, 1.70, 1.45, 0.90],
)  # fmt: skip
_HOURS_CN = _HOURS.copy()
_HOURS_CN[20:24] = [1.80, 2.00, 1.90, 1.30]  # evening live-stream sales
_WEEKDAYS = np.array([1.02, 0.98, 0.97, 0.97, 0.95, 1.00, 1.11])  # Monday..Sunday

# Chinese New Year's day; spending dips for about two weeks around it.
_SPRING_FESTIVAL = {
    2023: date(2023, 1, 22), 2024: date(2024, 2, 10), 2025: date(2025, 1, 29),
    2026: date(2026, 2, 17), 2027: date(2027, 2, 6), 2028: date(2028, 1, 26),
    2029: date(2029, 2, 13), 2030: date(2030, 2, 3),
}  # fmt: skip

SIGNUP_GROWTH = 3.0
"""New customers per day at the end of the period relative to its start."""


def _black_friday(year: int) -> date:
    """The day after the fourth Thursday of November."""
    first = date(year, 11, 1)
    thursday = first + timedelta(days=(3 - first.weekday()) % 7 + 21)
    return thursday + timedelta(days=1)


def season_factor(country: str, day: date) -> float:
    """How busy `day` is in `country` relative to an ordinary day."""
    m, d = day.month, day.day
    if country == "CN":
        factor = 1.0
        if m == 11 and d == 11:
            factor = 6.0
        elif m == 11 and d <= 10:
            factor = 1.9
        elif m == 10 and d >= 24:
            factor = 1.4  # 11.11 pre-sales
        elif m == 6 and d == 18:
            factor = 4.0
        elif m == 6 and d < 18:
            factor = 1.6
        elif m == 12 and d == 12:
            factor = 2.2
        festival = _SPRING_FESTIVAL.get(day.year)
        if festival is not None and abs((day - festival).days) <= 7:
            factor *= 0.55
        return factor
    black_friday = _black_friday(day.year)
    offset = (day - black_friday).days
    if offset == 0:
        return 4.0
    if offset == 3:
        return 3.0  # Cyber Monday
    if -6 <= offset <= 4:
        return 1.7
    if m == 12 and d <= 22:
        return 1.5
    if m == 12 and d in (24, 25):
        return 0.5
    if m == 1 and d <= 10 and country in ("GB", "DE", "FR"):
        return 1.3  # January sales
    if country == "JP" and m == 12:
        return 1.3
    return 1.0


class Timeline:
    """The generated period [start 00:00Z, end + 1 day 00:00Z) and its per-market clocks."""

    def __init__(self, start: date, end: date) -> None:
        if end < start:
            raise ValueError(f"end {end} is before start {start}")
        self.start_day = start
        self.end_day = end
        self.start = _epoch(start)
        self.end = _epoch(end + timedelta(days=1))
        hours = (self.end - self.start) // HOUR
        self._grid: FloatArray = self.start + HOUR * np.arange(hours + 1, dtype=np.float64)
        self._clock: list[FloatArray] = []
        self._signup_clock: list[FloatArray] = []
        growth = np.exp(np.log(SIGNUP_GROWTH) * (np.arange(hours) + 0.5) / hours)
        for market in MARKETS:
            intensity = self._hourly_intensity(market.country, market.utc_offset_hours, hours)
            self._clock.append(_cumulative(intensity))
            self._signup_clock.append(_cumulative(growth * intensity**0.6))

    @property
    def days(self) -> int:
        """Number of calendar days in the period."""
        return (self.end - self.start) // DAY

    def _hourly_intensity(self, country: str, offset: int, hours: int) -> FloatArray:
        local = np.arange(hours) + offset  # local hours since start's midnight
        local_day = np.floor_divide(local, 24)
        first = int(local_day.min())
        day_factor = np.array(
            [
                season_factor(country, self.start_day + timedelta(days=k))
                * _WEEKDAYS[(self.start_day + timedelta(days=k)).weekday()]
                for k in range(first, int(local_day.max()) + 1)
            ]
        )
        curve = _HOURS_CN if country == "CN" else _HOURS
        result: FloatArray = day_factor[local_day - first] * (curve / curve.mean())[local % 24]
        return result

    # --- operational clock ---------------------------------------------------------------

    def to_clock(self, market: int, t: FloatArray) -> FloatArray:
        """Calendar seconds -> operational days of `market` (0 at start)."""
        result: FloatArray = np.interp(t, self._grid, self._clock[market])
        return result

    def from_clock(self, market: int, u: FloatArray) -> FloatArray:
        """Operational days of `market` -> calendar seconds."""
        result: FloatArray = np.interp(u, self._clock[market], self._grid)
        return result

    def clock_end(self, market: int) -> float:
        """Operational length of the whole period for `market` (about `days`)."""
        return float(self._clock[market][-1])

    def signup_times(self, market: int, uniform: FloatArray) -> FloatArray:
        """Map uniforms in [0, 1) to sign-up times following growth and the shopping season."""
        clock = self._signup_clock[market]
        result: FloatArray = np.interp(uniform * clock[-1], clock, self._grid)
        return result


def _epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _cumulative(intensity: FloatArray) -> FloatArray:
    """Cumulative hourly clock, scaled so that its total equals the number of days."""
    days = len(intensity) / 24.0
    clock: FloatArray = np.concatenate(([0.0], np.cumsum(intensity) * (days / intensity.sum())))
    return clock
