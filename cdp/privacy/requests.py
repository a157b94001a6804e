"""A privacy request (data-subject request) as stored and shown: its type, its status, its steps.

A request is due one calendar month after receipt (GDPR art. 12(3); the 31st rolls back to the
month's last day): :func:`add_months`. Every step is written to ``privacy_request_events`` (who,
when, to which status, a note that never holds personal data). The identity a request names is
kept only as its token, the subject as its random id. Filing a request is
:mod:`cdp.privacy.request_filing`, moving it through its statuses
:mod:`cdp.privacy.request_lifecycle`, listing requests :mod:`cdp.privacy.request_list`.
"""

from __future__ import annotations

import calendar
import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.db.models import Identity
from cdp.errors import NotFoundError
from cdp.privacy.models import PrivacyRequest, PrivacyRequestEvent
from cdp.runtime import Runtime

_PR = PrivacyRequest.__table__  # type: ignore[attr-defined]
_EV = PrivacyRequestEvent.__table__  # type: ignore[attr-defined]


class RequestType(StrEnum):
    ACCESS = "access"
    PORTABILITY = "portability"
    ERASURE = "erasure"
    RECTIFICATION = "rectification"
    RESTRICTION = "restriction"
    OBJECTION = "objection"


class RequestStatus(StrEnum):
    RECEIVED = "received"
    VERIFIED = "verified"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    REJECTED = "rejected"


OPEN_STATUSES = (RequestStatus.RECEIVED, RequestStatus.VERIFIED, RequestStatus.IN_PROGRESS)


@dataclass(frozen=True, slots=True)
class RequestStep:
    at: datetime
    status: str
    actor: str
    note: str | None


@dataclass(frozen=True, slots=True)
class RequestView:
    """A request as shown to the DPO and the API (no personal data)."""

    id: str
    type: str
    status: str
    subject_id: str | None
    identity_kind: str
    received_at: datetime
    due_at: datetime
    extended_until: datetime | None
    extension_reason: str | None
    verified_at: datetime | None
    completed_at: datetime | None
    requested_by: str
    outcome: dict[str, Any] | None
    steps: tuple[RequestStep, ...]

    @property
    def deadline(self) -> datetime:
        """The date by which it must be answered (the extension, if any)."""
        return self.extended_until or self.due_at

    def overdue(self, now: datetime) -> bool:
        return self.status in {s.value for s in OPEN_STATUSES} and now > self.deadline


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar months; a day past the target month's end becomes its last day."""
    month0 = moment.month - 1 + months
    year, month = moment.year + month0 // 12, month0 % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def step(
    conn: Connection, request_id: str, status: str, actor: str, now: datetime, note: str | None
) -> None:
    conn.execute(
        sa.insert(_EV).values(request_id=request_id, at=now, status=status, actor=actor, note=note)
    )


def view(conn: Connection, row: Any, steps: list[Any] | None = None) -> RequestView:
    if steps is None:
        steps = list(
            conn.execute(
                sa.select(_EV.c.at, _EV.c.status, _EV.c.actor, _EV.c.note)
                .where(_EV.c.request_id == row.id)
                .order_by(_EV.c.id)
            )
        )
    return RequestView(
        id=row.id,
        type=row.type,
        status=row.status,
        subject_id=row.subject_id,
        identity_kind=row.identity_kind,
        received_at=row.received_at,
        due_at=row.due_at,
        extended_until=row.extended_until,
        extension_reason=row.extension_reason,
        verified_at=row.verified_at,
        completed_at=row.completed_at,
        requested_by=row.requested_by,
        outcome=json.loads(row.outcome) if row.outcome else None,
        steps=tuple(RequestStep(s.at, s.status, s.actor, s.note) for s in steps),
    )


def get(*, runtime: Runtime, request_id: str, conn: Connection | None = None) -> RequestView:
    """One request with its steps; :class:`NotFoundError` if there is none."""
    if conn is None:
        with runtime.data_engine.connect() as own:
            return get(runtime=runtime, request_id=request_id, conn=own)
    row = conn.execute(sa.select(_PR).where(_PR.c.id == request_id)).first()
    if row is None:
        raise NotFoundError(f"privacy request {request_id} not found")
    return view(conn, row)


def open_request_condition(subject_col: Any) -> sa.ColumnElement[bool]:
    """SQL, correlated on ``subject_col``: the subject has an open privacy request — linked to
    it, or filed with one of its identities before it was known and not linked yet (a request is
    linked when it is run)."""
    ident = Identity.__table__  # type: ignore[attr-defined]
    by_identity = (
        sa.select(sa.literal(1))
        .where(
            ident.c.subject_id == subject_col,
            ident.c.kind == _PR.c.identity_kind,
            ident.c.token == _PR.c.identity_token,
        )
        .correlate_except(ident)  # the request, and the subject two levels out
        .exists()
    )
    return (
        sa.select(sa.literal(1))
        .where(
            _PR.c.status.in_([s.value for s in OPEN_STATUSES]),
            sa.or_(
                _PR.c.subject_id == subject_col,
                sa.and_(_PR.c.subject_id.is_(None), by_identity),
            ),
        )
        .correlate_except(_PR)
        .exists()
    )
