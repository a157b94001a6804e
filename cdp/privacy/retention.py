"""Retention tied to purpose and consent, not one global TTL.

Rules, applied in this order by :func:`run_retention` (``cdp retention run``; ``cdp serve`` calls
the same function daily):

1. **Per-purpose windows.** A registry entry with a ``time_column`` and ``retention`` purposes
   (events: ``analytics``, ``personalization``; orders: ``support``) keeps a row while it is younger
   than the window of at least one of those purposes *for which the subject has a basis now*
   (:func:`cdp.consent.ledger_state.granted_condition`: consent granted, legitimate interest
   not objected to, contract always). Older rows get the entry's erasure treatment: events are
   deleted, orders lose their personal link (they stay, anonymous, for the accounts).
2. **Access packages** produced for requests are deleted after ``CDP_PRIVACY_PACKAGE_DAYS``.
3. **Export files** (adds, removes, the manifest file) are deleted ``CDP_EXPORT_FILE_DAYS`` after
   their run (:func:`cdp.exports.file_expiry.expire_export_files`): they are a hand-off to the
   destination's tool, and what would otherwise keep an erased person's plaintext on disk.
4. **Inactive subjects.** A subject with no order, event, consent change or profile update for
   ``CDP_RETENTION_INACTIVE_DAYS`` is erased through the erasure path, without a tombstone.

Subjects under an open restriction are skipped by every rule (restriction means "store only, and
keep": art. 18(1)(c) is exactly a request not to delete), and so are subjects with an open privacy
request. ``dry_run`` computes the same counts from the same conditions and changes nothing.

Rule 1 treats :data:`WINDOW_BATCH` rows per transaction (the lowest ids still expired), each
transaction first waiting for the trait recompute steps in progress and holding new ones off
(:func:`cdp.traits.recompute_lock.exclude_recomputes`: the points ledger refers to the events it
deletes, through an index on ``points_ledger.event_id``, so a delete does not scan the ledger);
rule 2 is one transaction; rule 3 marks the runs whose files it deleted, 500 runs at a time; the
inactive subjects are then erased :data:`AUDIT_BATCH` at a time by a *judged* erasure
(:func:`cdp.privacy.erasure.erase_subjects` with ``still``): each subject is judged again in the
erasure's data transaction with its row locked, so a subject that ordered, came under restriction or
a privacy request, or absorbed someone active in a merge since the list was made is kept; the audit
record names the ids erased and commits with their rows; an id merged away is not followed to its
survivor (a subject nobody judged inactive).
Given a ``stop`` event (``cdp serve`` shutting down), a run stops between two of these steps, or
two batches of a window, once it is set (``stopped`` in the report): every step it took is
complete, and the next run finds what is left by the same conditions.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.access.context import AccessContext
from cdp.audit.operations import SYSTEM_ROLES
from cdp.audit.service import record_access
from cdp.clock import Clock, utcnow
from cdp.consent.ledger_state import granted_condition
from cdp.consent.models import ConsentEvent
from cdp.consent.purposes import get_purpose
from cdp.db.all_models import metadata
from cdp.db.models import Subject
from cdp.exports.file_expiry import expire_export_files
from cdp.privacy.erasure import erase_subjects
from cdp.privacy.erasure_steps import clear_wals, live_entries
from cdp.privacy.models import PrivacyPayload
from cdp.privacy.registry import SubjectTable, Treatment
from cdp.privacy.requests import open_request_condition
from cdp.privacy.restriction import not_restricted_condition
from cdp.profiles.models import Event, Order
from cdp.runtime import Runtime
from cdp.traits.recompute_lock import exclude_recomputes

AUDIT_BATCH = 1000
WINDOW_BATCH = 5000
"""Rows a retention window treats in one transaction (a short hold of the write lock, so reads
and their audit records go on meanwhile, and a stop is taken between two batches)."""
SYSTEM_CONTEXT = AccessContext(
    principal_id="system:retention",
    principal_name="system:retention",  # no principal can take it (names hold no ":")
    roles=SYSTEM_ROLES,
    purpose="operations",
    request_id="retention",
    client="local",
)
"""Who the audit log names for retention's erasures (a scheduled job, not a person)."""


