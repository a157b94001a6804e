"""``POST /v1/consent``: record a grant or a withdrawal in the consent ledger.

Granting and withdrawing are the same request with another ``status``: withdrawing never takes
more steps than granting. The subject is named by its id or by one identity (email, phone or
customer id, looked up through the token index; nobody is created). The response is the subject's
current state for the purpose. Reading the whole history is ``GET /v1/profiles/{id}/consent``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, model_validator

from cdp.api.auth import AccessContext, authorize
from cdp.api.deps import RuntimeDep
from cdp.api.openapi_access import error_responses
from cdp.audit.service import require
from cdp.clock import utcnow
from cdp.consent.purposes import PURPOSE_NAMES
from cdp.consent.recording import record_choice
from cdp.crypto.normalize import IdentityKind
from cdp.errors import NotFoundError
from cdp.privacy.request_filing import CONTACT_KINDS, find_subject, record_lookup
from cdp.validation import IsoDateTime

router = APIRouter(prefix="/v1/consent", tags=["consent"])

ConsentWrite = Annotated[AccessContext, Depends(authorize("data:consent", "write"))]


class SubjectRef(BaseModel):
    """Exactly one way to name the subject."""

    subject_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=64)
    customer_id: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _exactly_one(self) -> SubjectRef:
        given = [k for k in ("subject_id", "email", "phone", "customer_id") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "name the subject by exactly one of subject_id, email, phone, customer_id"
            )
        return self


class ConsentIn(SubjectRef):
    """One choice of the subject."""

    purpose: str = Field(description="One of: " + ", ".join(PURPOSE_NAMES))
    status: Literal["granted", "withdrawn"]
    occurred_at: IsoDateTime | None = Field(
        default=None,
        description="When the subject made the choice, ISO 8601 (default: now; a number is "
        "refused, not read as Unix seconds).",
    )
    source: str = Field(default="api", min_length=1, max_length=64)
    notice_version: str | None = Field(default=None, max_length=64)
    mechanism: Literal["checkbox", "banner", "import", "api", "sdk"] = "api"


class ConsentStateOut(BaseModel):
    purpose: str
    status: str
    is_default: bool
    occurred_at: datetime | None
    source: str | None
    mechanism: str | None
    notice_version: str | None


class ConsentOut(BaseModel):
    subject_id: str = Field(
        description="The subject the choice was recorded for: the one named, or the subject "
        "that absorbed it in a merge."
    )
    recorded: bool = Field(description="False when the same choice was already recorded.")
    state: ConsentStateOut


@router.post("", response_model=ConsentOut, responses=error_responses(404))
def record(body: ConsentIn, ctx: ConsentWrite, runtime: RuntimeDep) -> ConsentOut:
    """Record a grant or withdrawal (idempotent: a replay records nothing new)."""
    sid = body.subject_id
    if sid is None:
        kind = next(k for k in IdentityKind if getattr(body, k.value, None))
        if kind in CONTACT_KINDS:  # who holds this email or phone is a read of contact data
            require(runtime=runtime, ctx=ctx, resource="pii:contact", action="read")
        with runtime.data_engine.begin() as conn:
            sid, _ = find_subject(runtime, conn, kind, str(getattr(body, kind.value)))
            record_lookup(runtime, ctx, conn, kind.value, sid)  # found or not, as filing does
        if sid is None:
            raise NotFoundError("no subject has that identity")
    done = record_choice(
        runtime=runtime,
        ctx=ctx,
        subject_id=sid,
        purpose=body.purpose,
        status=body.status,
        occurred_at=body.occurred_at or utcnow(),
        source=body.source,
        mechanism=body.mechanism,
        notice_version=body.notice_version,
    )
    state = done.state
    return ConsentOut(
        subject_id=done.subject_id,
        recorded=done.recorded,
        state=ConsentStateOut(
            purpose=state.purpose,
            status=state.status,
            is_default=state.is_default,
            occurred_at=state.occurred_at,
            source=state.source,
            mechanism=state.mechanism,
            notice_version=state.notice_version,
        ),
    )
