"""Who may call each operation, and which errors it can answer, as the OpenAPI document says.

Everything here is read from the routes themselves, so the document cannot drift from what
authorises them:

- A route depending on :func:`cdp.api.auth.authorize` declares the bearer scheme, the
  ``X-Purpose`` header (the dependency reads both from the raw headers, so FastAPI does not see
  them) and the permission the dependency checks, as the ``x-cdp-permission`` extension::

      {"credential": "principal", "resource": "segments", "action": "read",
       "grants": [{"role": "analyst", "purposes": ["analytics"]}, ...]}

  ``resource`` and ``action`` are the dependency's own (:data:`cdp.api.auth.AUTHORIZE_MARKER`);
  ``grants`` are the roles and purposes the policy in force allows them for, found by asking the
  policy engine the question the dependency asks, so they follow ``policies/``. The operation's
  description ends with the same in words.
- A route depending on :func:`cdp.api.source_auth.require_source` (the Segment-compatible
  ``/v1/identify``, ``track``, ``page``, ``screen``, ``alias``, ``group``, ``batch``) declares
  HTTP Basic, the write key as user name, and ``{"credential": "source"}``.
- Any other route is public: ``security: []`` and ``{"credential": "none"}``.

Every operation also lists the error statuses it can answer (their bodies are the one error shape,
:mod:`cdp.api.openapi`): those of the middleware (400 for a ``Content-Length`` that is not a
number, 413, 500, 504) on all; 401, 429 and 503 on every guarded operation (credentials are looked
up in the database); 403 and 422 (``X-Purpose``) where the policy decides; 404 where the path
names something; and what a route declares itself with :func:`error_responses` (409, 404 for a
thing its body names, 503 of ``/readyz``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import fastapi.routing
from fastapi.dependencies.models import Dependant
from starlette.routing import BaseRoute

from cdp.access.categories import PURPOSES
from cdp.access.policy import PolicyEngine
from cdp.api.auth import AUTHORIZE_MARKER, BEARER_SCHEME, PURPOSE_HEADER
from cdp.api.source_auth import require_source

PERMISSION_EXTENSION: Final = "x-cdp-permission"
BASIC_SCHEME: Final = "SourceWriteKey"
_METHODS: Final = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})

ERROR_DESCRIPTIONS: Final[dict[int, str]] = {
    400: "Bad request: a Content-Length that is not a number, or a body the route cannot read",
    401: "No valid credentials (WWW-Authenticate names the scheme)",
    403: "The policy does not grant x-cdp-permission to the caller's roles for X-Purpose",
    404: "Not found",
    409: "Conflicts with the current state",
    413: "The request body is larger than the server accepts",
    422: "Validation failed (details name each location)",
    429: "Rate limited (Retry-After says when to try again)",
    500: "Internal error",
    503: "The database is unavailable (Retry-After says when to try again)",
    504: "No answer within the server's deadline",
}
"""Every error status cdp answers with the error body, and what it means."""

_EVERY_OPERATION: Final = (400, 413, 500, 504)
_GUARDED: Final = (401, 429, 503)
_POLICY: Final = (403, 422)

_BEARER: Final[dict[str, Any]] = {
    "type": "http",
    "scheme": "bearer",
    "description": "A cdp principal's token; X-Purpose names the purpose of use.",
}
_BASIC: Final[dict[str, Any]] = {
    "type": "http",
    "scheme": "basic",
    "description": (
        "A source's write key as the user name, the password empty (as Segment); without an"
        " Authorization header, the write key may be the body's top-level writeKey instead"
        " (as analytics.js sends it)."
    ),
}
_PURPOSE_PARAMETER: Final[dict[str, Any]] = {
    "name": PURPOSE_HEADER,
    "in": "header",
    "required": True,
    "schema": {
        "type": "string",
        "enum": list(PURPOSES),
        "description": "Purpose of use, e.g. support, analytics.",
        "title": PURPOSE_HEADER,
    },
    "description": "Purpose of use the policy decides for (missing or unknown: 422).",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route that can answer ``statuses`` besides the ones derived here
    (:mod:`cdp.api.openapi` gives each the error body)."""
    return {status: {"description": ERROR_DESCRIPTIONS[status]} for status in statuses}


@dataclass(frozen=True, slots=True)
class Guard:
    """How a route is guarded: the policy's ``(resource, action)`` checks, a source, or neither."""

    checks: tuple[tuple[str, str], ...] = ()
    source: bool = False

    @property
    def public(self) -> bool:
        return not self.checks and not self.source


