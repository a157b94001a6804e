"""The consent ledger service: record grants and withdrawals.

The ledger (``consent_events``) is append-only: a change of mind is a new row, never an edit, so
the full history is the proof of consent. Reading it — the current state, the proof, the SQL
conditions other modules filter with — is :mod:`cdp.consent.ledger_state`.

For other modules:

- Ingestion calls :func:`record_consent` (one) or :func:`record_consents` (bulk, executemany) with
  its own ``conn`` so the consent lands in the same transaction as the rest of the message; with
  ``Sec-GPC: 1`` it records ``ad_audiences`` / ``withdrawn`` / mechanism ``gpc`` *first*.
  Replays are free: each row carries a ``dedupe_key`` (hash of subject, purpose, status,
  occurred_at, source) and duplicates are skipped by ``ON CONFLICT DO NOTHING``.
- A subject id given to :func:`record_consent` (and to the consent doors, through
  :func:`current_subject`) that a merge absorbed is followed to the subject that holds it now;
  an erased id is refused (``NotFoundError``).
- Merging subjects: record the merge in ``subject_merges`` first, then UPDATE only
  ``subject_id`` of the merged subject's ledger rows; the database triggers
  (:mod:`cdp.consent.triggers`) let exactly that through and reject every other UPDATE/DELETE.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from cdp.clock import Clock, utcnow
from cdp.consent.models import ConsentEvent
from cdp.consent.purposes import ConsentStatus, Mechanism, get_purpose
from cdp.errors import InvalidInputError, NotFoundError
from cdp.validation import CONTROL_MESSAGE, plain_text

if TYPE_CHECKING:
    from cdp.runtime import Runtime

CLOCK_SKEW = timedelta(minutes=5)
"""How far in the future an ``occurred_at`` may lie (clients' clocks drift); see
:func:`ledger_time`."""
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
"""No choice is dated before this (a year-1 time cannot even be stored as UTC)."""


def ledger_time(occurred_at: datetime, recorded_at: datetime) -> datetime:
    """The ``occurred_at`` an entry is stored with: the time given, or, for a time ahead of
    cdp's clock (a sender's clock running fast, by at most :data:`CLOCK_SKEW`), the time it was
    recorded. The current state is the latest entry, so a grant dated a few minutes ahead would
    otherwise outrank every withdrawal recorded in those minutes — an objection or a GPC signal
    dated by cdp itself included — for good. Replay keys are made from the time given."""
    return min(occurred_at, recorded_at)


_T = ConsentEvent.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ConsentInput:
    """One ledger entry to record (bulk path)."""

    subject_id: str
    purpose: str
    status: str
    occurred_at: datetime
    source: str
    mechanism: str
    recorded_by: str
    notice_version: str | None = None


@contextmanager
def connection(conn: Connection | None, runtime: Runtime | None) -> Iterator[Connection]:
    if conn is not None:
        yield conn
        return
    if runtime is None:
        raise TypeError("pass conn= or runtime=")
    with runtime.data_engine.begin() as own:
        yield own


def dedupe_key(
    *, subject_id: str, purpose: str, status: str, occurred_at: datetime, source: str
) -> str:
    """The replay key of an entry: the same choice from the same source is recorded once."""
    raw = "\x1f".join((subject_id, purpose, status, f"{occurred_at.timestamp():.6f}", source))
    return hashlib.sha256(raw.encode()).hexdigest()


def _check_text(item: ConsentInput) -> None:
    """The ledger's text holds no control characters (ingestion's rule for free text: a NUL
    cannot be stored in PostgreSQL at all)."""
    for name in ("source", "notice_version", "recorded_by"):
        try:
            plain_text(getattr(item, name))
        except ValueError:
            raise InvalidInputError(f"{name} {CONTROL_MESSAGE}", field=name) from None


def _validate(item: ConsentInput, now: datetime) -> dict[str, Any]:
    get_purpose(item.purpose)
    if item.status not in {s.value for s in ConsentStatus}:
        raise InvalidInputError("status must be granted or withdrawn", field="status")
    if item.mechanism not in {m.value for m in Mechanism}:
        raise InvalidInputError("unknown consent mechanism", field="mechanism")
    if item.occurred_at.tzinfo is None:
        raise InvalidInputError("occurred_at needs a timezone", field="occurred_at")
    if item.occurred_at > now + CLOCK_SKEW:
        raise InvalidInputError("occurred_at lies in the future", field="occurred_at")
    if item.occurred_at < EARLIEST:  # compared as instants: no conversion that could overflow
        raise InvalidInputError("occurred_at lies before 1900", field="occurred_at")
    if not item.source or len(item.source) > 64:
        raise InvalidInputError("source must be 1-64 characters", field="source")
    if not item.recorded_by or len(item.recorded_by) > 64:
        raise InvalidInputError("recorded_by must be 1-64 characters", field="recorded_by")
    if item.notice_version is not None and len(item.notice_version) > 64:
        raise InvalidInputError("notice_version is too long", field="notice_version")
    _check_text(item)
    return {
        "subject_id": item.subject_id,
        "purpose": item.purpose,
        "status": item.status,
        "occurred_at": ledger_time(item.occurred_at, now),
        "recorded_at": now,
        "source": item.source,
        "notice_version": item.notice_version,
        "mechanism": item.mechanism,
        "recorded_by": item.recorded_by,
        "dedupe_key": dedupe_key(
            subject_id=item.subject_id,
            purpose=item.purpose,
            status=item.status,
            occurred_at=item.occurred_at,
            source=item.source,
        ),
    }


def _insert_ignoring_duplicates(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(_T).on_conflict_do_nothing(index_elements=["dedupe_key"])
    return sqlite.insert(_T).on_conflict_do_nothing(index_elements=["dedupe_key"])


def record_consents(
    *,
    conn: Connection | None = None,
    runtime: Runtime | None = None,
    items: Sequence[ConsentInput],
    clock: Clock = utcnow,
    batch_size: int = 1000,
) -> int:
    """Append many entries (executemany in batches); return how many were new (not replays).

    Every item is validated before anything is written; the subjects must exist."""
    now = clock()
    rows = [_validate(i, now) for i in items]
    if not rows:
        return 0
    added = 0
    with connection(conn, runtime) as c:
        keys = [r["dedupe_key"] for r in rows]
        before = _count_keys(c, keys)
        for start in range(0, len(rows), batch_size):
            c.execute(_insert_ignoring_duplicates(c), rows[start : start + batch_size])
        added = _count_keys(c, keys) - before
    return added


def _count_keys(conn: Connection, keys: list[str]) -> int:
    total = 0
    unique = sorted(set(keys))
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        total += conn.execute(
            sa.select(sa.func.count()).select_from(_T).where(_T.c.dedupe_key.in_(chunk))
        ).scalar_one()
    return total


def record_consent(
    *,
    conn: Connection | None = None,
    runtime: Runtime | None = None,
    subject_id: str,
    purpose: str,
    status: str,
    occurred_at: datetime,
    source: str,
    mechanism: str,
    recorded_by: str,
    notice_version: str | None = None,
    clock: Clock = utcnow,
) -> bool:
    """Append one grant or withdrawal; return False when it was a replay (already recorded).

    Granting and withdrawing are the same call with another ``status``: withdrawing never takes
    more steps than granting."""
    item = ConsentInput(
        subject_id=subject_id,
        purpose=purpose,
        status=status,
        occurred_at=occurred_at,
        source=source,
        mechanism=mechanism,
        recorded_by=recorded_by,
        notice_version=notice_version,
    )
    with connection(conn, runtime) as c:
        held = current_subject(c, subject_id)
        return record_consents(conn=c, items=[replace(item, subject_id=held)], clock=clock) == 1


def _not_found(subject_id: str) -> NotFoundError:
    """The error for an unknown subject id; text that is not shaped like a subject id (an email
    typed where an id belongs, say) is not echoed."""
    from cdp.audit.writer import SUBJECT_ID

    if SUBJECT_ID.match(subject_id):
        return NotFoundError(f"subject {subject_id} not found")
    return NotFoundError("no such subject (a subject id is 32 hexadecimal digits)")


def require_subject(conn: Connection, subject_id: str) -> None:
    from cdp.db.models import Subject

    found = conn.execute(
        sa.select(Subject.__table__.c.id).where(  # type: ignore[attr-defined]
            Subject.__table__.c.id == subject_id  # type: ignore[attr-defined]
        )
    ).first()
    if found is None:
        raise _not_found(subject_id)


def current_subject(conn: Connection, subject_id: str) -> str:
    """The subject that holds ``subject_id`` now: itself, or the survivor that absorbed it in a
    merge (followed through ``subject_merges``, transitively: a merged-away id is the same
    person). Raises :class:`NotFoundError`, naming the id asked for, when there is none: an id
    never stored, or erased (its subject row and merge rows are gone, so an id absorbed by an
    erased subject is refused too)."""
    from cdp.profiles.former_ids import current_ids

    held = current_ids(conn, [subject_id])[subject_id]
    try:
        require_subject(conn, held)
    except NotFoundError:
        raise _not_found(subject_id) from None
    return held
