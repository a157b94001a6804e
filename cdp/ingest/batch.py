"""What every record processor shares: the batch context, the outcome counts and the identities
a record claims.

A processor gets one batch of validated records and one open transaction; it writes everything
the batch implies in that transaction, or raises and writes nothing (the batch is all or nothing).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.crypto.normalize import IdentityKind, normalize_opaque_id
from cdp.ingest.bulk import select_in
from cdp.ingest.money import Converter
from cdp.profiles.resolve import Resolution
from cdp.runtime import Runtime

IN_CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class Reject:
    """Why one record was not ingested: its position (line or message index), fields, reason."""

    position: int
    reason: str
    fields: tuple[str, ...] = ()
    message: str = ""


REFUSALS = {
    "erased": "matches an erased subject",
    "rectified": "carries an email or phone number a rectification corrected away from a person",
}
"""The message of each reason identity resolution refuses a record for (no values named)."""


def refusal(position: int, reason: str | None) -> Reject:
    """The reject of a record that identity resolution refused (``Resolution.refused``)."""
    why = reason or "erased"
    return Reject(position, why, (), REFUSALS[why])


@dataclass
class Outcome:
    """Counts of one batch (or a whole run when added up)."""

    inserted: int = 0
    updated: int = 0
    duplicates: int = 0
    rejects: list[Reject] = field(default_factory=list)
    merges: int = 0
    subjects_created: int = 0
    erased_named: int = 0
    """Consent records that named an erased identity and whose withdrawal was recorded for the
    live subjects their other identities name (their entries count as inserted or duplicates)."""
    expired: int = 0
    """New records past every retention window of their table when they arrived
    (:func:`cdp.privacy.registry.longest_retention`): events not stored, orders stored without
    their personal link. Valid records, not rejects; not counted as inserted."""
    resolutions: list[Resolution] = field(default_factory=list)
    """Resolutions to finish (absorbed data keys to destroy) once the batch committed."""

    def resolved(self, res: Resolution) -> Resolution:
        """Count a batch's resolution (merges, new subjects) and keep it to finish later."""
        self.resolutions.append(res)
        self.merges += len(res.merges)
        self.subjects_created += len(res.created)
        return res

    def add(self, other: Outcome) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.duplicates += other.duplicates
        self.merges += other.merges
        self.subjects_created += other.subjects_created
        self.erased_named += other.erased_named
        self.expired += other.expired
        self.rejects.extend(other.rejects)
        self.resolutions.extend(other.resolutions)


@dataclass
class BatchContext:
    """The open transaction and the services a processor uses."""

    runtime: Runtime
    conn: Connection
    now: datetime
    source: str
    converter: Converter
    recorded_by: str = "ingest"
    keyless: frozenset[str] = frozenset()
    """Subjects that still have rows but no data key (an erasure that stopped half-way, or a key
    store restored from before an erasure): their records are refused as ``erased`` (see
    :func:`cdp.ingest.batch_commit.run_batch`)."""


def claim_of(
    *,
    customer_id: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    anonymous_id: str | None = None,
) -> list[tuple[IdentityKind, str]]:
    """A record's identities, strongest first (email and phone are already normalised)."""
    out: list[tuple[IdentityKind, str]] = []
    if customer_id:
        out.append((IdentityKind.CUSTOMER_ID, normalize_opaque_id(customer_id, kind="customer_id")))
    if email:
        out.append((IdentityKind.EMAIL, email))
    if phone:
        out.append((IdentityKind.PHONE, phone))
    if anonymous_id:
        out.append(
            (IdentityKind.ANONYMOUS_ID, normalize_opaque_id(anonymous_id, kind="anonymous_id"))
        )
    return out


def existing(
    conn: Connection, column: sa.Column[Any], values: Iterable[str], *extra: sa.Column[Any]
) -> dict[str, tuple[Any, ...]]:
    """Rows whose unique ``column`` is in ``values`` (one IN query per 5,000): value -> row."""
    rows = select_in(
        conn,
        column.table,
        column.name,
        sorted(set(values)),
        [column.name] + [c.name for c in extra],
    )
    return {row[0]: row for row in rows}
