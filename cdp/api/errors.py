"""The one place where domain errors become HTTP responses.

Every error body has one shape::

    {"error": {"code": "...", "message": "...", "request_id": "...", "details": [...]}}

Messages come from domain errors, which never carry personal data; validation details name the
location and the reason but never echo the submitted value. Unexpected exceptions become a 500
with a generic message and no stack trace (the log line has the traceback, without locals).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from cdp import errors
from cdp.logging import get_logger, mark_logged
from cdp.validation import safe_location

STATUS: dict[type[errors.CdpError], int] = {
    errors.InvalidInputError: 422,
    errors.NormalizationError: 422,
    errors.NotFoundError: 404,
    errors.ConflictError: 409,
    errors.AuthenticationError: 401,
    errors.PermissionDeniedError: 403,
    errors.AuditWriteError: 503,
    errors.WriteContentionError: 503,
    errors.RateLimitedError: 429,
    errors.DecryptionError: 500,
    errors.KeyMaterialError: 500,
    errors.ConfigurationError: 500,
}

log = get_logger("cdp.api")


def status_for(exc: errors.CdpError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def error_body(
    request: Request, code: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": code,
        "message": message,
        "request_id": getattr(request.state, "request_id", None),
    }
    if details:
        body["details"] = details
    return {"error": body}


def _headers(exc: Exception) -> dict[str, str] | None:
    if isinstance(exc, errors.AuthenticationError):
        return {"WWW-Authenticate": getattr(exc, "challenge", "Bearer")}
    retry = getattr(exc, "retry_after", None)
    return {"Retry-After": str(retry)} if retry is not None else None


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.CdpError)
    status = status_for(exc)
    message = (
        str(exc) if status < 500 or getattr(exc, "public_message", False) else "internal error"
    )
    if status >= 500:
        log.error("request failed", code=exc.code, exc_info=exc)
    details = None
    if isinstance(exc, errors.InvalidInputError) and exc.field:
        details = [{"loc": exc.field, "msg": str(exc)}]
    return JSONResponse(
        error_body(request, exc.code, message, details), status_code=status, headers=_headers(exc)
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {
            "loc": safe_location(e.get("loc", ()), e.get("type", "")),
            "msg": e.get("msg", "invalid"),
        }
        for e in exc.errors()
    ]
    return JSONResponse(
        error_body(request, "validation_failed", "the request is not valid", details),
        status_code=422,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
        exc.status_code, "http_error"
    )
    return JSONResponse(
        error_body(request, code, str(exc.detail)),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


DATABASE_RETRY_SECONDS = 5


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The database refused or dropped the connection, or none was free in time (an outage, a
    restart, a locked SQLite file past its busy timeout): 503 with ``Retry-After``, like
    ``/readyz``, not a 500, which means a bug. The driver's message is logged, never answered."""
    log.error("database unavailable", error_type=type(exc).__name__, exc_info=exc)
    return JSONResponse(
        error_body(request, "database_unavailable", "the database is unavailable; try again"),
        status_code=503,
        headers={"Retry-After": str(DATABASE_RETRY_SECONDS)},
    )


async def _value_refused(request: Request, exc: Exception) -> JSONResponse:
    """The database refused a value the request carried (PostgreSQL: a NUL character in text, a
    number out of a column's range) that validation let through: 422, as SQLite's answer to the
    same request would be a plain miss or store. Logged by type only: a driver's message can
    quote the value."""
    assert isinstance(exc, DataError)
    log.warning(
        "database refused a request value",
        error_type=type(exc).__name__,
        driver_error=type(exc.orig).__name__,
    )
    return JSONResponse(
        error_body(
            request,
            "validation_failed",
            "a value in the request cannot be stored or compared (for example a NUL character)",
        ),
        status_code=422,
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # answered (and logged) outside the middleware that adds X-Request-ID to every other answer
    # and binds the request id to its log lines
    request_id = getattr(request.state, "request_id", None)
    log.error("unhandled error", error_type=type(exc).__name__, request_id=request_id, exc_info=exc)
    mark_logged(exc)  # Starlette re-raises it to the server, which would log it again
    return JSONResponse(
        error_body(request, "internal_error", "internal error"),
        status_code=500,
        headers={"X-Request-ID": request_id} if request_id else None,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.CdpError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for unavailable in (OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(unavailable, _database_unavailable)
    app.add_exception_handler(DataError, _value_refused)
    app.add_exception_handler(Exception, _unexpected)
