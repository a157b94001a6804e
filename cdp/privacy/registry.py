"""THE registry of every table that holds subject data, and how erasure, access and retention
treat it.

Every column that names a subject (``subject_id``, ``subject_ids``, a foreign key to
``subjects.id``, ``survivor_id``/``merged_id``) must appear here; ``tests/privacy/test_registry.py``
fails for any table in the metadata whose subject column is not registered, so a new table cannot
silently escape erasure. Owners of new tables add their entry to :data:`ENTRIES` (order matters:
children before parents, ``subjects`` last). Entries for tables whose module is not imported yet
are kept and skipped until the table exists (:func:`present_entries`).

Treatments on erasure:

- ``delete``: the subject's rows are removed;
- ``unlink``: the subject column (and ``also_null`` columns) is set to NULL and the row stays as
  anonymous data (an order still counts in revenue, a privacy request stays as evidence);
- ``scrub_list``: the id is removed from a JSON list column (webhook dead letters);
- ``retain``: kept, because the law requires the evidence and it holds only the random subject id
  (the audit log: accountability, GDPR art. 5(2); its hash chain must keep verifying). After
  erasure that id links to nothing: no key, no identity, no PII, no row in any other table.

``section`` names where rows go in the access package (tables handled explicitly by
:mod:`cdp.privacy.access_package` have none). ``time_column`` + ``retention`` say which purposes'
windows keep a row (:mod:`cdp.privacy.retention`; the longest of them, :func:`longest_retention`,
is also the age past which ingestion stores no row linked to a person); ``destination_column``
marks a recipients ledger that erasure reads first, to list the destinations that must be told.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from functools import cache

import sqlalchemy as sa

from cdp.consent.purposes import get_purpose


class Treatment(StrEnum):
    """What erasure does to a subject's rows in one table."""

    DELETE = "delete"
    UNLINK = "unlink"
    SCRUB_LIST = "scrub_list"
    RETAIN = "retain"


@dataclass(frozen=True, slots=True)
class SubjectTable:
    """One (table, subject column) pair holding subject data."""

    table: str
    column: str
    treatment: Treatment
    reason: str
    also_null: tuple[str, ...] = ()
    section: str | None = None
    time_column: str | None = None
    retention: tuple[str, ...] = ()
    destination_column: str | None = None


def _e(table: str, column: str, treatment: Treatment, reason: str, **kw: object) -> SubjectTable:
    return SubjectTable(table, column, treatment, reason, **kw)  # type: ignore[arg-type]


D, U, S, R = Treatment.DELETE, Treatment.UNLINK, Treatment.SCRUB_LIST, Treatment.RETAIN