def guard_of(dependant: Dependant) -> Guard:
    """The guard of a route's effective dependant (its dependencies walked to the leaves)."""
    checks: list[tuple[str, str]] = []
    source = False
    stack = list(dependant.dependencies)
    while stack:
        dep = stack.pop()
        marker = getattr(dep.call, AUTHORIZE_MARKER, None)
        if marker is not None and marker not in checks:
            checks.append(marker)
        source = source or dep.call is require_source
        stack.extend(dep.dependencies)
    return Guard(tuple(checks), source)


def route_guards(routes: Iterable[BaseRoute]) -> dict[tuple[str, str], Guard]:
    """``(path, method)`` (method in lower case, as the document keys it) -> its guard."""
    found: dict[tuple[str, str], Guard] = {}
    for route in _route_contexts(routes):
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            continue
        path = str(getattr(route, "path_format", getattr(route, "path", "")))
        for method in getattr(route, "methods", None) or ():
            found[(path, method.lower())] = guard_of(dependant)
    return found


def _route_contexts(routes: Iterable[BaseRoute]) -> Iterable[Any]:
    """Every route with its effective dependant (FastAPI >= 0.16x wraps included routers)."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    return list(routes) if iterate is None else iterate(list(routes))


def grants(engine: PolicyEngine, checks: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """Each role of the policy with the purposes it passes every check for (roles with none left
    out), as the authorisation dependency decides for a principal holding that role."""
    out = []
    for role in sorted(engine.roles):
        purposes = [
            p for p in PURPOSES if all(engine.decide((role,), r, a, p).allowed for r, a in checks)
        ]
        if purposes:
            out.append({"role": role, "purposes": purposes})
    return out


def permission(guard: Guard, engine: PolicyEngine) -> dict[str, Any]:
    """The ``x-cdp-permission`` value of an operation with ``guard``."""
    if guard.checks:
        (resource, action), *more = guard.checks
        declared: dict[str, Any] = {"credential": "principal", "resource": resource}
        declared["action"] = action
        if more:
            declared["also"] = [{"resource": r, "action": a} for r, a in more]
        declared["grants"] = grants(engine, guard.checks)
        return declared
    return {"credential": "source" if guard.source else "none"}


def _sentence(declared: dict[str, Any]) -> str:
    credential = declared["credential"]
    if credential == "none":
        return "**Access:** public (no credentials)."
    if credential == "source":
        return "**Access:** a source's write key (HTTP Basic user name)."
    checks = [declared, *declared.get("also", [])]
    needs = " and ".join(f"`{c['action']}` on `{c['resource']}`" for c in checks)
    given = "; ".join(f"`{g['role']}` for {', '.join(g['purposes'])}" for g in declared["grants"])
    return (
        f"**Permission:** {needs}, for the purpose sent in `{PURPOSE_HEADER}` "
        f"(`{PERMISSION_EXTENSION}`). Granted by the policy in force to: {given or 'no role'}."
    )


def _statuses(guard: Guard, operation: dict[str, Any]) -> Iterator[int]:
    yield from _EVERY_OPERATION
    if not guard.public:
        yield from _GUARDED
    if guard.checks:
        yield from _POLICY
    if any(p.get("in") == "path" for p in operation.get("parameters", [])):
        yield 404


def document_access(
    schema: dict[str, Any], routes: Iterable[BaseRoute], engine: PolicyEngine
) -> dict[str, Any]:
    """Rewrite ``schema`` in place: every operation's security, ``X-Purpose`` header,
    ``x-cdp-permission``, permission sentence and error statuses (module doc)."""
    guards = route_guards(routes)
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            guard = guards.get((path, method), Guard())
            if guard.checks:
                operation["security"] = [{BEARER_SCHEME: []}]
                operation.setdefault("parameters", []).append(copy.deepcopy(_PURPOSE_PARAMETER))
            else:
                operation["security"] = [{BASIC_SCHEME: []}] if guard.source else []
            declared = permission(guard, engine)
            operation[PERMISSION_EXTENSION] = declared
            text = operation.get("description", "").rstrip()
            operation["description"] = f"{text}\n\n{_sentence(declared)}".lstrip()
            responses = operation.setdefault("responses", {})
            for status in _statuses(guard, operation):
                responses.setdefault(str(status), {})
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[BEARER_SCHEME] = dict(_BEARER)
    schemes[BASIC_SCHEME] = dict(_BASIC)
    return schema
