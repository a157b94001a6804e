"""Privacy requests (data-subject requests) and their lifecycle.

    received ──verify──► verified ──run──► in_progress ──► completed
        └───────reject──────┴──────────────────┘ (a failed run stays in_progress; run again)

A run claims its request (:func:`claim`, one conditional UPDATE) and holds it until it completes
or fails; while it does, another run, a rejection or an extension is refused (409). A failed run
releases its claim; a run that stopped without releasing it (a killed process) loses it after
:data:`CLAIM_LEASE`. An erasure that a run started is never rejected (the person may already be
partly erased): it is finished by running it again.

A request is due one calendar month after receipt (GDPR art. 12(3); the 31st rolls back to the
month's last day); it may be extended once, before that date, by at most two further months, with
a recorded reason.
Every step is written to ``privacy_request_events`` (who, when, to which status, a note that never
holds personal data). The identity a request names is kept only as its token, the subject as its
random id; corrections for a rectification are encrypted under the subject's data key, or, filed
before the person is known, under a key of the request's own until the run finds the person.

Running a request (:mod:`cdp.privacy.runner`) requires ``verified``: confirming that the requester
is the person is the DPO's step, done outside cdp (e.g. by replying from the account's address).
"""

from __future__ import annotations

import calendar
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.access.context import AccessContext
from cdp.audit.service import record_access, require
from cdp.clock import Clock, utcnow
from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Identity
from cdp.errors import CdpError, ConflictError, InvalidInputError, NotFoundError
from cdp.privacy.models import (
    PrivacyPayload,
    PrivacyRequest,
    PrivacyRequestEvent,
    new_request_id,
    payload_field,
    payload_owner,
)
from cdp.privacy.rectification import checked_corrections
from cdp.runtime import Runtime
from cdp.validation import check_text

_PR = PrivacyRequest.__table__  # type: ignore[attr-defined]
_EV = PrivacyRequestEvent.__table__  # type: ignore[attr-defined]
_PAY = PrivacyPayload.__table__  # type: ignore[attr-defined]

MAX_EXTENSION_MONTHS = 2
REQUEST_IDENTITY_KINDS = (IdentityKind.EMAIL, IdentityKind.PHONE, IdentityKind.CUSTOMER_ID)
CONTACT_KINDS = (IdentityKind.EMAIL, IdentityKind.PHONE)
RESOURCE = "privacy_requests"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
CLAIM_LEASE = timedelta(minutes=15)
"""How long a run's claim holds when the run neither completes nor releases it (a process killed
mid-run): after that, running the request again takes it over."""


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


def find_subject(
    runtime: Runtime, conn: Connection, kind: IdentityKind, raw: str
) -> tuple[str | None, str]:
    """(subject id or None, current-version token) of an identity value."""
    tokens = runtime.tokenizer.lookup_tokens(kind, raw)
    ident = Identity.__table__  # type: ignore[attr-defined]
    sid = conn.execute(
        sa.select(ident.c.subject_id).where(
            ident.c.kind == kind.value, ident.c.token.in_([t.value for t in tokens])
        )
    ).scalar()
    return sid, runtime.tokenizer.token(kind, raw).value


def _step(
    conn: Connection, request_id: str, status: str, actor: str, now: datetime, note: str | None
) -> None:
    conn.execute(
        sa.insert(_EV).values(request_id=request_id, at=now, status=status, actor=actor, note=note)
    )


def _check_corrections(
    corrections: Mapping[str, str] | None, kind: RequestType, *, default_region: str
) -> dict[str, str]:
    if kind is not RequestType.RECTIFICATION:
        if corrections:
            raise InvalidInputError("only a rectification carries corrections", field="corrections")
        return {}
    if not corrections:
        raise InvalidInputError("a rectification needs corrections", field="corrections")
    return checked_corrections(corrections, default_region=default_region)


