"""``/v1/destinations``: create, list, read and change destinations, switch them off and on, and
rotate a webhook's signing secret (admin; marketers may read them for their marketing purposes).

Routes parse input and hand the caller's :class:`AccessContext` to :mod:`cdp.exports`, which
validates, stores and writes the audit record of every change in the same transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from cdp.access.categories import CONSENT_PURPOSES
from cdp.api.auth import AccessContext, authorize
from cdp.api.deps import RuntimeDep
from cdp.api.exports import DESTINATION_NAME_PATTERN
from cdp.api.openapi_access import error_responses
from cdp.exports.destination_audit import change_recorder_for, destination_recorder
from cdp.exports.destination_changes import (
    ChangedDestination,
    DestinationChanges,
    set_enabled,
    update_destination,
)
from cdp.exports.destinations import (
    EXPORTABLE_FIELDS,
    DestinationInfo,
    DestinationKind,
    DestinationSpec,
    create_destination,
    get_destination,
    list_destinations,
)
from cdp.exports.signing_secrets import DEFAULT_OVERLAP, MAX_OVERLAP, rotate_secret

router = APIRouter(tags=["exports"])

DestinationsCreate = Annotated[AccessContext, Depends(authorize("destinations", "create"))]
DestinationsWrite = Annotated[AccessContext, Depends(authorize("destinations", "write"))]
DestinationsRead = Annotated[AccessContext, Depends(authorize("destinations", "read"))]
DestinationName = Annotated[str, Path(pattern=DESTINATION_NAME_PATTERN)]


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
    enabled: bool = Field(
        description="False: disabled; exports to it are refused (409 destination_disabled) "
        "and its schedules skipped."
    )
    created_by: str
    created_at: datetime
    updated_at: datetime


class DestinationPatch(BaseModel):
    """Settings to change; a setting left out (or null) keeps its value. Checked as a creation
    is. ``kind`` and ``purpose`` cannot change (422 unless they are the destination's own:
    create a new destination instead); the name neither; switching a destination off and on
    has its own routes (``/disable``, ``/enable``)."""

    model_config = ConfigDict(extra="forbid")

    fields: list[Annotated[str, Field(json_schema_extra={"enum": _FIELDS})]] | None = Field(
        None,
        min_length=1,
        description="The whole new list of fields it may receive. A field newly allowed makes "
        "the next export of each segment to it send every eligible subject again.",
    )
    min_audience: int | None = Field(None, ge=1, le=10_000_000)
    url: str | None = Field(
        None,
        description="Webhook URL (https, or http to loopback): the same receiver at a new "
        "address; the sync state, recipients ledger and signing secret are kept.",
    )
    batch_size: int | None = Field(None, ge=1, le=10_000)
    max_attempts: int | None = Field(None, ge=1, le=20)
    timeout_seconds: float | None = Field(None, ge=0.1, le=120)
    kind: str | None = Field(None, description="Only the destination's own kind is accepted.")
    purpose: str | None = Field(None, description="Only the destination's own purpose is accepted.")


class ChangedDestinationOut(BaseModel):
    destination: DestinationOut
    changed: list[str] = Field(
        description="The settings changed (``enabled`` for a switch); empty: nothing changed."
    )
    resend: bool = Field(
        False,
        description="True: fields were newly allowed, so the next export of each segment to "
        "it sends every eligible subject again (with them).",
    )


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
        updated_at=info.updated_at,
    )


def _changed_out(done: ChangedDestination) -> ChangedDestinationOut:
    return ChangedDestinationOut(
        destination=_dest_out(done.destination), changed=list(done.changed), resend=done.resend
    )


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


@router.patch("/v1/destinations/{name}", response_model=ChangedDestinationOut)
def patch_destination(
    name: DestinationName, body: DestinationPatch, ctx: DestinationsWrite, runtime: RuntimeDep
) -> ChangedDestinationOut:
    """Change a destination's fields, minimum audience or webhook settings (admin); answers
    the destination, the settings changed and whether the next runs send everyone again."""
    changes = DestinationChanges(**body.model_dump(exclude_none=True))
    done = update_destination(
        runtime=runtime, name=name, changes=changes, audit=change_recorder_for(runtime, ctx)
    )
    return _changed_out(done)


@router.post("/v1/destinations/{name}/disable", response_model=ChangedDestinationOut)
def post_disable(
    name: DestinationName, ctx: DestinationsWrite, runtime: RuntimeDep
) -> ChangedDestinationOut:
    """Switch a destination off (admin): exports to it are refused (409
    ``destination_disabled``) and its schedules skipped; its sync state, recipients ledger and
    secret are kept. Already off: ``changed`` is empty."""
    done = set_enabled(
        runtime=runtime, name=name, enabled=False, audit=change_recorder_for(runtime, ctx)
    )
    return _changed_out(done)


@router.post("/v1/destinations/{name}/enable", response_model=ChangedDestinationOut)
def post_enable(
    name: DestinationName, ctx: DestinationsWrite, runtime: RuntimeDep
) -> ChangedDestinationOut:
    """Switch a disabled destination back on (admin). Already on: ``changed`` is empty."""
    done = set_enabled(
        runtime=runtime, name=name, enabled=True, audit=change_recorder_for(runtime, ctx)
    )
    return _changed_out(done)


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
