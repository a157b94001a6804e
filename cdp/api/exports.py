"""``/v1/exports`` (run and read exports) and ``/v1/destinations`` (manage destinations).

Routes parse input and hand the caller's :class:`AccessContext` to :mod:`cdp.exports`; the
pipeline checks the policy again for the destination's purpose and writes the audit records.
An export runs within the request and answers with its manifest; a refused export (audience too
small) answers 409 with the counts in the message.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field, JsonValue

from cdp.access.categories import CONSENT_PURPOSES
from cdp.api.auth import AccessContext, authorize
from cdp.api.deps import RuntimeDep
from cdp.api.openapi_access import error_responses
from cdp.exports.destination_audit import destination_recorder
from cdp.exports.destinations import (
    EXPORTABLE_FIELDS,
    DestinationInfo,
    DestinationKind,
    DestinationSpec,
    create_destination,
    get_destination,
    list_destinations,
)
from cdp.exports.records import ExportView, get_export, list_exports
from cdp.exports.run import run_export
from cdp.exports.signing_secrets import DEFAULT_OVERLAP, MAX_OVERLAP, rotate_secret
from cdp.segments.views import NAME_PATTERN as SEGMENT_NAME_PATTERN

router = APIRouter(tags=["exports"])

ExportsRun = Annotated[AccessContext, Depends(authorize("exports", "run"))]
ExportsRead = Annotated[AccessContext, Depends(authorize("exports", "read"))]
DestinationsCreate = Annotated[AccessContext, Depends(authorize("destinations", "create"))]
DestinationsWrite = Annotated[AccessContext, Depends(authorize("destinations", "write"))]
DestinationsRead = Annotated[AccessContext, Depends(authorize("destinations", "read"))]
ExportId = Annotated[str, Path(pattern=r"^exp_[0-9a-f]{24}$", description="An export id.")]
DESTINATION_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
DestinationName = Annotated[str, Path(pattern=DESTINATION_NAME_PATTERN)]


class ExportIn(BaseModel):
    """Run ``segment`` to ``destination`` now (send ``X-Purpose`` = the destination's purpose)."""

    segment: str = Field(pattern=SEGMENT_NAME_PATTERN)
    destination: str = Field(pattern=DESTINATION_NAME_PATTERN)
    full: bool = Field(False, description="Resend every eligible subject, not only changes.")


class UndeliveredOut(BaseModel):
    """A dead-lettered webhook batch: which, how many rows, tries, how the last one ended."""

    seq: int
    op: str
    rows: int
    attempts: int
    last_status: int | None
    last_error: str | None


class ExportOut(BaseModel):
    """An export: status and manifest (ids, counts and digests; never personal data)."""

    id: str
    status: str
    segment: str
    destination: str
    purpose: str
    principal: str
    started_at: datetime
    finished_at: datetime | None
    error_code: str | None
    manifest: dict[str, Any] | None
    undelivered: list[UndeliveredOut] = Field(
        default_factory=list,
        description="GET /v1/exports/{id} only: the webhook batches dead-lettered, with how "
        "their last try ended (never their rows).",
    )


class ExportList(BaseModel):
    items: list[ExportOut]


_KINDS: list[JsonValue] = [k.value for k in DestinationKind]
_PURPOSES: list[JsonValue] = [*sorted(CONSENT_PURPOSES)]
_FIELDS: list[JsonValue] = list(EXPORTABLE_FIELDS)


class DestinationIn(BaseModel):
    """A new destination."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    # The allowed values are declared in the OpenAPI document (``enum``), so a client generated
    # from it cannot send what the service refuses; the service checks them (422 naming the field).
    kind: str = Field(
        description="csv | jsonl | webhook | meta | google",
        json_schema_extra={"enum": _KINDS},
    )
    purpose: str = Field(
        description="The consent purpose it serves, e.g. email_marketing.",
        json_schema_extra={"enum": _PURPOSES},
    )
    fields: list[Annotated[str, Field(json_schema_extra={"enum": _FIELDS})]] = Field(
        min_length=1, description=f"Fields it may receive: {', '.join(EXPORTABLE_FIELDS)}."
    )
    min_audience: int = Field(100, ge=1, description="Refuse exports leaving fewer subjects.")
    url: str | None = Field(None, description="Webhook URL (https, or http to loopback).")
    batch_size: int = Field(500, ge=1, le=10_000)
    max_attempts: int = Field(5, ge=1, le=20)
    timeout_seconds: float = Field(10.0, ge=0.1, le=120)


class DestinationOut(BaseModel):
    """A destination (its signing secret is never shown again after creation)."""

    id: str
    name: str
    kind: str
    purpose: str
    fields: list[str]
    min_audience: int
    url: str | None
    has_secret: bool
    previous_secret_until: datetime | None = Field(
        None, description="Until when the secret the last rotation replaced still signs."
    )
    batch_size: int
    max_attempts: int
    timeout_seconds: float
    enabled: bool
    created_by: str
    created_at: datetime


class CreatedDestinationOut(BaseModel):
    destination: DestinationOut
    signing_secret: str | None = Field(
        None, description="Webhook signing secret: shown once, store it in the receiver."
    )


class RotateSecretIn(BaseModel):
    """How long the replaced secret keeps signing beside the new one (0: not at all, for a
    secret that leaked)."""

    overlap_seconds: int = Field(
        int(DEFAULT_OVERLAP.total_seconds()), ge=0, le=int(MAX_OVERLAP.total_seconds())
    )


class SecretOut(BaseModel):
    signing_secret: str
    previous_secret_until: datetime | None = Field(
        None, description="Until when the replaced secret also signs every batch (null: not)."
    )


class DestinationList(BaseModel):
    items: list[DestinationOut]


def _export_out(view: ExportView) -> ExportOut:
    return ExportOut(
        id=view.id,
        status=view.status,
        segment=view.segment,
        destination=view.destination,
        purpose=view.purpose,
        principal=view.principal_name,
        started_at=view.started_at,
        finished_at=view.finished_at,
        error_code=view.error_code,
        manifest=view.manifest,
        undelivered=[UndeliveredOut(**asdict(u)) for u in view.undelivered],
    )


def _dest_out(info: DestinationInfo) -> DestinationOut:
    return DestinationOut(
        id=info.id,
        name=info.name,
        kind=info.kind,
        purpose=info.purpose,
        fields=list(info.fields),
        min_audience=info.min_audience,
        url=info.url,
        has_secret=info.has_secret,
        previous_secret_until=info.previous_secret_until,
        batch_size=info.batch_size,
        max_attempts=info.max_attempts,
        timeout_seconds=info.timeout_seconds,
        enabled=info.enabled,
        created_by=info.created_by,
        created_at=info.created_at,
    )


@router.post(
    "/v1/exports", response_model=ExportOut, status_code=201, responses=error_responses(404, 409)
)
def post_export(body: ExportIn, ctx: ExportsRun, runtime: RuntimeDep) -> ExportOut:
    """Run an export now: membership recomputed, consent and restriction checked at send time,
    only the destination's fields decrypted, audited, manifest returned."""
    result = run_export(
        runtime=runtime,
        ctx=ctx,
        segment=body.segment,
        destination=body.destination,
        full=body.full,
    )
    return _export_out(get_export(runtime=runtime, export_id=result.export_id))


@router.get("/v1/exports/{export_id}", response_model=ExportOut)
def read_export(export_id: ExportId, ctx: ExportsRead, runtime: RuntimeDep) -> ExportOut:
    """One export with its manifest."""
    return _export_out(get_export(runtime=runtime, export_id=export_id))


@router.get("/v1/exports", response_model=ExportList)
def read_exports(ctx: ExportsRead, runtime: RuntimeDep) -> ExportList:
    """The latest 50 exports, newest first."""
    return ExportList(items=[_export_out(v) for v in list_exports(runtime=runtime)])


@router.post(
    "/v1/destinations",
    response_model=CreatedDestinationOut,
    status_code=201,
    responses=error_responses(409),
)
def post_destination(
    body: DestinationIn, ctx: DestinationsCreate, runtime: RuntimeDep
) -> CreatedDestinationOut:
    """Create a destination (admin). A webhook's signing secret is in this answer only."""
    spec = DestinationSpec(**body.model_dump())
    created = create_destination(
        runtime=runtime,
        spec=spec,
        created_by=ctx.principal_name,
        audit=destination_recorder(runtime, ctx, "create"),
    )
    return CreatedDestinationOut(
        destination=_dest_out(created.destination), signing_secret=created.signing_secret
    )


@router.get("/v1/destinations", response_model=DestinationList)
def read_destinations(ctx: DestinationsRead, runtime: RuntimeDep) -> DestinationList:
    """Every destination."""
    return DestinationList(items=[_dest_out(d) for d in list_destinations(runtime=runtime)])


@router.get("/v1/destinations/{name}", response_model=DestinationOut)
def read_destination(
    name: DestinationName, ctx: DestinationsRead, runtime: RuntimeDep
) -> DestinationOut:
    """One destination."""
    return _dest_out(get_destination(runtime=runtime, name=name))


@router.post(
    "/v1/destinations/{name}/rotate-secret",
    response_model=SecretOut,
    responses=error_responses(409),
)
def post_rotate_secret(
    name: DestinationName,
    ctx: DestinationsWrite,
    runtime: RuntimeDep,
    body: RotateSecretIn | None = None,
) -> SecretOut:
    """Give a webhook destination a new signing secret (shown once); the replaced one signs
    beside it for ``overlap_seconds`` (default 24 h)."""
    overlap = timedelta(seconds=(body or RotateSecretIn()).overlap_seconds)
    rotated = rotate_secret(
        runtime=runtime,
        name=name,
        overlap=overlap,
        audit=destination_recorder(runtime, ctx, "write"),
    )
    return SecretOut(signing_secret=rotated.secret, previous_secret_until=rotated.previous_until)