def create(
    *,
    runtime: Runtime,
    ctx: AccessContext,
    type: str,
    identity_kind: str,
    identity_value: str,
    corrections: Mapping[str, str] | None = None,
    clock: Clock = utcnow,
) -> RequestView:
    """File a request for ``ctx`` (its principal is recorded as the requester); the subject is
    looked up by the identity's token (never a scan).

    The lookup tells whether an identity belongs to a customer, like ``GET /v1/profiles?email=``:
    it is authorised the same way (an email or phone needs ``pii:contact`` read for the purpose)
    and audited as ``lookup:<kind>`` of ``profile`` naming the subject found, in the transaction
    that files the request."""
    require(runtime=runtime, ctx=ctx, resource=RESOURCE, action="create")
    try:
        kind = RequestType(type)
    except ValueError:
        raise InvalidInputError("unknown request type", field="type") from None
    try:
        ident_kind = IdentityKind(identity_kind)
    except ValueError:
        raise InvalidInputError("unknown identity kind", field="identity") from None
    if ident_kind not in REQUEST_IDENTITY_KINDS:
        raise InvalidInputError("identity must be an email, phone or customer_id", field="identity")
    fixes = _check_corrections(corrections, kind, default_region=runtime.settings.default_region)
    if ident_kind in CONTACT_KINDS:
        require(runtime=runtime, ctx=ctx, resource="pii:contact", action="read")
    now = clock()
    request_id = new_request_id()
    try:
        _file(runtime, ctx, request_id, kind, ident_kind, identity_value, fixes, now)
    except BaseException:
        if fixes:  # a key made for the corrections of a request that was not filed
            runtime.vault.shred([request_id])
        raise
    return get(runtime=runtime, request_id=request_id)


def record_lookup(
    runtime: Runtime, ctx: AccessContext, conn: Connection, kind: str, sid: str | None
) -> None:
    """The audit record of looking a request's person up by an identity of ``kind`` (in
    ``conn``'s transaction), as ``GET /v1/profiles?email=`` records its lookup."""
    record_access(
        runtime=runtime,
        ctx=ctx,
        action=f"lookup:{kind}",
        resource="profile",
        outcome="allowed",
        subject_ids=[sid] if sid is not None else [],
        conn=conn,
    )


def _file(
    runtime: Runtime,
    ctx: AccessContext,
    request_id: str,
    kind: RequestType,
    ident_kind: IdentityKind,
    identity_value: str,
    fixes: dict[str, str],
    now: datetime,
) -> None:
    requested_by = ctx.principal_name[:64]
    with runtime.data_engine.begin() as conn:
        sid, token = find_subject(runtime, conn, ident_kind, identity_value)
        record_lookup(runtime, ctx, conn, ident_kind.value, sid)
        conn.execute(
            sa.insert(_PR).values(
                id=request_id,
                type=kind.value,
                status=RequestStatus.RECEIVED.value,
                subject_id=sid,
                identity_kind=ident_kind.value,
                identity_token=token,
                received_at=now,
                due_at=add_months(now, 1),
                requested_by=requested_by,
            )
        )
        if fixes:
            if sid is None:  # nobody yet: the corrections are kept under the request's own key
                runtime.vault.create_keys([request_id])
            blob = runtime.vault.encrypt(
                payload_owner(request_id, sid),
                payload_field(request_id, "corrections"),
                json.dumps(fixes),
            )
            conn.execute(
                sa.insert(_PAY).values(
                    request_id=request_id,
                    kind="corrections",
                    subject_id=sid,
                    ciphertext=blob,
                    created_at=now,
                )
            )
        _step(conn, request_id, RequestStatus.RECEIVED.value, requested_by, now, None)


def _view(conn: Connection, row: Any, steps: list[Any] | None = None) -> RequestView:
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
    return _view(conn, row)


@dataclass(frozen=True, slots=True)
class RequestPage:
    """One page of a request list; ``next_cursor`` is None on the last page."""

    items: list[RequestView]
    next_cursor: str | None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(r"^([0-9]{1,19})_(pr_[0-9a-f]{24})$")