@dataclass
class RetentionReport:
    """What a run removed (or, with ``dry_run``, would remove)."""

    now: datetime
    dry_run: bool
    rows: dict[str, int] = field(default_factory=dict)
    packages: int = 0
    export_files: int = 0
    inactive_subjects: int = 0
    stopped: bool = False
    """Asked to stop before the end: the steps not taken are left to the next run."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "dry_run": self.dry_run,
            "rows": dict(sorted(self.rows.items())),
            "packages": self.packages,
            "export_files": self.export_files,
            "inactive_subjects": self.inactive_subjects,
            "stopped": self.stopped,
        }


def _protected(subject_col: Any) -> sa.ColumnElement[bool]:
    """Subjects retention must not touch: restricted, or with an open privacy request (linked to
    the subject, or filed with one of its identities before it was known)."""
    return sa.or_(~not_restricted_condition(subject_col), open_request_condition(subject_col))


def expired_condition(entry: SubjectTable, table: sa.Table, now: datetime) -> Any:
    """SQL: the row is older than every window that still has a basis for its subject."""
    assert entry.time_column is not None
    subject_col = table.c[entry.column]
    when = table.c[entry.time_column]
    kept_by = [
        sa.and_(when >= now - get_purpose(p).retention, granted_condition(p, subject_col))
        for p in entry.retention
    ]
    return sa.and_(subject_col.is_not(None), ~sa.or_(*kept_by), ~_protected(subject_col))


def _count_window(conn: Connection, entry: SubjectTable, now: datetime) -> int:
    """How many rows of ``entry`` are past every window that still has a basis (the dry run)."""
    table = metadata.tables[entry.table]
    where = expired_condition(entry, table, now)
    return int(
        conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar_one()
    )


def _apply_window_batch(conn: Connection, entry: SubjectTable, now: datetime) -> int:
    """Apply ``entry``'s treatment to at most :data:`WINDOW_BATCH` of its expired rows (the
    lowest ids); the number of rows treated. A treated row no longer matches (deleted, or its
    subject link is null), so repeating this until it treats fewer than a batch covers them all."""
    table = metadata.tables[entry.table]
    batch = (
        sa.select(table.c.id)
        .where(expired_condition(entry, table, now))
        .order_by(table.c.id)
        .limit(WINDOW_BATCH)
        .scalar_subquery()
    )
    if entry.treatment is Treatment.DELETE:
        return int(conn.execute(sa.delete(table).where(table.c.id.in_(batch))).rowcount or 0)
    if entry.treatment is Treatment.UNLINK:
        values = {entry.column: None, **{c: None for c in entry.also_null}}
        update = sa.update(table).where(table.c.id.in_(batch)).values(values)
        return int(conn.execute(update).rowcount or 0)
    raise ValueError(f"retention cannot apply {entry.treatment} to {entry.table}")


def inactive_subjects(
    conn: Connection, cutoff: datetime, among: list[str] | None = None
) -> list[str]:
    """Ids of subjects with no activity since ``cutoff`` (and not protected); only those of
    ``among`` when given (a subject merged away since is no longer one)."""
    subjects = Subject.__table__  # type: ignore[attr-defined]
    orders = Order.__table__  # type: ignore[attr-defined]
    events = Event.__table__  # type: ignore[attr-defined]
    ledger = ConsentEvent.__table__  # type: ignore[attr-defined]

    def recent(table: sa.Table, column: str) -> sa.ColumnElement[bool]:
        return (
            sa.select(sa.literal(1))
            .where(table.c.subject_id == subjects.c.id, table.c[column] >= cutoff)
            .exists()
        )

    query = sa.select(subjects.c.id).where(
        subjects.c.updated_at < cutoff,
        subjects.c.created_at < cutoff,
        sa.or_(subjects.c.signed_up_at.is_(None), subjects.c.signed_up_at < cutoff),
        ~recent(orders, "ordered_at"),
        ~recent(events, "occurred_at"),
        ~recent(ledger, "occurred_at"),
        ~_protected(subjects.c.id),
    )
    if among is not None:
        query = query.where(subjects.c.id.in_(among))
    return list(conn.execute(query.order_by(subjects.c.id)).scalars())


def run_retention(
    *,
    runtime: Runtime,
    clock: Clock = utcnow,
    dry_run: bool = False,
    stop: threading.Event | None = None,
) -> RetentionReport:
    """Apply every retention rule once (see the module doc); return the counts (of what was
    done: a run stopped early counts only its completed steps)."""
    now = clock()
    settings = runtime.settings
    report = RetentionReport(now=now, dry_run=dry_run)
    if stop is not None and stop.is_set():
        report.stopped = True
        return report
    payloads = PrivacyPayload.__table__  # type: ignore[attr-defined]
    stale = sa.and_(
        payloads.c.kind == "package",
        payloads.c.created_at < now - timedelta(days=settings.privacy_package_days),
    )
    entries = live_entries(runtime)
    cutoff = now - timedelta(days=settings.retention_inactive_days)
    windows = [e for e in entries if e.time_column is not None and e.retention]
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        # Who is inactive is decided first: the windows below delete old events and unlink old
        # orders, which are still activity within the inactivity period (an event 500 days old
        # is past the analytics window but keeps its person), and the dry run must find the same.
        inactive = inactive_subjects(conn, cutoff)
        if dry_run:
            for entry in windows:
                if n := _count_window(conn, entry, now):
                    report.rows[entry.table] = n
            report.packages = int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(payloads).where(stale)
                ).scalar_one()
            )
    if not dry_run:
        for entry in windows:
            while True:
                if stop is not None and stop.is_set():
                    report.stopped = True
                    return report
                with runtime.data_engine.begin() as conn:
                    # Deleting events: a points step's earn lines refer to them (its foreign-key
                    # check would wait for this transaction, which would wait for the step's lock).
                    exclude_recomputes(conn)
                    n = _apply_window_batch(conn, entry, now)
                if n:
                    report.rows[entry.table] = report.rows.get(entry.table, 0) + n
                if n < WINDOW_BATCH:
                    break
        with runtime.data_engine.begin() as conn:
            report.packages = int(conn.execute(sa.delete(payloads).where(stale)).rowcount or 0)
    if stop is not None and stop.is_set():
        report.stopped = True
        return report
    report.export_files = expire_export_files(runtime=runtime, now=now, dry_run=dry_run)
    if dry_run:
        report.inactive_subjects = len(inactive)
        return report

    def record(ids: list[str], conn: Connection | None) -> None:
        # in the transaction that deletes their rows: the record commits with the erasure
        record_access(
            runtime=runtime,
            ctx=SYSTEM_CONTEXT,
            action="delete",
            resource="profile",
            outcome="allowed",
            subject_ids=ids,
            conn=conn,
            clock=clock,
        )

    def still_inactive(conn: Connection, ids: list[str]) -> list[str]:
        return inactive_subjects(conn, cutoff, ids)

    for start in range(0, len(inactive), AUDIT_BATCH):
        if stop is not None and stop.is_set():
            report.stopped = True
            break
        # Judged again by the erasure, with the rows locked: a subject that ordered, came under
        # restriction or a request, or absorbed someone active since the list was made is kept.
        erased = erase_subjects(
            runtime=runtime,
            subject_ids=inactive[start : start + AUDIT_BATCH],
            tombstone=False,
            reason="retention",
            clock=clock,
            clear_wal=False,  # once for the whole run, below
            record=record,
            still=still_inactive,
        )
        report.inactive_subjects += erased.subjects
    if report.inactive_subjects:
        clear_wals(runtime)
    return report
