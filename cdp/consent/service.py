"""The consent ledger service: record grants and withdrawals, derive the current state.

The ledger (``consent_events``) is append-only: a change of mind is a new row, never an edit, so
the full history is the proof of consent. The current state of (subject, purpose) is the entry with
the latest ``occurred_at``; on a tie a withdrawal wins (the most restrictive reading). With no
entry, the purpose's default applies (:mod:`cdp.consent.purposes`: opt-in purposes default to
``withdrawn``, legitimate-interest ones to ``granted``).

For other modules:

- Ingestion calls :func:`record_consent` (one) or :func:`record_consents` (bulk, executemany) with
  its own ``conn`` so the consent lands in the same transaction as the rest of the message; with
  ``Sec-GPC: 1`` it records ``ad_audiences`` / ``withdrawn`` / mechanism ``gpc`` *first*.
  Replays are free: each row carries a ``dedupe_key`` (hash of subject, purpose, status,
  occurred_at, source) and duplicates are skipped by ``ON CONFLICT DO NOTHING``.
- Segments and exports filter in SQL with :func:`eligible_condition` (consent state granted AND
  the subject not restricted) or, for the bare ledger question, :func:`granted_condition`; both
  take the subject-id column of the outer query and return a correlated boolean condition.
- ``GET /v1/profiles/{id}/consent`` returns :func:`consent_proof` (state plus full history).
- Merging subjects: record the merge in ``subject_merges`` first, then UPDATE only
  ``subject_id`` of the merged subject's ledger rows; the database triggers
  (:mod:`cdp.consent.triggers`) let exactly that through and reject every other UPDATE/DELETE.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from cdp.clock import Clock, utcnow
from cdp.consent.models import ConsentEvent
from cdp.consent.purposes import (
    PURPOSE_NAMES,
    ConsentStatus,
    Mechanism,
    get_purpose,
)
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


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """One ledger entry as stored: the evidence of a choice."""

    id: int
    purpose: str
    status: str
    occurred_at: datetime
    recorded_at: datetime
    source: str
    notice_version: str | None
    mechanism: str
    recorded_by: str


@dataclass(frozen=True, slots=True)
class ConsentState:
    """The current state of one purpose for one subject."""

    purpose: str
    status: str
    is_default: bool
    occurred_at: datetime | None = None
    source: str | None = None
    mechanism: str | None = None
    notice_version: str | None = None

    @property
    def granted(self) -> bool:
        return self.status == ConsentStatus.GRANTED.value


@dataclass(frozen=True, slots=True)
class ConsentProof:
    """Current state per purpose plus the full, ordered history (proof of consent)."""

    subject_id: str
    states: dict[str, ConsentState]
    history: list[ConsentRecord]


@contextmanager
def _connection(conn: Connection | None, runtime: Runtime | None) -> Iterator[Connection]:
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
    with _connection(conn, runtime) as c:
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
    with _connection(conn, runtime) as c:
        _require_subject(c, subject_id)
        return record_consents(conn=c, items=[item], clock=clock) == 1


def _require_subject(conn: Connection, subject_id: str) -> None:
    from cdp.db.models import Subject

    found = conn.execute(
        sa.select(Subject.__table__.c.id).where(  # type: ignore[attr-defined]
            Subject.__table__.c.id == subject_id  # type: ignore[attr-defined]
        )
    ).first()
    if found is None:
        raise NotFoundError(f"subject {subject_id} not found")


def _record(row: Any) -> ConsentRecord:
    return ConsentRecord(
        id=row.id,
        purpose=row.purpose,
        status=row.status,
        occurred_at=row.occurred_at,
        recorded_at=row.recorded_at,
        source=row.source,
        notice_version=row.notice_version,
        mechanism=row.mechanism,
        recorded_by=row.recorded_by,
    )


def history(
    *, conn: Connection | None = None, runtime: Runtime | None = None, subject_id: str
) -> list[ConsentRecord]:
    """Every entry of the subject, oldest first (by occurred_at, then recording order)."""
    with _connection(conn, runtime) as c:
        rows = c.execute(
            sa.select(_T).where(_T.c.subject_id == subject_id).order_by(_T.c.occurred_at, _T.c.id)
        ).all()
    return [_record(r) for r in rows]


def precedence(occurred_at: datetime, status: str, entry_id: int) -> tuple[datetime, bool, int]:
    """The rule for which entry of a (subject, purpose) is its current state: the one with the
    greatest key — the latest ``occurred_at``; at equal times a withdrawal (the most restrictive
    reading); then the later recorded. Every reader of the ledger (ingestion's change-only rule,
    merges) uses this rule."""
    return (occurred_at, status == ConsentStatus.WITHDRAWN.value, entry_id)


def _precedes(a: ConsentRecord, b: ConsentRecord) -> bool:
    """Whether ``b`` supersedes ``a`` (later, or same time and a withdrawal)."""
    return precedence(b.occurred_at, b.status, b.id) > precedence(a.occurred_at, a.status, a.id)


def state_from(records: Sequence[ConsentRecord]) -> dict[str, ConsentState]:
    """The current state per configured purpose, derived from ``records`` of one subject."""
    latest: dict[str, ConsentRecord] = {}
    for rec in records:
        cur = latest.get(rec.purpose)
        if cur is None or _precedes(cur, rec):
            latest[rec.purpose] = rec
    out: dict[str, ConsentState] = {}
    for name in PURPOSE_NAMES:
        last = latest.get(name)
        if last is None:
            out[name] = ConsentState(name, get_purpose(name).default_status.value, True)
        else:
            out[name] = ConsentState(
                name,
                last.status,
                False,
                last.occurred_at,
                last.source,
                last.mechanism,
                last.notice_version,
            )
    return out


def current_state(
    *, conn: Connection | None = None, runtime: Runtime | None = None, subject_id: str
) -> dict[str, ConsentState]:
    """The subject's current state for every configured purpose (defaults included)."""
    return state_from(history(conn=conn, runtime=runtime, subject_id=subject_id))


