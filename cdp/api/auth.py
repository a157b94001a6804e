"""Authentication and authorisation for every route: bearer token -> principal -> policy decision.

Use in a route::

    SegmentsRead = Annotated[AccessContext, Depends(authorize("segments", "read"))]

    @router.get("/v1/segments")
    def list_segments(ctx: SegmentsRead, runtime: RuntimeDep) -> ...: ...

The dependency authenticates the ``Authorization: Bearer`` token (401 ``AuthenticationError`` if
it is missing, unknown, expired or revoked), reads the purpose of use from ``X-Purpose`` (422
``InvalidInputError`` if missing or unknown), asks the policy whether the principal's roles may do
``action`` on ``resource`` for that purpose, and on a denial writes a ``denied`` audit record
(naming the path's ``subject_id`` when there is one) before raising ``PermissionDeniedError``
(403). On success it returns an :class:`AccessContext` carrying principal, roles, purpose, request
id, client address and the decision.

The dependency is async: a token verified in the last ``auth_cache_seconds`` and an allowed
decision (both from memory) are answered in the event loop; anything that needs the database (a
token not in the cache, a denial to record) runs :func:`resolve_access` in a worker thread.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any, Final

import anyio.to_thread
from fastapi import Depends, Request
from starlette.types import Scope

from cdp.access.context import AccessContext, check_purpose
from cdp.access.engine import get_policy_engine
from cdp.access.policy import Decision
from cdp.access.principals import PrincipalInfo, authenticate, cached_principal
from cdp.api.deps import server_runtime
from cdp.audit.service import deny
from cdp.runtime import Runtime

__all__ = [
    "AUTHORIZE_MARKER",
    "AccessContext",
    "authorize",
    "credentials",
    "resolve_access",
]

AUTHORIZE_MARKER: Final = "__cdp_authorize__"
"""Attribute set on every dependency :func:`authorize` builds: ``(resource, action)``. The route
audit test looks for it, and the OpenAPI document declares it as the operation's permission."""

PURPOSE_HEADER: Final = "X-Purpose"


INVALID_CLIENT: Final = "invalid"
"""The ``client`` recorded for a peer address that is not an IP address (:func:`client_address`)."""


@lru_cache(maxsize=1024)
def client_address(host: str | None) -> str:
    """The caller's address as audit records keep it: an IP address in its standard form (an
    IPv6 zone id such as ``%eth0`` dropped), ``unknown`` when there is none, and
    :data:`INVALID_CLIENT` for anything else, which is never echoed.

    uvicorn takes the address from ``X-Forwarded-For`` when the connection comes from a trusted
    proxy, and passes on whatever text the header held ("a b", "<script>"); the audit refuses such
    a value, and every record must be written."""
    if host is None:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return INVALID_CLIENT
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        ip = ipaddress.IPv6Address(int(ip))
    return str(ip)


def _client(request: Request) -> str:
    return client_address(request.client.host if request.client is not None else None)


def resolve_access(
    *,
    runtime: Runtime,
    request: Request,
    token: str | None,
    purpose: str | None,
    resource: str,
    action: str,
) -> AccessContext:
    """Authenticate, read the purpose and decide; see the module doc for the errors raised."""
    principal = authenticate(runtime=runtime, token=token)
    checked = check_purpose(purpose, source=PURPOSE_HEADER)
    decision = get_policy_engine().decide(principal.roles, resource, action, checked)
    ctx = _context(request, principal, checked, decision)
    if not decision.allowed:
        subject = request.path_params.get("subject_id")
        raise deny(
            runtime=runtime,
            ctx=ctx,
            action=action,
            resource=resource,
            subject_ids=[subject] if isinstance(subject, str) else [],
        )
    return ctx


def allowed_from_memory(
    *,
    runtime: Runtime,
    request: Request,
    token: str | None,
    purpose: str | None,
    resource: str,
    action: str,
) -> AccessContext | None:
    """The context of an allowed request whose token this process verified recently, or ``None``
    when the answer needs the database (:func:`resolve_access` then decides and records)."""
    principal = cached_principal(runtime=runtime, token=token)
    if principal is None:
        return None
    checked = check_purpose(purpose, source=PURPOSE_HEADER)
    decision = get_policy_engine().decide(principal.roles, resource, action, checked)
    if not decision.allowed:
        return None
    return _context(request, principal, checked, decision)


def _context(
    request: Request, principal: PrincipalInfo, purpose: str, decision: Decision
) -> AccessContext:
    return AccessContext(
        principal_id=principal.id,
        principal_name=principal.name,
        roles=principal.roles,
        purpose=purpose,
        request_id=str(getattr(request.state, "request_id", "") or "none"),
        client=_client(request),
        decision=decision,
    )


def credentials(scope: Scope) -> tuple[str | None, str | None]:
    """The bearer token and the ``X-Purpose`` value of a request (``None`` when absent), read in
    one pass over the raw headers (as FastAPI's ``HTTPBearer(auto_error=False)`` and ``Header``
    would: the first of each; a scheme other than Bearer, or no token after it, is no token)."""
    token = purpose = None
    seen_auth = seen_purpose = False
    for name, value in scope["headers"]:
        if name == b"authorization" and not seen_auth:
            seen_auth = True
            scheme, _, param = value.decode("latin-1").partition(" ")
            param = param.strip()
            if scheme.lower() == "bearer" and param:
                token = param
        elif name == b"x-purpose" and not seen_purpose:
            seen_purpose = True
            purpose = value.decode("latin-1")
    return token, purpose


def authorize(resource: str, action: str) -> Callable[..., Any]:
    """A FastAPI dependency admitting principals the policy allows ``action`` on ``resource``.

    One dependency with no sub-dependencies: the token and the purpose are read from the raw
    headers here (FastAPI solving a bearer scheme and a header parameter per request cost more
    than the decision). :mod:`cdp.api.openapi_access` puts both back into the OpenAPI document,
    with the permission (``resource``, ``action``) the dependency carries as
    :data:`AUTHORIZE_MARKER`."""

    async def dependency(request: Request) -> AccessContext:
        token, purpose = credentials(request.scope)
        args: dict[str, Any] = {
            "runtime": server_runtime(),  # not a sub-dependency: one fewer to solve per request
            "request": request,
            "token": token,
            "purpose": purpose,
            "resource": resource,
            "action": action,
        }
        ctx = allowed_from_memory(**args)
        if ctx is not None:
            return ctx
        return await anyio.to_thread.run_sync(partial(resolve_access, **args))

    setattr(dependency, AUTHORIZE_MARKER, (resource, action))
    dependency.__name__ = f"authorize_{resource.replace(':', '_')}_{action}"
    return dependency


BEARER_SCHEME: Final = "HTTPBearer"
"""The bearer scheme's name in the OpenAPI document (:mod:`cdp.api.openapi_access`)."""


def authorized(resource: str, action: str) -> Any:
    """``Depends(authorize(resource, action))`` for use as a default: ``ctx: AccessContext =
    authorized("profile", "read")``. Prefer an ``Annotated`` alias (module doc)."""
    return Depends(authorize(resource, action))
