"""Filing a privacy request: the person is looked up by the identity's token (an audited
lookup), the request is stored ``received``, due one calendar month later.

Corrections for a rectification are encrypted under the subject's data key, or, filed before the
person is known, under a key of the request's own until the run finds the person.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.access.context import AccessContext
from cdp.audit.service import record_access, require
from cdp.clock import Clock, utcnow
from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Identity
from cdp.errors import InvalidInputError
from cdp.privacy.models import (
    PrivacyPayload,
    PrivacyRequest,
    new_request_id,
    payload_field,
    payload_owner,
)
from cdp.privacy.rectification import checked_corrections
from cdp.privacy.requests import RequestStatus, RequestType, RequestView, add_months, get, step
from cdp.runtime import Runtime

_PR = PrivacyRequest.__table__  # type: ignore[attr-defined]
_PAY = PrivacyPayload.__table__  # type: ignore[attr-defined]

REQUEST_IDENTITY_KINDS = (IdentityKind.EMAIL, IdentityKind.PHONE, IdentityKind.CUSTOMER_ID)
CONTACT_KINDS = (IdentityKind.EMAIL, IdentityKind.PHONE)
RESOURCE = "privacy_requests"


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
        step(conn, request_id, RequestStatus.RECEIVED.value, requested_by, now, None)