CURSOR_PATTERN = _CURSOR.pattern


def deadline_column() -> sa.ColumnElement[datetime]:
    """SQL: the date a request must be answered by (its extension, if any)."""
    return sa.func.coalesce(_PR.c.extended_until, _PR.c.due_at)


def _cursor_of(view: RequestView) -> str:
    return f"{(view.deadline - _EPOCH) // timedelta(microseconds=1)}_{view.id}"


def _after(cursor: str) -> sa.ColumnElement[bool]:
    match = _CURSOR.match(cursor)
    if match is None:
        raise InvalidInputError("not a cursor of this list (next_cursor)", field="cursor")
    micros, last_id = int(match.group(1)), match.group(2)
    try:
        last = _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise InvalidInputError("not a cursor of this list (next_cursor)", field="cursor") from None
    deadline = deadline_column()
    return sa.or_(deadline > last, sa.and_(deadline == last, _PR.c.id > last_id))


def list_requests(
    *,
    runtime: Runtime,
    status: str | None = None,
    overdue_only: bool = False,
    clock: Clock = utcnow,
    limit: int | None = None,
    cursor: str | None = None,
) -> RequestPage:
    """A page of requests, most urgent deadline first (then by id); optionally only one status,
    or only the overdue ones (open, deadline passed: filtered in SQL, before the page is cut).
    ``limit`` is the page size (default :data:`DEFAULT_PAGE_SIZE`, at most
    :data:`MAX_PAGE_SIZE`); ``cursor`` is the previous page's ``next_cursor``."""
    size = DEFAULT_PAGE_SIZE if limit is None else limit
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidInputError(f"a page holds 1 to {MAX_PAGE_SIZE} requests", field="limit")
    query = sa.select(_PR).order_by(deadline_column(), _PR.c.id)
    if status is not None:
        try:
            query = query.where(_PR.c.status == RequestStatus(status).value)
        except ValueError:
            raise InvalidInputError(
                "unknown status; one of " + ", ".join(s.value for s in RequestStatus),
                field="status",
            ) from None
    if overdue_only:
        query = query.where(
            _PR.c.status.in_([s.value for s in OPEN_STATUSES]), deadline_column() < clock()
        )
    if cursor is not None:
        query = query.where(_after(cursor))
    with runtime.data_engine.connect() as conn:
        rows = conn.execute(query.limit(size + 1)).all()
        steps: dict[str, list[Any]] = {r.id: [] for r in rows[:size]}
        if steps:
            for step in conn.execute(
                sa.select(_EV.c.request_id, _EV.c.at, _EV.c.status, _EV.c.actor, _EV.c.note)
                .where(_EV.c.request_id.in_(list(steps)))
                .order_by(_EV.c.id)
            ):
                steps[step.request_id].append(step)
        views = [_view(conn, r, steps[r.id]) for r in rows[:size]]
    more = len(rows) > size
    return RequestPage(items=views, next_cursor=_cursor_of(views[-1]) if more else None)


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
    _step(conn, request_id, to.value, actor[:64], now, note)


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
            _step(conn, request_id, RequestStatus.IN_PROGRESS.value, actor[:64], now, note)
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
    _step(conn, request_id, RequestStatus.IN_PROGRESS.value, actor[:64], now, note[:256])


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
        _step(conn, request_id, row.status, actor[:64], now, f"extended: {reason[:200]}")
    return get(runtime=runtime, request_id=request_id)


def record_note(conn: Connection, request_id: str, *, actor: str, now: datetime, note: str) -> None:
    """Add a step that keeps the status (e.g. a restriction lifted after completion)."""
    status = conn.execute(sa.select(_PR.c.status).where(_PR.c.id == request_id)).scalar()
    if status is None:
        raise NotFoundError(f"privacy request {request_id} not found")
    _step(conn, request_id, status, actor[:64], now, note[:256])