ENTRIES: tuple[SubjectTable, ...] = (
    # exports (issue 7): the recipients ledger is read before it is deleted
    _e(
        "export_recipients",
        "subject_id",
        D,
        "who received the subject; listed in the erasure outcome, then deleted",
        section="recipients",
        destination_column="destination_id",
    ),
    _e("export_staging", "subject_id", D, "members of a running export"),
    _e("export_sync_members", "subject_id", D, "what a destination holds (sync state)"),
    _e(
        "export_rectified_values",
        "subject_id",
        D,
        "replaced values a destination's next export withdraws (sealed under the shredded key)",
    ),
    _e("webhook_deliveries", "subject_ids", S, "dead-letter batches name their subjects"),
    # segments and traits (issue 6)
    _e("segment_snapshot_members", "subject_id", D, "segment membership", section="segments"),
    _e("subject_traits", "subject_id", D, "computed traits", section="traits"),
    _e("loyalty_status", "subject_id", D, "loyalty tier", section="traits"),
    _e("loyalty_tier_changes", "subject_id", D, "loyalty history", section="traits"),
    _e("points_ledger", "subject_id", D, "loyalty points", section="traits"),
    _e("clv_predictions", "subject_id", D, "CLV and churn traits", section="traits"),
    # privacy requests (this package)
    _e("privacy_payloads", "subject_id", D, "encrypted corrections and packages"),
    _e("restrictions", "subject_id", D, "restriction flags (the person is gone)"),
    _e(
        "privacy_requests",
        "subject_id",
        U,
        "the request stays as evidence that it was served, without the person",
        also_null=("identity_token",),
    ),
    # activity and identity (foundation, ingestion)
    _e("consent_events", "subject_id", D, "consent proof dies with the person"),
    _e(
        "events",
        "subject_id",
        D,
        "behaviour; properties are ciphertext under the shredded key",
        time_column="occurred_at",
        retention=("analytics", "personalization"),
    ),
    _e(
        "orders",
        "subject_id",
        U,
        "orders stay for the accounts, without the personal link",
        time_column="ordered_at",
        retention=("support",),
    ),
    _e("subject_merges", "survivor_id", D, "merge history names the person's former ids"),
    _e("subject_merges", "merged_id", D, "merge history names the person's former ids"),
    _e("pii_records", "subject_id", D, "ciphertexts under the shredded key"),
    _e("identities", "subject_id", D, "identity tokens (copied to tombstones first)"),
    # evidence kept by law (issue 4): hash-chained, pseudonymous ids only
    _e("audit_subjects", "subject_id", R, "index of the audit log (append-only, art. 5(2))"),
    _e("audit_log", "subject_ids", R, "audit trail: who read or received (art. 5(2), 30)"),
    _e("subjects", "id", D, "the subject row itself, last"),
)
"""Every registered (table, column), in erasure order."""


@cache
def longest_retention(table: str) -> timedelta | None:
    """The longest window of the purposes whose ``retention`` keeps rows of ``table`` (None when
    no window governs it). A row older than that is past every window whatever its subject's
    consent: retention keeps it for no one, so ingestion does not store it as personal data
    (:mod:`cdp.ingest.events`, :mod:`cdp.ingest.orders`)."""
    windows = [
        get_purpose(p).retention
        for e in ENTRIES
        if e.table == table and e.time_column is not None
        for p in e.retention
    ]
    return max(windows, default=None)


SUBJECT_COLUMN = re.compile(r"(^|_)subject(_id|_ids|s)?$|^(survivor|merged)_id$")
"""Column names that hold subject ids (the registry test checks every match is registered)."""


def subject_columns(table: sa.Table) -> list[str]:
    """The columns of ``table`` that name subjects: by name, or as a foreign key to subjects."""
    found = []
    for col in table.columns:
        by_fk = any(
            fk.column.table.name == "subjects" and fk.column.name == "id" for fk in col.foreign_keys
        )
        if (
            by_fk
            or SUBJECT_COLUMN.search(col.name)
            or (table.name == "subjects" and col.name == "id")
        ):
            found.append(col.name)
    return found


def present_entries(
    metadata: sa.MetaData, existing: Iterable[str] | None = None
) -> list[SubjectTable]:
    """Registered entries whose table exists in ``metadata`` (the others are not built yet) and,
    when ``existing`` names the database's tables, in the database too."""
    live = None if existing is None else set(existing)
    return [e for e in ENTRIES if e.table in metadata.tables and (live is None or e.table in live)]


def unregistered(metadata: sa.MetaData) -> list[tuple[str, str]]:
    """(table, column) pairs that hold subject ids but have no registry entry."""
    known = {(e.table, e.column) for e in ENTRIES}
    return [
        (t.name, c)
        for t in metadata.sorted_tables
        for c in subject_columns(t)
        if (t.name, c) not in known
    ]


def entries_with(
    metadata: sa.MetaData, *, treatment: Treatment | None = None, section: str | None = None
) -> Iterable[SubjectTable]:
    """Present entries filtered by treatment and/or access-package section."""
    for e in present_entries(metadata):
        if treatment is not None and e.treatment is not treatment:
            continue
        if section is not None and e.section != section:
            continue
        yield e
