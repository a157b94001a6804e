"""The outermost middleware: request id, request metrics and one canonical log line per request.

One pure-ASGI layer does all three (each layer wraps ``send`` once more and costs a coroutine frame
per message): it assigns a request id (or keeps a well-formed ``X-Request-ID``), binds it to the
log context and echoes it in the response, counts the request and its duration by method, route
template and status (``unmatched`` when no route matched, so raw paths never become labels), and
logs method, route, status and duration.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cdp.logging import get_logger
from cdp.observability import observe_request

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
log = get_logger("cdp.api")


class RequestContextMiddleware:
    """Request id, metrics and the canonical log line (see the module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if incoming and _SAFE_ID.match(incoming) else uuid.uuid4().hex
        echo = (b"x-request-id", request_id.encode())
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echo]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = str(scope.get("method", "?"))
            observe_request(method=method, route=route, status=status, seconds=seconds)
            log.info(
                "request",
                method=method,
                route=route,
                status=status,
                duration_ms=round(seconds * 1000, 2),
            )
            structlog.contextvars.clear_contextvars()
