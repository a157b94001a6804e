"""``/v1/principals``: manage principals over the API (admin role, purpose ``operations``).

Tokens are returned once, by ``POST``; listing never shows them (only their hashes are stored).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from cdp.access import principals as service
from cdp.access.principal_audit import principal_recorder
from cdp.access.principals import KINDS, MAX_TOKEN_LIFETIME, PrincipalInfo
from cdp.api.auth import AccessContext, authorize
from cdp.api.deps import RuntimeDep
from cdp.api.openapi_access import error_responses
from cdp.clock import utcnow
from cdp.runtime import Runtime

router = APIRouter(prefix="/v1/principals", tags=["principals"])

PrincipalsRead = Annotated[AccessContext, Depends(authorize("principals", "read"))]
PrincipalsCreate = Annotated[AccessContext, Depends(authorize("principals", "create"))]
PrincipalsDelete = Annotated[AccessContext, Depends(authorize("principals", "delete"))]
Name = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")]


class PrincipalOut(BaseModel):
    """A principal (never its token)."""

    id: str
    name: str
    kind: str
    roles: list[str]
    state: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, p: PrincipalInfo) -> PrincipalOut:
        return cls(
            id=p.id,
            name=p.name,
            kind=p.kind,
            roles=list(p.roles),
            state=p.state(utcnow()),
            created_at=p.created_at,
            expires_at=p.expires_at,
            revoked_at=p.revoked_at,
        )


class PrincipalCreate(BaseModel):
    """A new principal."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
    roles: list[str] = Field(min_length=1, max_length=16)
    kind: str = Field("person", json_schema_extra={"enum": list(KINDS)})
    expires_in_seconds: int | None = Field(
        default=None, ge=60, le=int(MAX_TOKEN_LIFETIME.total_seconds())
    )


class PrincipalCreated(BaseModel):
    """The created principal and its token, shown this once."""

    principal: PrincipalOut
    token: str


@router.get("", response_model=list[PrincipalOut])
def list_principals(ctx: PrincipalsRead, runtime: RuntimeDep) -> list[PrincipalOut]:
    """Every principal with its roles and state."""
    return [PrincipalOut.of(p) for p in service.list_principals(runtime=runtime)]


@router.post("", response_model=PrincipalCreated, status_code=201, responses=error_responses(409))
def create_principal(
    body: PrincipalCreate, ctx: PrincipalsCreate, runtime: RuntimeDep
) -> PrincipalCreated:
    """Create a principal; the response carries its token once."""
    made = service.create(
        runtime=runtime,
        name=body.name,
        roles=body.roles,
        kind=body.kind,
        expires_in=timedelta(seconds=body.expires_in_seconds) if body.expires_in_seconds else None,
        audit=_recorder(runtime, ctx, "create"),
    )
    return PrincipalCreated(principal=PrincipalOut.of(made.principal), token=made.token)


@router.delete("/{name}", response_model=PrincipalOut)
def revoke_principal(name: Name, ctx: PrincipalsDelete, runtime: RuntimeDep) -> PrincipalOut:
    """Revoke a principal's token now."""
    revoked = service.revoke(runtime=runtime, name=name, audit=_recorder(runtime, ctx, "delete"))
    return PrincipalOut.of(revoked)


def _recorder(
    runtime: Runtime, ctx: AccessContext, action: str
) -> Callable[[Connection, PrincipalInfo], object]:
    """The change's audit record, by the admin who made it (:mod:`cdp.access.principal_audit`)."""
    return principal_recorder(runtime, ctx, action)
