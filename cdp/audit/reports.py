"""Compliance reports over the audit log (data only; :mod:`cdp.audit.render` renders them).

* ``subject-access``: who read one subject's data, when, which fields, for what purpose; and who
  received it (every export that included the subject, from the exports' recipients ledger).
* ``principal-activity``: what one principal did.
* ``denied-anomalies``: denied attempts, bursts of reads, purposes unusual for a role.
* ``processing``: records of processing — purposes, data categories and fields, roles with read
  access per category and purpose (from the policy in force), and retention per purpose (from the
  consent configuration when it is present).

Reports never contain personal values: the log holds none.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
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


def _stream(runtime: Runtime, query: sa.Select[Any]) -> Iterator[Access]:
    with runtime.data_engine.connect().execution_options(
        sqlite_begin="DEFERRED", stream_results=True, yield_per=5_000
    ) as conn:
        for row in conn.execute(query):
            yield _access(row)


def _collect(report: Report, rows: Iterator[Access]) -> list[Access]:
    days: Counter[date] = Counter()
    everything: list[Access] = []
    for a in rows:
        everything.append(a)
        if a.outcome == "allowed":
            days[a.at.astimezone(UTC).date()] += 1
    report.total = len(everything)
    report.accesses = everything[:LISTED_MAX]
    report.truncated = len(everything) > LISTED_MAX
    if days:
        first, last = min(days), max(days)
        report.per_day = [
            (first + timedelta(days=i), days.get(first + timedelta(days=i), 0))
            for i in range((last - first).days + 1)
        ]
    return everything


def _count(rows: list[Access], key: Callable[[Access], str]) -> list[tuple[str, int]]:
    return Counter(key(a) for a in rows).most_common()


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
    """Who read ``subject_id``'s data in the period, and who received it."""
    start, end = _window(since, until, clock)
    report = Report(
        "subject-access", "Subject access report", clock(), start, end, {"subject_id": subject_id}
    )
    query = (
        sa.select(LOG)
        .join(SUBJECTS, SUBJECTS.c.seq == LOG.c.seq)
        .where(SUBJECTS.c.subject_id == subject_id, LOG.c.at >= start, LOG.c.at <= end)
        .order_by(LOG.c.seq)
    )
    rows = _collect(report, _stream(runtime, query))
    report.counts = {
        "principal": _count(rows, lambda a: a.principal),
        "purpose": _count(rows, lambda a: a.purpose),
        "field": Counter(f for a in rows if a.outcome == "allowed" for f in a.fields).most_common(),
        "outcome": _count(rows, lambda a: a.outcome),
    }
    from cdp.exports.ledger import disclosures  # exports record who received what

    report.recipients = disclosures(runtime, subject_id, start, end)
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
    query = (
        sa.select(LOG)
        .where(LOG.c.principal_name == principal, LOG.c.at >= start, LOG.c.at <= end)
        .order_by(LOG.c.seq)
    )
    rows = _collect(report, _stream(runtime, query))
    report.counts = {
        "action": _count(rows, lambda a: f"{a.action} {a.resource}"),
        "purpose": _count(rows, lambda a: a.purpose),
        "outcome": _count(rows, lambda a: a.outcome),
        "subjects": [("distinct subjects", len({s for a in rows for s in a.subject_ids}))],
    }
    return report


def _bursts(rows: list[Access]) -> list[dict[str, str]]:
    by_principal: dict[str, list[Access]] = defaultdict(list)
    for a in rows:
        if a.outcome == "allowed":
            by_principal[a.principal].append(a)
    found: list[dict[str, str]] = []
    for name, items in by_principal.items():
        left = 0
        flagged_until: datetime | None = None
        for right, a in enumerate(items):
            while a.at - items[left].at > BURST_WINDOW:
                left += 1
            if right - left + 1 > BURST_THRESHOLD and (
                flagged_until is None or a.at > flagged_until
            ):
                flagged_until = items[left].at + BURST_WINDOW
                found.append(
                    {
                        "kind": "burst",
                        "principal": name,
                        "at": items[left].at.isoformat(timespec="seconds"),
                        "detail": f"more than {BURST_THRESHOLD} reads within "
                        f"{int(BURST_WINDOW.total_seconds() // 60)} minutes",
                    }
                )
    return found


def _unusual_purposes(rows: list[Access]) -> list[dict[str, str]]:
    engine = get_policy_engine()
    by_role: dict[str, Counter[str]] = defaultdict(Counter)
    for a in rows:
        by_role[a.roles][a.purpose] += 1
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
    everything = list(_stream(runtime, query))
    denied = [a for a in everything if a.outcome != "allowed"]
    _collect(report, iter(denied))
    days: Counter[date] = Counter(
        a.at.astimezone(UTC).date() for a in everything if a.outcome == "allowed"
    )
    report.per_day = sorted(days.items())
    report.counts = {
        "denied by principal": _count(
            [a for a in denied if a.outcome == "denied"], lambda a: a.principal
        ),
        "denied by resource": _count(
            [a for a in denied if a.outcome == "denied"], lambda a: a.resource
        ),
        "errors by resource": _count(
            [a for a in denied if a.outcome == "error"], lambda a: a.resource
        ),
    }
    report.anomalies = _bursts(everything) + _unusual_purposes(everything)
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
