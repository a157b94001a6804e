"""Request limits as pure ASGI middlewares: body size (413), rate (429), response deadline (504).

Each refusal uses the one error body shape of :mod:`cdp.api.errors` (``docs/api-errors.md``) and
is counted in ``cdp_http_limited``. Settings are read per request (``get_settings()`` is cached),
so the limits follow the configuration without rebuilding the app.

- **Body size** (``CDP_MAX_REQUEST_BYTES``): a declared ``Content-Length`` above the limit is
  refused before the body is read; a chunked body is counted as it arrives and refused as soon as
  it passes the limit, so no more than the limit is ever buffered. The Segment routes keep their
  own, smaller limits (32 KB a message, 500 KB a batch) under this one.
- **Rate** (``CDP_RATE_LIMIT_*``): a token bucket per bearer token (principals) and per write key
  (Segment sources), keyed by a hash of the credential, never the credential. The buckets live in
  this process's memory: the limit holds *per worker* (N workers admit up to N times the rate).
  Requests without credentials are not rate-limited here (they fail authentication; per-address
  limits belong to the reverse proxy).
- **Deadline** (``CDP_REQUEST_TIMEOUT_SECONDS``): if the response has not started within the
  deadline the client gets 504 at once. The handler is cancelled at its next ``await``, but a
  sync route runs in a worker thread that Python cannot stop: it runs to its end (its transaction
  commits or rolls back as it would have), and its answer is dropped. So a 504 means "no answer",
  never "nothing happened" — clients retry idempotently (Segment ``messageId`` de-duplicates).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cdp.api.errors import error_body
from cdp.observability import count_limited
from cdp.settings import get_settings

MAX_BUCKETS: Final = 10_000
"""Buckets kept per worker; the least recently used is dropped first (a dropped bucket is a full
one, so dropping never refuses anybody)."""


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


async def reject(
    scope: Scope,
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer with the project's error body (request id included) without calling the app."""
    body = error_body(Request(scope), code, message)
    await JSONResponse(body, status_code=status, headers=headers)(scope, _no_body, send)


class BodyTooLargeError(HTTPException):
    """Raised from ``receive`` once the body passes the limit (mapped to 413 by the handlers)."""

    def __init__(self) -> None:
        super().__init__(413, "the request body is larger than the server accepts")


class BodySizeLimitMiddleware:
    """Refuses bodies larger than ``CDP_MAX_REQUEST_BYTES`` with 413."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = get_settings().max_request_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                count_limited(reason="body_too_large")
                await reject(scope, send, 413, "payload_too_large", BodyTooLargeError().detail)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    count_limited(reason="body_too_large")
                    raise BodyTooLargeError()
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLargeError as exc:
            if started:
                raise
            await reject(scope, send, 413, "payload_too_large", exc.detail)


class TokenBuckets:
    """Token buckets by key, bounded in number (least recently used dropped first)."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_BUCKETS
    ) -> None:
        self._clock = clock
        self._max = max_keys
        self._state: OrderedDict[tuple[str, bytes], tuple[float, float]] = OrderedDict()

    def take(self, key: tuple[str, bytes], *, rate: float, burst: int) -> float:
        """Take one token: 0.0 when allowed, else the seconds until a token is available."""
        now = self._clock()
        tokens, last = self._state.pop(key, (float(burst), now))
        tokens = min(float(burst), tokens + (now - last) * rate)
        if tokens >= 1.0:
            self._state[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._state[key] = (tokens, now)
            wait = (1.0 - tokens) / rate
        while len(self._state) > self._max:
            self._state.popitem(last=False)
        return wait


def credential_key(headers: list[tuple[bytes, bytes]]) -> tuple[str, bytes] | None:
    """``("principal", hash)`` for a bearer token, ``("source", hash)`` for a Basic write key,
    ``None`` without credentials. Only a hash is kept, never the credential."""
    for name, value in headers:
        if name != b"authorization":
            continue
        scheme, _, rest = value.partition(b" ")
        rest = rest.strip()
        if not rest:
            return None
        if scheme.lower() == b"bearer":
            return "principal", hashlib.blake2b(rest, digest_size=16).digest()
        if scheme.lower() == b"basic":
            try:
                user = base64.b64decode(rest, validate=True).partition(b":")[0]
            except (binascii.Error, ValueError):
                user = rest
            return "source", hashlib.blake2b(user, digest_size=16).digest()
        return None
    return None


class RateLimitMiddleware:
    """429 with ``Retry-After`` once a principal's or a source's bucket is empty."""

    def __init__(self, app: ASGIApp, *, buckets: TokenBuckets | None = None) -> None:
        self.app = app
        self.buckets = buckets if buckets is not None else TokenBuckets()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = credential_key(scope.get("headers", [])) if scope["type"] == "http" else None
        if key is not None:
            settings = get_settings()
            if key[0] == "principal":
                rate, burst = (
                    settings.rate_limit_principal_per_second,
                    settings.rate_limit_principal_burst,
                )
            else:
                rate, burst = (
                    settings.rate_limit_source_per_second,
                    settings.rate_limit_source_burst,
                )
            wait = self.buckets.take(key, rate=rate, burst=burst) if rate > 0 else 0.0
            if wait > 0:
                count_limited(reason=f"rate_{key[0]}")
                retry = str(max(1, math.ceil(wait)))
                message = f"too many requests for this {key[0]}; retry after {retry} s"
                await reject(scope, send, 429, "rate_limited", message, {"Retry-After": retry})
                return
        await self.app(scope, receive, send)


_orphans: set[asyncio.Task[None]] = set()


def _forget(task: asyncio.Task[None]) -> None:
    _orphans.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it; the app already logged it


class DeadlineMiddleware:
    """504 when the response has not started within ``CDP_REQUEST_TIMEOUT_SECONDS``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        seconds = get_settings().request_timeout_seconds if scope["type"] == "http" else 0
        if not seconds:
            await self.app(scope, receive, send)
            return
        started = False
        expired = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if expired:
                return  # the client already has its 504
            started = started or message["type"] == "http.response.start"
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        done, _ = await asyncio.wait({task}, timeout=seconds)
        if task in done or started:
            await task  # finished, or already answering: let it complete (or raise)
            return
        expired = True
        _orphans.add(task)
        task.add_done_callback(_forget)
        task.cancel()
        count_limited(reason="deadline")
        await reject(
            scope,
            send,
            504,
            "deadline_exceeded",
            f"no answer within {seconds:g} s; the operation may still complete",
        )


def install_limits(app: FastAPI) -> None:
    """Add the limits (call before the request-context middleware, so they run inside it and
    their answers carry the request id). Outermost first: deadline, body size, rate."""
    app.add_middleware(RateLimitMiddleware)
    app.add_middleware(BodySizeLimitMiddleware)
    app.add_middleware(DeadlineMiddleware)
