"""Serving privacy requests: run a verified request, download its package, lift a restriction.

Every function takes the caller's :class:`AccessContext` (the DPO, purpose ``privacy_request``),
checks the policy, and writes an audit record for what it reads or changes: producing a package
is a read of the whole profile, downloading it is another; an erasure, a rectification, a
restriction and an objection are recorded as writes or deletes. Where the work and its record can
share a transaction they do (a package is stored only if its audit record is written).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.access.context import AccessContext
from cdp.audit.service import record_access, require
from cdp.clock import Clock, utcnow
from cdp.db.models import Identity
from cdp.errors import CdpError, ConflictError, NotFoundError
from cdp.exports.rectified import recipients_to_notify
from cdp.logging import get_logger
from cdp.privacy import access_package, request_filing, request_lifecycle, requests
from cdp.privacy.erasure import erase_subject
from cdp.privacy.models import PrivacyPayload, PrivacyRequest, payload_field, payload_owner
from cdp.privacy.objection import object_to_marketing
from cdp.privacy.rectification import rectify
from cdp.privacy.requests import RequestStatus, RequestType, RequestView
from cdp.privacy.restriction import is_restricted, lift_request, restrict
from cdp.profiles.former_ids import absorbed_ids, current_ids
from cdp.runtime import Runtime

RESOURCE = "privacy_requests"
log = get_logger("cdp.privacy")
_PAY = PrivacyPayload.__table__  # type: ignore[attr-defined]
_PR = PrivacyRequest.__table__  # type: ignore[attr-defined]

Handler = Callable[[Runtime, AccessContext, RequestView, str, datetime], dict[str, Any]]


def _subject_of(
    runtime: Runtime, ctx: AccessContext, view: RequestView, now: datetime
) -> str | None:
    """The request's subject: its stored link, else a new lookup by the identity's token (the
    person may have been ingested after the request arrived). A subject found so is linked to the
    request — erasure, retention, the access package and lifting a restriction find a request by
    its subject — and the lookup is audited like the one made when the request was filed."""
    if view.subject_id is not None:
        # a subject merged since is the same person: serve the one that absorbed it
        with runtime.data_engine.connect() as conn:
            return current_ids(conn, [view.subject_id])[view.subject_id]
    ident = Identity.__table__  # type: ignore[attr-defined]
    with runtime.data_engine.begin() as conn:
        token = conn.execute(sa.select(_PR.c.identity_token).where(_PR.c.id == view.id)).scalar()
        if token is None:  # its person was erased since
            return None
        sid: str | None = conn.execute(
            sa.select(ident.c.subject_id).where(
                ident.c.kind == view.identity_kind, ident.c.token == token
            )
        ).scalar()
        request_filing.record_lookup(runtime, ctx, conn, view.identity_kind, sid)
        if sid is not None and request_lifecycle.link_subject(conn, view.id, sid):
            request_lifecycle.record_note(
                conn, view.id, actor=ctx.principal_name, now=now, note="subject found: linked"
            )
    return sid


def _package(
    runtime: Runtime, ctx: AccessContext, view: RequestView, sid: str, now: datetime
) -> dict[str, Any]:
    with runtime.data_engine.begin() as conn:
        package = access_package.build(
            runtime=runtime, conn=conn, subject_id=sid, request_id=view.id, generated_at=now
        )
        blob = runtime.vault.encrypt(sid, payload_field(view.id, "package"), json.dumps(package))
        conn.execute(sa.delete(_PAY).where(_PAY.c.request_id == view.id, _PAY.c.kind == "package"))
        conn.execute(
            sa.insert(_PAY).values(
                request_id=view.id, kind="package", subject_id=sid, ciphertext=blob, created_at=now
            )
        )
        record_access(
            runtime=runtime,
            ctx=ctx,
            action="read",
            resource="profile",
            outcome="allowed",
            subject_ids=[sid],
            fields=access_package.fields_of(package),
            conn=conn,
        )
    sections = ("orders", "events", "traits", "segments", "recipients", "audit_trail")
    counts = {s: access_package.section_size(package, s) for s in sections}
    counts["personal_fields"] = len(package["personal_data"])
    counts["consent_changes"] = access_package.section_size(package, "consent")
    return {"package": True, "counts": counts}


def _erase(
    runtime: Runtime, ctx: AccessContext, view: RequestView, sid: str, now: datetime
) -> dict[str, Any]:
    def record(ids: list[str], conn: Connection | None) -> None:
        # the ids the erasure resolved (a merge since ``sid`` was resolved is followed: the
        # survivor first, then every id it absorbed), committed before their keys are destroyed
        record_access(
            runtime=runtime,
            ctx=ctx,
            action="delete",
            resource="profile",
            outcome="allowed",
            subject_ids=ids,
            conn=conn,
        )

    erased = erase_subject(runtime=runtime, subject_id=sid, clock=lambda: now, record=record)
    outcome = erased.as_dict()
    # the erasure clears the identity token of the requests linked to the person; requests filed
    # with one of its identities and never linked (found nobody then) lose theirs here
    with runtime.data_engine.begin() as conn:
        for kind, token in erased.identities:
            conn.execute(
                sa.update(_PR)
                .where(
                    _PR.c.subject_id.is_(None),
                    _PR.c.identity_kind == kind,
                    _PR.c.identity_token == token,
                )
                .values(identity_token=None)
            )
    return outcome


APPLIED = "corrections applied: "
"""The step note written with the corrections, in their transaction (a run that stopped between
that commit and the request's completion finds it when run again, and completes)."""


def _rectify(
    runtime: Runtime, ctx: AccessContext, view: RequestView, sid: str, now: datetime
) -> dict[str, Any]:
    with runtime.data_engine.begin() as conn:
        row = conn.execute(
            sa.select(_PAY.c.subject_id, _PAY.c.ciphertext).where(
                _PAY.c.request_id == view.id, _PAY.c.kind == "corrections"
            )
        ).first()
        if row is None:
            done = [s.note for s in view.steps if s.note and s.note.startswith(APPLIED)]
            if done:
                fields = done[-1].removeprefix(APPLIED).split(",")
                return _rectified(conn, sid, fields)
            raise ConflictError(
                f"privacy request {view.id} carries no corrections (filed for someone not known "
                "yet by an earlier version, which did not keep them): reject it and file it again"
            )
        owner = payload_owner(view.id, row.subject_id)
        fixes = json.loads(
            runtime.vault.decrypt(owner, payload_field(view.id, "corrections"), bytes(row[1]))
        )
        fields = rectify(runtime=runtime, conn=conn, subject_id=sid, corrections=fixes, now=now)
        conn.execute(
            sa.delete(_PAY).where(_PAY.c.request_id == view.id, _PAY.c.kind == "corrections")
        )
        request_lifecycle.record_note(
            conn, view.id, actor=ctx.principal_name, now=now, note=APPLIED + ",".join(fields)
        )
        record_access(
            runtime=runtime,
            ctx=ctx,
            action="write",
            resource="profile",
            outcome="allowed",
            subject_ids=[sid],
            fields=fields,
            conn=conn,
        )
        outcome = _rectified(conn, sid, fields)
    if owner == view.id:
        runtime.vault.shred([view.id])
    return outcome


def _rectified(conn: Connection, sid: str, fields: list[str]) -> dict[str, Any]:
    """A rectification's outcome: the fields, and the destinations the recipients ledger says
    received one of them (art. 19: each must be told; the next export to each sends the new
    value and withdraws a replaced email or phone, :mod:`cdp.exports.rectified`)."""
    person = [sid, *absorbed_ids(conn, [sid])]
    return {
        "rectified_fields": fields,
        "destinations_to_notify": recipients_to_notify(conn, subject_ids=person, fields=fields),
    }


def _restrict(
    runtime: Runtime, ctx: AccessContext, view: RequestView, sid: str, now: datetime
) -> dict[str, Any]:
    with runtime.data_engine.begin() as conn:
        already = is_restricted(conn=conn, subject_id=sid)
        restrict(conn=conn, subject_id=sid, request_id=view.id, clock=lambda: now)
        record_access(
            runtime=runtime,
            ctx=ctx,
            action="write",
            resource="profile",
            outcome="allowed",
            subject_ids=[sid],
            fields=["restriction"],
            conn=conn,
        )
    return {"restricted": True, "already_restricted": already}


def _object(
    runtime: Runtime, ctx: AccessContext, view: RequestView, sid: str, now: datetime
) -> dict[str, Any]:
    with runtime.data_engine.begin() as conn:
        withdrawn = object_to_marketing(
            conn=conn, subject_id=sid, request_id=view.id, actor=ctx.principal_name, now=now
        )
        record_access(
            runtime=runtime,
            ctx=ctx,
            action="write",
            resource="data:consent",
            outcome="allowed",
            subject_ids=[sid],
            fields=["consent"],
            conn=conn,
        )
    return {"withdrawn": withdrawn}


HANDLERS: dict[str, Handler] = {
    RequestType.ACCESS.value: _package,
    RequestType.PORTABILITY.value: _package,
    RequestType.ERASURE.value: _erase,
    RequestType.RECTIFICATION.value: _rectify,
    RequestType.RESTRICTION.value: _restrict,
    RequestType.OBJECTION.value: _object,
}


def run(
    *, runtime: Runtime, ctx: AccessContext, request_id: str, clock: Clock = utcnow
) -> RequestView:
    """Carry out a verified request and complete it.

    The run first claims the request (:func:`cdp.privacy.request_lifecycle.claim`): a second
    run, a rejection or an extension meanwhile is refused with 409, so a request can no longer end
    ``rejected`` after its erasure was carried out. A failure releases the claim and leaves the
    request ``in_progress`` with the error's code in its steps; running it again resumes (every
    handler is idempotent)."""
    require(runtime=runtime, ctx=ctx, resource=RESOURCE, action="run")
    with runtime.data_engine.begin() as conn:
        token = request_lifecycle.claim(conn, request_id, actor=ctx.principal_name, now=clock())
    try:
        view = requests.get(runtime=runtime, request_id=request_id)
        now = clock()
        sid = _subject_of(runtime, ctx, view, now)
        if sid is None:
            with runtime.data_engine.begin() as conn:
                request_lifecycle.discard_payloads(
                    runtime=runtime, conn=conn, request_id=request_id
                )
            runtime.vault.shred([request_id])
            outcome: dict[str, Any] = {"subject_found": False}
        else:
            outcome = {"subject_found": True, **HANDLERS[view.type](runtime, ctx, view, sid, now)}
        with runtime.data_engine.begin() as conn:
            request_lifecycle.complete(
                conn, request_id, token, actor=ctx.principal_name, now=clock(), outcome=outcome
            )
    except Exception as exc:
        code = exc.code if isinstance(exc, CdpError) else "internal_error"
        try:
            with runtime.data_engine.begin() as conn:
                request_lifecycle.release(
                    conn, request_id, token, actor=ctx.principal_name, now=clock(),
                    note=f"failed: {code}",
                )  # fmt: skip
        except Exception:  # the claim lapses after CLAIM_LEASE; the first error is the one to see
            log.error("privacy run: claim not released", request_id=request_id)
        raise
    return requests.get(runtime=runtime, request_id=request_id)


@dataclass(frozen=True, slots=True)
class Package:
    """A produced package, decrypted for delivery."""

    request_id: str
    data: dict[str, Any]

    # Event properties may hold lone surrogates (a JSON escape such as "\ud800" sent to the
    # Segment API is stored as sent): written as that escape, they keep the package valid UTF-8.

    def json_bytes(self) -> bytes:
        """The package as UTF-8 JSON; a lone surrogate is written as its JSON escape."""
        text = json.dumps(self.data, ensure_ascii=False, indent=2)
        return text.encode("utf-8", "backslashreplace")

    def html(self) -> str:
        """The package as HTML; a lone surrogate is shown as its escape (``\ud800``)."""
        text = access_package.render_html(self.data)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def download_package(
    *, runtime: Runtime, ctx: AccessContext, request_id: str, clock: Clock = utcnow
) -> Package:
    """The package of a completed access/portability request; the download is audited (the audit
    record is committed before the package is returned).

    A package older than ``CDP_PRIVACY_PACKAGE_DAYS`` is refused and deleted here, whether or not
    the retention job has run since it expired."""
    require(runtime=runtime, ctx=ctx, resource=RESOURCE, action="read")
    now = clock()
    days = runtime.settings.privacy_package_days
    expired = sa.and_(
        _PAY.c.request_id == request_id,
        _PAY.c.kind == "package",
        _PAY.c.created_at < now - timedelta(days=days),
    )
    with runtime.data_engine.connect() as conn:
        row = conn.execute(
            sa.select(_PAY.c.subject_id, _PAY.c.ciphertext, _PAY.c.created_at).where(
                _PAY.c.request_id == request_id, _PAY.c.kind == "package"
            )
        ).first()
    if row is None:
        raise NotFoundError(
            f"privacy request {request_id} has no package (none was produced, or it expired "
            "and was deleted)"
        )
    if row.created_at < now - timedelta(days=days):
        with runtime.data_engine.begin() as conn:
            if conn.execute(sa.delete(_PAY).where(expired)).rowcount:
                request_lifecycle.record_note(
                    conn,
                    request_id,
                    actor=ctx.principal_name,
                    now=now,
                    note=f"package expired after {days} days (CDP_PRIVACY_PACKAGE_DAYS): deleted",
                )
        raise NotFoundError(
            f"the package of privacy request {request_id} expired: packages are kept {days} "
            "days (CDP_PRIVACY_PACKAGE_DAYS), and this one was deleted; file a new request "
            "for a new package"
        )
    data = json.loads(
        runtime.vault.decrypt(row.subject_id, payload_field(request_id, "package"), bytes(row[1]))
    )
    record_access(
        runtime=runtime,
        ctx=ctx,
        action="read",
        resource=RESOURCE,
        outcome="allowed",
        subject_ids=[row.subject_id],
        fields=access_package.fields_of(data),
        clock=clock,
    )
    return Package(request_id, data)


def lift_restriction(
    *, runtime: Runtime, ctx: AccessContext, request_id: str, clock: Clock = utcnow
) -> int:
    """Lift the restriction a completed restriction request opened — that one only: another
    request's restriction of the same person stays in force. Return how many were lifted (1);
    409 if the request is not a completed restriction request or its restriction is not open."""
    require(runtime=runtime, ctx=ctx, resource=RESOURCE, action="write")
    view = requests.get(runtime=runtime, request_id=request_id)
    if view.type != RequestType.RESTRICTION.value:
        raise ConflictError(f"privacy request {request_id} is not a restriction request")
    if view.status != RequestStatus.COMPLETED.value:
        raise ConflictError(
            f"privacy request {request_id} is {view.status}: only the restriction of a completed "
            "restriction request can be lifted"
        )
    now = clock()
    with runtime.data_engine.begin() as conn:
        subjects = lift_request(conn=conn, request_id=request_id, clock=lambda: now)
        if not subjects:
            raise ConflictError(
                f"the restriction privacy request {request_id} opened is not in force (lifted "
                "already, or the request found nobody); a restriction opened by another request "
                "is lifted through that request"
            )
        request_lifecycle.record_note(
            conn, request_id, actor=ctx.principal_name, now=now, note="lifted"
        )
        record_access(
            runtime=runtime,
            ctx=ctx,
            action="write",
            resource="profile",
            outcome="allowed",
            subject_ids=subjects,
            fields=["restriction"],
            conn=conn,
        )
    return len(subjects)
