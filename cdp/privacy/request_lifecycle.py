"""The lifecycle of a privacy request: verifying, running, completing, rejecting, extending.

    received ──verify──► verified ──run──► in_progress ──► completed
        └───────reject──────┴──────────────────┘ (a failed run stays in_progress; run again)

A run claims its request (:func:`claim`, one conditional UPDATE) and holds it until it completes
or fails; while it does, another run, a rejection or an extension is refused (409). A failed run
releases its claim; a run that stopped without releasing it (a killed process) loses it after
:data:`CLAIM_LEASE`. An erasure that a run started is never rejected (the person may already be
partly erased): it is finished by running it again.

A request may be extended once, before its due date, by at most two further months, with a
recorded reason. Every step is recorded (:func:`cdp.privacy.requests.step`).

Running a request (:mod:`cdp.privacy.runner`) requires ``verified``: confirming that the requester
is the person is the DPO's step, done outside cdp (e.g. by replying from the account's address).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.clock import Clock, utcnow
from cdp.errors import CdpError, ConflictError, InvalidInputError, NotFoundError
from cdp.privacy.models import PrivacyPayload, PrivacyRequest
from cdp.privacy.requests import (
    OPEN_STATUSES,
    RequestStatus,
    RequestType,
    RequestView,
    add_months,
    get,
    step,
)
from cdp.runtime import Runtime
from cdp.validation import check_text

_PR = PrivacyRequest.__table__  # type: ignore[attr-defined]
_PAY = PrivacyPayload.__table__  # type: ignore[attr-defined]

MAX_EXTENSION_MONTHS = 2
CLAIM_LEASE = timedelta(minutes=15)
"""How long a run's claim holds when the run neither completes nor releases it (a process killed
mid-run): after that, running the request again takes it over."""


def running(now: datetime) -> sa.ColumnElement[bool]:
    """SQL: a run holds the request now (its claim is younger than :data:`CLAIM_LEASE`)."""
    return sa.and_(_PR.c.claim_token.is_not(None), _PR.c.claimed_at >= now - CLAIM_LEASE)


def _refusal(conn: Connection, request_id: str, to: RequestStatus, now: datetime) -> CdpError:
    """Why ``request_id`` cannot become ``to`` (read after a conditional UPDATE matched nothing)."""
    row = conn.execute(
        sa.select(_PR.c.status, _PR.c.type, _PR.c.claim_token, _PR.c.claimed_at).where(
            _PR.c.id == request_id
        )
    ).first()
    if row is None:
        return NotFoundError(f"privacy request {request_id} not found")
    if (
        row.status == RequestStatus.IN_PROGRESS.value
        and row.claim_token is not None
        and row.claimed_at >= now - CLAIM_LEASE
    ):
        return ConflictError(
            f"privacy request {request_id} is being run (since "
            f"{row.claimed_at.isoformat(timespec='seconds')}); wait for that run to end"
        )
    if (
        to is RequestStatus.REJECTED
        and row.status == RequestStatus.IN_PROGRESS.value
        and row.type == RequestType.ERASURE.value
    ):
        return ConflictError(
            f"privacy request {request_id} is an erasure that was started: the person may be "
            "partly erased already, so it cannot be rejected; run it again to finish it"
        )
    return ConflictError(f"privacy request {request_id} is {row.status}, cannot become {to}")


def transition(
    conn: Connection,
    request_id: str,
    *,
    to: RequestStatus,
    allowed_from: tuple[RequestStatus, ...],
    actor: str,
    now: datetime,
    note: str | None = None,
    values: Mapping[str, Any] | None = None,
    when: tuple[sa.ColumnElement[bool], ...] = (),
) -> None:
    """Move a request to ``to`` if it is in one of ``allowed_from`` (and meets ``when``); record
    the step. One conditional UPDATE: of two callers at once, exactly one moves it."""
    result = conn.execute(
        sa.update(_PR)
        .where(_PR.c.id == request_id, _PR.c.status.in_([s.value for s in allowed_from]), *when)
        .values(status=to.value, **dict(values or {}))
    )
    if result.rowcount != 1:
        raise _refusal(conn, request_id, to, now)
    step(conn, request_id, to.value, actor[:64], now, note)


def claim(conn: Connection, request_id: str, *, actor: str, now: datetime) -> str:
    """Take the request for one run and return the claim's token: ``verified`` becomes
    ``in_progress``; an ``in_progress`` request is taken again when no run holds it (a failed
    run released it, or a run stopped without releasing it more than :data:`CLAIM_LEASE` ago).
    Each is one conditional UPDATE, so of two runs at once exactly one gets the request, and a
    rejection or an extension cannot land in the middle of the run (:func:`running`)."""
    token = secrets.token_hex(16)
    held = {"claim_token": token, "claimed_at": now}
    for allowed, when, note in (
        (RequestStatus.VERIFIED, (), None),
        (RequestStatus.IN_PROGRESS, (~running(now),), "run again"),
    ):
        updated = conn.execute(
            sa.update(_PR)
            .where(_PR.c.id == request_id, _PR.c.status == allowed.value, *when)
            .values(status=RequestStatus.IN_PROGRESS.value, **held)
        )
        if updated.rowcount == 1:
            step(conn, request_id, RequestStatus.IN_PROGRESS.value, actor[:64], now, note)
            return token
    status = conn.execute(sa.select(_PR.c.status).where(_PR.c.id == request_id)).scalar()
    if status == RequestStatus.RECEIVED.value:
        raise ConflictError(f"privacy request {request_id} is received; verify it first")
    raise _refusal(conn, request_id, RequestStatus.IN_PROGRESS, now)


def release(
    conn: Connection, request_id: str, token: str, *, actor: str, now: datetime, note: str
) -> None:
    """End a failed run's claim (the request stays ``in_progress``; running it again resumes)
    and record why it failed in the steps."""
    conn.execute(
        sa.update(_PR)
        .where(_PR.c.id == request_id, _PR.c.claim_token == token)
        .values(claim_token=None, claimed_at=None)
    )
    step(conn, request_id, RequestStatus.IN_PROGRESS.value, actor[:64], now, note[:256])


def complete(
    conn: Connection,
    request_id: str,
    token: str,
    *,
    actor: str,
    now: datetime,
    outcome: Mapping[str, Any],
) -> None:
    """Complete the request the run holding ``token`` carried out, and end its claim."""
    transition(
        conn,
        request_id,
        to=RequestStatus.COMPLETED,
        allowed_from=(RequestStatus.IN_PROGRESS,),
        actor=actor,
        now=now,
        values={
            "completed_at": now,
            "outcome": json.dumps(dict(outcome), sort_keys=True),
            "claim_token": None,
            "claimed_at": None,
        },
        when=(_PR.c.claim_token == token,),
    )


def verify(
    *, runtime: Runtime, request_id: str, actor: str, note: str | None = None, clock: Clock = utcnow
) -> RequestView:
    """Record that the requester's identity was verified."""
    now = clock()
    with runtime.data_engine.begin() as conn:
        transition(
            conn,
            request_id,
            to=RequestStatus.VERIFIED,
            allowed_from=(RequestStatus.RECEIVED,),
            actor=actor,
            now=now,
            note=note,
            values={"verified_at": now},
        )
    return get(runtime=runtime, request_id=request_id)


