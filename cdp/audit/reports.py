"""Compliance reports over the audit log (data only; :mod:`cdp.audit.render` renders them).

* ``subject-access``: who read one subject's data, when, which fields, for what purpose; and who
  received it (every export that included the subject, from the exports' recipients ledger).
  A subject that absorbed others in merges is reported under every id it had
  (:mod:`cdp.profiles.former_ids`, listed in the parameters): the log keeps naming the id a
  record was written under.
* ``principal-activity``: what one principal did.
* ``denied-anomalies``: denied attempts, bursts of reads, purposes unusual for a role.
* ``processing``: records of processing — purposes, data categories and fields, roles with read
  access per category and purpose (from the policy in force), and retention per purpose (from the
  consent configuration when it is present).

Reports never contain personal values: the log holds none.
"""

from __future__ import annotations

import json
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa

from cdp.access.categories import (
    CATEGORIES,
    PURPOSE_DESCRIPTIONS,
    PURPOSES,
    fields_in,
    resource_for,
)
from cdp.access.engine import get_policy_engine
from cdp.audit.writer import LOG, SUBJECTS
from cdp.clock import Clock, utcnow
from cdp.errors import InvalidInputError
from cdp.runtime import Runtime

EARLIEST: Final = datetime(1900, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)
"""A report period lies within these (a year-1 time cannot even be compared in SQL as UTC)."""
KINDS: Final = ("subject-access", "principal-activity", "denied-anomalies", "processing")
LISTED_MAX: Final = 5_000
"""Most records listed in one report (aggregates always cover the whole period)."""
BURSTS_LISTED_MAX: Final = 5_000
"""Most bursts listed in one report (the others are counted in a note)."""
BURST_WINDOW: Final = timedelta(minutes=10)
BURST_THRESHOLD: Final = 100
"""A principal reading more than this many records' worth within the window is a burst."""
RARE_SHARE: Final = 0.05
RARE_MIN_RECORDS: Final = 20


@dataclass(frozen=True, slots=True)
class Access:
    """One audit record as reports show it."""

    seq: int
    at: datetime
    principal: str
    roles: str
    action: str
    resource: str
    subject_ids: tuple[str, ...]
    fields: tuple[str, ...]
    purpose: str
    outcome: str
    request_id: str
    client: str


@dataclass(frozen=True, slots=True)
class Recipient:
    """One disclosure of a subject's data to a recipient (filled by exports)."""

    at: datetime
    recipient: str
    purpose: str
    fields: tuple[str, ...]
    reference: str


@dataclass
class Report:
    """A report's content, ready to render."""

    kind: str
    title: str
    generated_at: datetime
    since: datetime
    until: datetime
    params: dict[str, str]
    accesses: list[Access] = field(default_factory=list)
    truncated: bool = False
    total: int = 0
    per_day: list[tuple[date, int]] = field(default_factory=list)
    counts: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    anomalies: list[dict[str, str]] = field(default_factory=list)
    recipients: list[Recipient] | None = None
    processing: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _access(row: Any) -> Access:
    m = row._mapping
    return Access(
        seq=int(m["seq"]),
        at=m["at"],
        principal=m["principal_name"],
        roles=m["roles"],
        action=m["action"],
        resource=m["resource"],
        subject_ids=tuple(json.loads(m["subject_ids"])),
        fields=tuple(json.loads(m["fields"])),
        purpose=m["purpose"],
        outcome=m["outcome"],
        request_id=m["request_id"],
        client=m["client"],
    )


def _stream(runtime: Runtime, query: sa.Select[Any]) -> Iterator[Any]:
    """The query's rows, fetched in batches (a server-side cursor on PostgreSQL): a report holds
    the rows it lists and running aggregates, never the whole period."""
    with runtime.data_engine.connect().execution_options(
        sqlite_begin="DEFERRED", stream_results=True, yield_per=5_000
    ) as conn:
        yield from conn.execute(query)


def _scalar(runtime: Runtime, query: sa.Select[Any]) -> Any:
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        return conn.execute(query).scalar_one()


