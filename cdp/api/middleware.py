"""The API's one middleware: request id, request limits, metrics and one canonical log line.

One pure-ASGI layer does all of it (each layer wraps ``send`` once more and costs a coroutine frame
per message): it assigns a request id (or keeps a well-formed ``X-Request-ID``), binds it to the
log context and echoes it in the response; applies the request limits of :mod:`cdp.api.limits`
(deadline, body size, rate; their refusals carry the request id and are counted and logged like
any answer); counts the request and its duration by method, route template and status
(``unmatched`` when no route matched, so raw paths never become labels), and logs method, route,
status and duration.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from typing import Any, Final

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cdp.api.limits import BodyTooLargeError, Deadline, RequestLimits, TokenBuckets, reject
from cdp.logging import get_logger
from cdp.observability import method_label, observe_request
from cdp.settings import get_settings

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")
log = get_logger("cdp.api")

_UUID4_CLEAR: Final = ~((0xC000 << 48) | (0xF000 << 64))
_UUID4_SET: Final = (0x8000 << 48) | (0x4000 << 64)


def new_request_id() -> str:
    """A random version-4 UUID as 32 hex digits (what ``uuid.uuid4().hex`` returns, without
    building a ``UUID``)."""
    return "%032x" % (int.from_bytes(os.urandom(16)) & _UUID4_CLEAR | _UUID4_SET)


_line_logger: tuple[tuple[int, Any, Any, Any], Any] | None = None


def _request_log() -> Any:
    """``log``, resolved once per structlog configuration: the module's lazy proxy builds a new
    logger on every call (``cache_logger_on_first_use`` is off), which cost more than a whole
    middleware layer when the level filters the line out. The processors list is shared, not
    copied, so changes made to it in place (``structlog.testing.capture_logs``) still apply."""
    global _line_logger
    config = structlog.get_config()
    key = (
        id(config["processors"]),
        config["wrapper_class"],
        config["context_class"],
        config["logger_factory"],
    )
    cached = _line_logger
    if cached is not None and cached[0] == key:
        return cached[1]
    bound = log.bind()
    _line_logger = (key, bound)
    return bound


class RequestContextMiddleware:
    """Request id, limits, metrics and the canonical log line (see the module doc)."""

    def __init__(self, app: ASGIApp, *, buckets: TokenBuckets | None = None) -> None:
        self.app = app
        self.limits = RequestLimits(buckets=buckets)

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
        request_id = incoming if incoming and _SAFE_ID.match(incoming) else new_request_id()
        echo = (b"x-request-id", request_id.encode())
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["limits"] = self.limits  # a body's write key is rate-limited by the route
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 500
        responded = False
        deadline: Deadline | None = None

        async def answer(message: Message) -> None:
            """Send ``message`` to the client (the deadline's 504 goes this way)."""
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status = message["status"]
                responded = True
                message["headers"] = [*message.get("headers", ()), echo]
            await send(message)

        async def send_wrapper(message: Message) -> None:
            """:func:`answer` for the app (inlined: a call fewer per message), dropping its
            messages once the deadline has answered 504."""
            nonlocal status, responded
            if message["type"] == "http.response.start":
                if deadline is not None:
                    if deadline.expired:
                        return
                    deadline.started = True
                status = message["status"]
                responded = True
                message["headers"] = [*message.get("headers", ()), echo]
            elif deadline is not None and deadline.expired:
                return
            await send(message)

        try:
            settings = get_settings()
            if settings.request_timeout_seconds:
                deadline = Deadline(scope, answer, settings.request_timeout_seconds)
            if await self.limits.refused(scope, send_wrapper, settings):
                return
            counted = self.limits.counted(receive, settings.max_request_bytes)
            try:
                if deadline is None:
                    await self.app(scope, counted, send_wrapper)
                else:
                    with deadline.scope:  # takes back the deadline's own cancellation
                        deadline.start()
                        await self.app(scope, counted, send_wrapper)
            except BaseException as exc:
                if deadline is not None:
                    deadline.stop()
                    if deadline.expired:
                        # The client has its 504: what the handler raised since is dropped; a
                        # cancellation (never the deadline's: its scope took that back) goes on.
                        await deadline.finish()
                        if isinstance(exc, asyncio.CancelledError):
                            raise
                        return
                if not isinstance(exc, BodyTooLargeError) or responded:
                    raise
                await reject(scope, send_wrapper, 413, "payload_too_large", exc.detail)
                return
            if deadline is not None:
                deadline.stop()
                if deadline.expired:
                    await deadline.finish()
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = method_label(str(scope.get("method", "")))  # a client's token: bounded
            observe_request(method=method, route=route, status=status, seconds=seconds)
            _request_log().info(
                "request",
                method=method,
                route=route,
                status=status,
                duration_ms=round(seconds * 1000, 2),
            )
            structlog.contextvars.clear_contextvars()