def reject(
    *, runtime: Runtime, request_id: str, actor: str, reason: str, clock: Clock = utcnow
) -> RequestView:
    """Refuse a request (e.g. identity not verified, manifestly unfounded); the reason is kept.

    Refused (409) while a run holds it (:func:`claim`), and for an erasure once a run started it
    (keys may already be shredded: it is finished by running it again). Another type left
    ``in_progress`` by a failed run may be rejected: its handler changed nothing (one
    transaction), e.g. a correction refused because the value identifies someone else. The
    request's corrections are deleted (and their own key shredded, if they had one)."""
    check_text(reason, "reason")
    now = clock()
    with runtime.data_engine.begin() as conn:
        transition(
            conn,
            request_id,
            to=RequestStatus.REJECTED,
            allowed_from=OPEN_STATUSES,
            actor=actor,
            now=now,
            note=reason[:256],
            values={"completed_at": now},
            when=(
                ~running(now),
                sa.or_(
                    _PR.c.status != RequestStatus.IN_PROGRESS.value,
                    _PR.c.type != RequestType.ERASURE.value,
                ),
            ),
        )
        discard_payloads(runtime=runtime, conn=conn, request_id=request_id)
    runtime.vault.shred([request_id])  # the key of corrections filed before the person was known
    return get(runtime=runtime, request_id=request_id)


