"""The consent state: what the ledger says now, derived from its entries.

The current state of (subject, purpose) is the entry with the latest ``occurred_at``; on a tie a
withdrawal wins (the most restrictive reading). With no entry, the purpose's default applies
(:mod:`cdp.consent.purposes`: opt-in purposes default to ``withdrawn``, legitimate-interest ones
to ``granted``). Entries are recorded by :mod:`cdp.consent.service`.

For other modules:

- Segments and exports filter in SQL with :func:`eligible_condition` (consent state granted AND
  the subject not restricted) or, for the bare ledger question, :func:`granted_condition`; both
  take the subject-id column of the outer query and return a correlated boolean condition.
- ``GET /v1/profiles/{id}/consent`` returns :func:`consent_proof` (state plus full history).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.consent.models import ConsentEvent
from cdp.consent.purposes import PURPOSE_NAMES, ConsentStatus, get_purpose
from cdp.consent.service import connection, current_subject

if TYPE_CHECKING:
    from cdp.runtime import Runtime


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


_T = ConsentEvent.__table__  # type: ignore[attr-defined]


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
    with connection(conn, runtime) as c:
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

    An id a merge absorbed is followed to the survivor (the proof names it); raises
    :class:`NotFoundError` when there is no such subject (never stored, or erased)."""
    with connection(conn, runtime) as c:
        held = current_subject(c, subject_id)
        records = history(conn=c, subject_id=held)
    return ConsentProof(subject_id=held, states=state_from(records), history=records)


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
    with connection(conn, runtime) as c:
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