class _Listing:
    """The records a report lists (the first :data:`LISTED_MAX`, as :class:`Access`) and how
    many there were; only the listed rows are decoded."""

    __slots__ = ("accesses", "total")

    def __init__(self) -> None:
        self.accesses: list[Access] = []
        self.total = 0

    def add(self, row: Any) -> None:
        self.total += 1
        if len(self.accesses) < LISTED_MAX:
            self.accesses.append(_access(row))

    def into(self, report: Report) -> None:
        report.accesses = self.accesses
        report.total = self.total
        report.truncated = self.total > LISTED_MAX


def _day(at: datetime) -> date:
    return at.astimezone(UTC).date()


def _every_day(days: Counter[date]) -> list[tuple[date, int]]:
    """Reads per day from the first day with a read to the last, days without one included."""
    if not days:
        return []
    first, last = min(days), max(days)
    return [
        (first + timedelta(days=i), days.get(first + timedelta(days=i), 0))
        for i in range((last - first).days + 1)
    ]


def _window(
    since: datetime | None, until: datetime | None, clock: Clock
) -> tuple[datetime, datetime]:
    for moment, name in ((since, "since"), (until, "until")):
        if moment is None:
            continue
        if moment.tzinfo is None:
            raise InvalidInputError("report periods need timezone-aware times", field=name)
        if not EARLIEST <= moment < LATEST:  # compared as instants: no overflowing conversion
            raise InvalidInputError(f"{name} must lie within 1900-2099", field=name)
    end = until or clock()
    start = since or end - timedelta(days=30)
    if start > end:
        raise InvalidInputError("the period starts after it ends", field="since")
    return start, end


def subject_access(
    *,
    runtime: Runtime,
    subject_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
    clock: Clock = utcnow,
) -> Report:
    """Who read ``subject_id``'s data (under any id it had) in the period, and who received it."""
    start, end = _window(since, until, clock)
    from cdp.profiles.former_ids import person_ids

    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        ids = person_ids(conn, subject_id)
    params = {"subject_id": subject_id}
    if len(ids) > 1:
        params["former_ids"] = ", ".join(ids[1:])
    report = Report("subject-access", "Subject access report", clock(), start, end, params)
    naming = sa.select(SUBJECTS.c.seq).where(SUBJECTS.c.subject_id.in_(ids))
    query = (
        sa.select(LOG)
        .where(LOG.c.seq.in_(naming), LOG.c.at >= start, LOG.c.at <= end)
        .order_by(LOG.c.seq)
    )
    listing = _Listing()
    days: Counter[date] = Counter()
    principals: Counter[str] = Counter()
    purposes: Counter[str] = Counter()
    fields: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    for row in _stream(runtime, query):
        listing.add(row)
        principals[row.principal_name] += 1
        purposes[row.purpose] += 1
        outcomes[row.outcome] += 1
        if row.outcome == "allowed":
            days[_day(row.at)] += 1
            fields.update(json.loads(row.fields))
    listing.into(report)
    report.per_day = _every_day(days)
    report.counts = {
        "principal": principals.most_common(),
        "purpose": purposes.most_common(),
        "field": fields.most_common(),
        "outcome": outcomes.most_common(),
    }
    from cdp.exports.ledger import disclosures  # exports record who received what

    report.recipients = disclosures(runtime, ids, start, end)
    return report


def principal_activity(
    *,
    runtime: Runtime,
    principal: str,
    since: datetime | None = None,
    until: datetime | None = None,
    clock: Clock = utcnow,
) -> Report:
    """Everything the principal named ``principal`` did in the period."""
    start, end = _window(since, until, clock)
    report = Report(
        "principal-activity",
        "Principal activity report",
        clock(),
        start,
        end,
        {"principal": principal},
    )
    where = (LOG.c.principal_name == principal, LOG.c.at >= start, LOG.c.at <= end)
    listing = _Listing()
    days: Counter[date] = Counter()
    actions: Counter[str] = Counter()
    purposes: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    for row in _stream(runtime, sa.select(LOG).where(*where).order_by(LOG.c.seq)):
        listing.add(row)
        actions[f"{row.action} {row.resource}"] += 1
        purposes[row.purpose] += 1
        outcomes[row.outcome] += 1
        if row.outcome == "allowed":
            days[_day(row.at)] += 1
    listing.into(report)
    report.per_day = _every_day(days)
    report.counts = {
        "action": actions.most_common(),
        "purpose": purposes.most_common(),
        "outcome": outcomes.most_common(),
        "subjects": [("distinct subjects", _distinct_subjects(runtime, where))],
    }
    return report