def discard_payloads(*, runtime: Runtime, conn: Connection, request_id: str) -> None:
    """Delete the request's payloads, in ``conn``'s transaction; the caller shreds the request's
    own key (:func:`cdp.privacy.models.payload_owner`) once it has committed."""
    conn.execute(sa.delete(_PAY).where(_PAY.c.request_id == request_id))


def link_subject(conn: Connection, request_id: str, subject_id: str) -> bool:
    """Link a request filed before its person was known to the subject found since; return
    whether it was unlinked. Erasure, retention, the access package and lifting a restriction
    find a request by its subject."""
    linked = conn.execute(
        sa.update(_PR)
        .where(_PR.c.id == request_id, _PR.c.subject_id.is_(None))
        .values(subject_id=subject_id)
    )
    return bool(linked.rowcount)


def extend(
    *,
    runtime: Runtime,
    request_id: str,
    actor: str,
    reason: str,
    months: int = MAX_EXTENSION_MONTHS,
    clock: Clock = utcnow,
) -> RequestView:
    """Extend the deadline once, by 1 or 2 months from the original due date, with a reason;
    only before that date has passed (the person must be told within the first month), and not
    while a run holds the request."""
    if not 1 <= months <= MAX_EXTENSION_MONTHS:
        raise InvalidInputError("an extension is 1 or 2 months", field="months")
    if not reason.strip():
        raise InvalidInputError("an extension needs a reason", field="reason")
    check_text(reason, "reason")
    now = clock()
    with runtime.data_engine.begin() as conn:
        row = conn.execute(sa.select(_PR).where(_PR.c.id == request_id)).first()
        if row is None:
            raise NotFoundError(f"privacy request {request_id} not found")
        if row.extended_until is not None:
            raise ConflictError(f"privacy request {request_id} was already extended")
        if row.status not in {s.value for s in OPEN_STATUSES}:
            raise ConflictError(f"privacy request {request_id} is {row.status}")
        if now > row.due_at:
            raise ConflictError(
                f"privacy request {request_id} was due {row.due_at.date().isoformat()}: an "
                "extension must be decided and notified within the first month (GDPR art. "
                "12(3)), so it can no longer be extended"
            )
        updated = conn.execute(
            sa.update(_PR)
            .where(
                _PR.c.id == request_id,
                _PR.c.status == row.status,
                _PR.c.extended_until.is_(None),
                ~running(now),
            )
            .values(extended_until=add_months(row.due_at, months), extension_reason=reason[:256])
        )
        if updated.rowcount != 1:
            raise _refusal(conn, request_id, RequestStatus(row.status), now)
        step(conn, request_id, row.status, actor[:64], now, f"extended: {reason[:200]}")
    return get(runtime=runtime, request_id=request_id)


def record_note(conn: Connection, request_id: str, *, actor: str, now: datetime, note: str) -> None:
    """Add a step that keeps the status (e.g. a restriction lifted after completion)."""
    status = conn.execute(sa.select(_PR.c.status).where(_PR.c.id == request_id)).scalar()
    if status is None:
        raise NotFoundError(f"privacy request {request_id} not found")
    step(conn, request_id, status, actor[:64], now, note[:256])