def consent_proof(
    *, conn: Connection | None = None, runtime: Runtime | None = None, subject_id: str
) -> ConsentProof:
    """State and full history of a subject: what they agreed to, when, how, under which notice.

    Raises :class:`NotFoundError` when the subject does not exist."""
    with _connection(conn, runtime) as c:
        _require_subject(c, subject_id)
        records = history(conn=c, subject_id=subject_id)
    return ConsentProof(subject_id=subject_id, states=state_from(records), history=records)


def has_consent(
    *,
    conn: Connection | None = None,
    runtime: Runtime | None = None,
    subject_id: str,
    purpose: str,
) -> bool:
    """Whether the ledger allows ``purpose`` for the subject now (the bare ledger answer;
    exports also need :func:`cdp.privacy.restriction.is_restricted`, or use
    :func:`eligible_condition` in SQL)."""
    config = get_purpose(purpose)
    if not config.withdrawable:
        return True
    with _connection(conn, runtime) as c:
        hit = c.execute(
            sa.select(sa.literal(1)).where(granted_condition(purpose, sa.literal(subject_id)))
        ).first()
    return hit is not None


def _latest_status(purpose: str, subject_col: Any) -> sa.ScalarSelect[Any]:
    """The status of the subject's entry for ``purpose`` that no other supersedes (NULL when it
    has none): the latest by ``occurred_at``, and at a tie the withdrawal (``withdrawn`` sorts
    after ``granted``, so ``status DESC`` puts it first). One backward step in the index
    ``(subject_id, purpose, occurred_at, status)``, instead of an entry test with a "no later
    entry" probe inside it."""
    ce = _T.alias("ce")
    return (
        sa.select(ce.c.status)
        .where(ce.c.subject_id == subject_col, ce.c.purpose == purpose)
        .order_by(ce.c.occurred_at.desc(), ce.c.status.desc())
        .limit(1)
        .scalar_subquery()
    )


def granted_condition(purpose: str, subject_col: Any) -> sa.ColumnElement[bool]:
    """A SQL condition, correlated on ``subject_col``: the subject's current state for
    ``purpose`` is granted (defaults applied). Use as ``select(...).where(granted_condition(
    "email_marketing", subjects.c.id))``."""
    config = get_purpose(purpose)
    if not config.withdrawable:
        return sa.true()
    # never NULL: a subject without entries takes the purpose's default
    default = config.default_status.value
    return sa.func.coalesce(_latest_status(purpose, subject_col), default) == (
        ConsentStatus.GRANTED.value
    )


def granted_subjects(purpose: str) -> sa.Select[tuple[str]]:
    """A selectable of the ids of subjects whose current state for ``purpose`` is granted."""
    from cdp.db.models import Subject

    subjects = Subject.__table__  # type: ignore[attr-defined]
    return sa.select(subjects.c.id).where(granted_condition(purpose, subjects.c.id))


def eligible_condition(purpose: str, subject_col: Any) -> sa.ColumnElement[bool]:
    """What exports and marketing must check: consent granted AND the subject not restricted."""
    from cdp.privacy.restriction import not_restricted_condition

    return sa.and_(granted_condition(purpose, subject_col), not_restricted_condition(subject_col))
