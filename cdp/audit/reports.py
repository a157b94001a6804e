"""Compliance reports over the audit log (data only; :mod:`cdp.audit.render` renders them): what
a report holds, its period, and reading the log for it.

* ``subject-access``: who read one subject's data, when, which fields, for what purpose; and who
  received it (every export that included the subject, from the exports' recipients ledger).
  A subject that absorbed others in merges is reported under every id it had
  (:mod:`cdp.profiles.former_ids`, listed in the parameters): the log keeps naming the id a
  record was written under. See :mod:`cdp.audit.activity_reports`.
* ``principal-activity``: what one principal did (:mod:`cdp.audit.activity_reports`).
* ``denied-anomalies``: denied attempts, bursts of reads, purposes unusual for a role
  (:mod:`cdp.audit.anomaly_report`).
* ``processing``: records of processing — purposes, data categories and fields, roles with read
  access per category and purpose (from the policy in force), the roles that may export for each
  purpose and the destinations (recipients) serving it, and retention per purpose (from the
  consent configuration when it is present) (:mod:`cdp.audit.processing_report`).

Reports never contain personal values: the log holds none.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa

from cdp.clock import Clock
from cdp.errors import InvalidInputError
from cdp.runtime import Runtime

EARLIEST: Final = datetime(1900, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)
"""A report period lies within these (a year-1 time cannot even be compared in SQL as UTC)."""
KINDS: Final = ("subject-access", "principal-activity", "denied-anomalies", "processing")
LISTED_MAX: Final = 5_000
"""Most records listed in one report (aggregates always cover the whole period)."""


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


def stream(runtime: Runtime, query: sa.Select[Any]) -> Iterator[Any]:
    """The query's rows, fetched in batches (a server-side cursor on PostgreSQL): a report holds
    the rows it lists and running aggregates, never the whole period."""
    with runtime.data_engine.connect().execution_options(
        sqlite_begin="DEFERRED", stream_results=True, yield_per=5_000
    ) as conn:
        yield from conn.execute(query)


def scalar(runtime: Runtime, query: sa.Select[Any]) -> Any:
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        return conn.execute(query).scalar_one()


class Listing:
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


def day(at: datetime) -> date:
    return at.astimezone(UTC).date()


def every_day(days: Counter[date]) -> list[tuple[date, int]]:
    """Reads per day from the first day with a read to the last, days without one included."""
    if not days:
        return []
    first, last = min(days), max(days)
    return [
        (first + timedelta(days=i), days.get(first + timedelta(days=i), 0))
        for i in range((last - first).days + 1)
    ]


def window(
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
