"""The OpenAPI document tells the truth about errors.

FastAPI documents only the success answer and a 422 in its own ``{"detail": [...]}`` shape, which
cdp never sends. This gives every error status an operation declares (the 422, and those
:mod:`cdp.api.openapi_access` derives from the route or the route declares) cdp's error body
(:mod:`cdp.api.errors`, ``docs/api-errors.md``), and adds a ``default`` response with the same
schema to every operation. Clients (and the schema-driven fuzz tests) can then validate every
answer against the document.

:mod:`cdp.api.openapi_access` declares who may call each operation: the security scheme (bearer,
or HTTP Basic with a write key), the ``X-Purpose`` header and ``x-cdp-permission``, read from the
route's own authorisation dependency and the policy in force. The document is built once and
again whenever the policy in force changes.

It also keeps 405 answers true: Starlette's router names in ``Allow`` only the methods of the
first route whose path matched, so ``OPTIONS /v1/principals`` said ``Allow: GET`` though POST is
served too. :class:`AllowHeaderMiddleware` lists every method served at the path.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cdp.access.engine import get_policy_engine
from cdp.api.openapi_access import ERROR_DESCRIPTIONS, document_access

ERROR_SCHEMA: Final[dict[str, Any]] = {
    "title": "ErrorBody",
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "request_id"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string", "description": "Stable machine-readable code."},
                "message": {"type": "string", "description": "Human-readable, no personal data."},
                "request_id": {"type": ["string", "null"], "description": "X-Request-ID echo."},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["loc", "msg"],
                        "properties": {"loc": {"type": "string"}, "msg": {"type": "string"}},
                    },
                },
            },
        }
    },
}
_REF: Final = {"$ref": "#/components/schemas/ErrorBody"}
_METHODS: Final = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})
_PROBES: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _REF}}}


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite ``schema`` in place: cdp's error body for every error status an operation
    declares and as every operation's default."""
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for key in list(responses):
                if key.isdigit() and int(key) >= 400:
                    default = ERROR_DESCRIPTIONS.get(int(key), "Error")
                    text = responses[key].get("description") if key != "422" else None
                    responses[key] = _error_response(text or default)
            responses["default"] = _error_response("Error (see docs/api-errors.md)")
            operation["responses"] = dict(sorted(responses.items()))
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["ErrorBody"] = ERROR_SCHEMA
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve the rewritten document from ``/openapi.json`` (built once per policy version, then
    cached) and keep 405 answers' ``Allow`` header true."""
    built_for: list[str] = []

    def openapi() -> dict[str, Any]:
        engine = get_policy_engine()
        if app.openapi_schema is None or built_for != [engine.policy_version]:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = document_errors(document_access(schema, app.routes, engine))
            built_for[:] = [engine.policy_version]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(AllowHeaderMiddleware, api=app)


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route serves at ``scope``'s path."""
    found = []
    for method in _PROBES:
        probe = {**scope, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in app.router.routes):
            found.append(method)
    return found


class AllowHeaderMiddleware:
    """Rewrites ``Allow`` on 405 answers to list every method served at the path."""

    def __init__(self, app: ASGIApp, *, api: FastAPI) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def rewrite(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allow = ", ".join(allowed_methods(self.api, scope)).encode()
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message["headers"] = [*headers, (b"allow", allow)]
            await send(message)

        await self.app(scope, receive, rewrite)
