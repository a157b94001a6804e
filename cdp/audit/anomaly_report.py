"""The ``denied-anomalies`` report: denied attempts, bursts of reads and purposes unusual for a
role, found in one pass over the audit log."""

from __future__ import annotations

from array import array
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Final

import sqlalchemy as sa

from cdp.access.engine import get_policy_engine
from cdp.audit.operations import SYSTEM_ROLES
from cdp.audit.reports import Listing, Report, day, stream, window
from cdp.audit.writer import LOG
from cdp.clock import Clock, utcnow
from cdp.runtime import Runtime

BURSTS_LISTED_MAX: Final = 5_000
"""Most bursts listed in one report (the others are counted in a note)."""
BURST_WINDOW: Final = timedelta(minutes=10)
BURST_THRESHOLD: Final = 100
"""A principal reading more than this many records' worth within the window is a burst."""
RARE_SHARE: Final = 0.05
RARE_MIN_RECORDS: Final = 20


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


class _Window:
    """One principal's allowed reads within the burst window, as :class:`_Bursts` sees them."""

    __slots__ = ("flagged_until", "left", "times")

    def __init__(self) -> None:
        self.times: array[int] = array("q")
        """Times of reads (microseconds since 1970), oldest first; those before ``left`` have
        left the window (dropped from time to time)."""
        self.left = 0
        self.flagged_until: int | None = None
        """Where the window of the last burst flagged ends."""


class _Bursts:
    """Bursts of allowed reads, found as the rows stream by: for each principal, the times of
    its reads within the last window (microseconds in an array: 8 bytes a read, bounded by one
    window's reads, never the period's) and where the last burst's window ends. The first
    :data:`BURSTS_LISTED_MAX` bursts are kept (a principal reading without a pause is flagged again
    each time the window of its last burst has passed); the others are only counted."""

    def __init__(self) -> None:
        self._window = BURST_WINDOW // _MICROSECOND
        self._windows: dict[str, _Window] = {}
        self._found: dict[str, list[dict[str, str]]] = {}
        self._kept = 0
        self.unlisted = 0
        """Bursts found past the first :data:`BURSTS_LISTED_MAX`."""

    def add(self, principal: str, at: datetime) -> None:
        """One allowed read (rows in sequence order)."""
        w = self._windows.get(principal)
        if w is None:
            w = self._windows[principal] = _Window()
            self._found[principal] = []
        times = w.times
        now = (at - _EPOCH) // _MICROSECOND
        times.append(now)
        left = w.left
        while now - times[left] > self._window:
            left += 1
        if len(times) - left > BURST_THRESHOLD and (
            w.flagged_until is None or now > w.flagged_until
        ):
            w.flagged_until = times[left] + self._window
            self._flag(principal, times[left])
        if left > 4096 and 2 * left > len(times):  # drop the reads that left the window
            del times[:left]
            left = 0
        w.left = left

    def _flag(self, principal: str, start: int) -> None:
        if self._kept >= BURSTS_LISTED_MAX:
            self.unlisted += 1
            return
        self._kept += 1
        self._found[principal].append(
            {
                "kind": "burst",
                "principal": principal,
                "at": (_EPOCH + start * _MICROSECOND).isoformat(timespec="seconds"),
                "detail": f"more than {BURST_THRESHOLD} reads within "
                f"{int(BURST_WINDOW.total_seconds() // 60)} minutes",
            }
        )

    def found(self) -> list[dict[str, str]]:
        """The bursts, by principal in order of each one's first read, then in time order."""
        return [burst for bursts in self._found.values() for burst in bursts]


def _unusual_purposes(by_role: dict[str, Counter[str]]) -> list[dict[str, str]]:
    """Purposes unusual for a role, from each role list's records counted by purpose."""
    engine = get_policy_engine()
    found: list[dict[str, str]] = []
    for roles, purposes in sorted(by_role.items()):
        role_tuple = tuple(r for r in roles.split(",") if r)
        if role_tuple == SYSTEM_ROLES:
            continue  # cdp's own records (the operator's commands, retention): no one chose
        total = sum(purposes.values())
        for purpose, n in sorted(purposes.items()):
            # any allow for the purpose counts (an auditor reads the log for ``audit``, a
            # marketer exports segments for ``email_marketing``), not only personal-data reads
            granted = engine.allows_purpose(role_tuple, purpose)
            rare = total >= RARE_MIN_RECORDS and n / total < RARE_SHARE
            if not granted or rare:
                why = (
                    "the policy allows this role nothing for this purpose"
                    if not granted
                    else (f"{n} of {total} records ({n / total:.1%})")
                )
                found.append(
                    {
                        "kind": "unusual purpose",
                        "principal": f"role {roles}",
                        "at": purpose,
                        "detail": why,
                    }
                )
    return found


def denied_anomalies(
    *,
    runtime: Runtime,
    since: datetime | None = None,
    until: datetime | None = None,
    clock: Clock = utcnow,
) -> Report:
    """Denied attempts, bursts of reads and purposes unusual for a role, in the period."""
    start, end = window(since, until, clock)
    report = Report("denied-anomalies", "Denied access and anomaly report", clock(), start, end, {})
    query = sa.select(LOG).where(LOG.c.at >= start, LOG.c.at <= end).order_by(LOG.c.seq)
    listing = Listing()  # the denied and error records
    days: Counter[date] = Counter()
    denied_by_principal: Counter[str] = Counter()
    denied_by_resource: Counter[str] = Counter()
    errors_by_resource: Counter[str] = Counter()
    bursts = _Bursts()
    by_role: dict[str, Counter[str]] = defaultdict(Counter)
    for row in stream(runtime, query):
        outcome = row.outcome
        by_role[row.roles][row.purpose] += 1
        if outcome == "allowed":
            days[day(row.at)] += 1
            bursts.add(row.principal_name, row.at)
            continue
        listing.add(row)
        if outcome == "denied":
            denied_by_principal[row.principal_name] += 1
            denied_by_resource[row.resource] += 1
        elif outcome == "error":
            errors_by_resource[row.resource] += 1
    listing.into(report)
    report.per_day = sorted(days.items())
    report.counts = {
        "denied by principal": denied_by_principal.most_common(),
        "denied by resource": denied_by_resource.most_common(),
        "errors by resource": errors_by_resource.most_common(),
    }
    report.anomalies = bursts.found() + _unusual_purposes(by_role)
    if bursts.unlisted:
        report.notes.append(
            f"{bursts.unlisted} more bursts were found and are not listed "
            f"(the first {BURSTS_LISTED_MAX} are)."
        )
    return report