def _distinct_subjects(runtime: Runtime, where: tuple[sa.ColumnElement[bool], ...]) -> int:
    """How many distinct subjects the records matching ``where`` name, counted by the database
    from the records' own ``subject_ids`` (an export's record names thousands: a set of them in
    Python would grow with the period)."""
    if runtime.data_engine.dialect.name == "postgresql":
        ids = sa.func.json_array_elements_text(sa.cast(LOG.c.subject_ids, sa.JSON))
    else:
        ids = sa.func.json_each(LOG.c.subject_ids)
    each = ids.table_valued("value").alias("each_subject")
    query = (
        sa.select(sa.func.count(sa.distinct(each.c.value)))
        .select_from(LOG)
        .join(each, sa.true())
        .where(*where)
    )
    return int(_scalar(runtime, query))


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
        total = sum(purposes.values())
        for purpose, n in sorted(purposes.items()):
            granted = (
                any(
                    engine.decide(role_tuple, resource, "read", purpose).allowed
                    for resource in (resource_for(c) for c in CATEGORIES)
                )
                or engine.decide(role_tuple, "profile", "read", purpose).allowed
            )
            rare = total >= RARE_MIN_RECORDS and n / total < RARE_SHARE
            if not granted or rare:
                why = (
                    "no data access for this purpose in the policy"
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
    start, end = _window(since, until, clock)
    report = Report("denied-anomalies", "Denied access and anomaly report", clock(), start, end, {})
    query = sa.select(LOG).where(LOG.c.at >= start, LOG.c.at <= end).order_by(LOG.c.seq)
    listing = _Listing()  # the denied and error records
    days: Counter[date] = Counter()
    denied_by_principal: Counter[str] = Counter()
    denied_by_resource: Counter[str] = Counter()
    errors_by_resource: Counter[str] = Counter()
    bursts = _Bursts()
    by_role: dict[str, Counter[str]] = defaultdict(Counter)
    for row in _stream(runtime, query):
        outcome = row.outcome
        by_role[row.roles][row.purpose] += 1
        if outcome == "allowed":
            days[_day(row.at)] += 1
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


def _retention() -> dict[str, str]:
    try:
        from cdp.consent.purposes import PURPOSES as CONFIGURED
    except ImportError:  # the consent module is optional here
        return {}
    return {name: f"{cfg.retention.days} days" for name, cfg in CONFIGURED.items()}


def processing(*, runtime: Runtime, clock: Clock = utcnow) -> Report:
    """Records of processing: per purpose, the categories read and the roles allowed to."""
    now = clock()
    engine = get_policy_engine()
    report = Report(
        "processing",
        "Records of processing",
        now,
        now,
        now,
        {"policy_version": engine.policy_version},
    )
    retention = _retention()
    roles = sorted(engine.roles)
    for purpose in PURPOSES:
        categories = []
        for category in CATEGORIES:
            allowed = [
                r
                for r in roles
                if engine.decide((r,), resource_for(category), "read", purpose).allowed
            ]
            if allowed:
                categories.append(
                    {
                        "category": category,
                        "fields": ", ".join(fields_in(category)),
                        "roles": ", ".join(allowed),
                    }
                )
        report.processing.append(
            {
                "purpose": purpose,
                "description": PURPOSE_DESCRIPTIONS[purpose],
                "retention": retention.get(purpose, "not configured"),
                "categories": categories,
            }
        )
    if not retention:
        report.notes.append("Retention: no purpose configuration found (cdp.consent.purposes).")
    return report
