"""Request limits: body size (413), rate (429), response deadline (504).

The API's one ASGI middleware (:class:`cdp.api.middleware.RequestContextMiddleware`) applies them
to every request through :class:`RequestLimits`, in this order: deadline, body size, rate (each
layer of its own would wrap ``send`` once more and cost a coroutine frame per message, and the
deadline a task per request). Each refusal uses the one error body shape of :mod:`cdp.api.errors`
(``docs/api-errors.md``) and is counted in ``cdp_http_limited``. Settings are read per request
(``get_settings()`` is cached), so the limits follow the configuration without rebuilding the app.

- **Body size** (``CDP_MAX_REQUEST_BYTES``): a declared ``Content-Length`` above the limit is
  refused before the body is read; a chunked body is counted as it arrives and refused as soon as
  it passes the limit, so no more than the limit is ever buffered. The Segment routes keep their
  own, smaller limits (32 KB a message, 500 KB a batch) under this one.
- **Rate** (``CDP_RATE_LIMIT_*``): a token bucket per bearer token (principals) and per write key
  (Segment sources), keyed by a hash of the credential, never the credential. The buckets live in
  this process's memory: the limit holds *per worker* (N workers admit up to N times the rate).
  A write key sent in a Segment body (no Authorization header: what analytics.js does) takes a
  token from the same bucket, in the route, once the body is read (:meth:`RequestLimits.take`).
  Requests without credentials are not rate-limited here (they fail authentication; per-address
  limits belong to the reverse proxy).
- **Deadline** (``CDP_REQUEST_TIMEOUT_SECONDS``): if the response has not started within the
  deadline the client gets 504 at once (a timer of the event loop sends it; no task is created
  unless it fires). The request is then cancelled through an anyio cancel scope: a wait on the
  client (a body still arriving) or on a free worker thread ends at once, but work already
  running in a worker thread (every sync route, and the sync steps of the async ones) is waited
  for — Python cannot stop a thread, and anyio shields that wait — so the request's task lives
  until the handler has run to its end (its transaction commits or rolls back as it would have),
  and its answer is dropped. The server's graceful shutdown waits for that task like any other
  (``cdp serve`` bounds it by ``CDP_SHUTDOWN_GRACE_SECONDS``). So a 504 means "no answer",
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

import anyio
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from cdp.api.errors import error_body
from cdp.errors import RateLimitedError
from cdp.observability import count_limited
from cdp.settings import Settings

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
            return source_key(user)
        return None
    return None


def source_key(write_key: bytes) -> tuple[str, bytes]:
    """The bucket key of a write key, from the Basic user name or a body's ``writeKey`` alike."""
    return "source", hashlib.blake2b(write_key, digest_size=16).digest()


class RequestLimits:
    """The limits of one app: a request's body size and rate checks, its body counter and its
    deadline (see the module doc). One instance per app (it holds the rate buckets)."""

    def __init__(self, *, buckets: TokenBuckets | None = None) -> None:
        self.buckets = buckets if buckets is not None else TokenBuckets()

    async def refused(self, scope: Scope, send: Send, settings: Settings) -> bool:
        """Answer 400 for a ``Content-Length`` that is not a number, 413 for one over the limit,
        else 429 for an empty bucket; ``True`` when a refusal was sent (the app must not be
        called)."""
        limit = settings.max_request_bytes
        headers = scope.get("headers", ())
        for name, value in headers:
            if name != b"content-length":
                continue
            if not value.isdigit():  # (uvicorn's parser refuses these before the app is called)
                message = "the Content-Length header is not a whole number of bytes"
                await reject(scope, send, 400, "http_error", message)
                return True
            if int(value) > limit:
                count_limited(reason="body_too_large")
                await reject(scope, send, 413, "payload_too_large", BodyTooLargeError().detail)
                return True
        key = credential_key(headers)
        if key is None:
            return False
        try:
            self.take(key, settings)
        except RateLimitedError as exc:
            headers_out = {"Retry-After": str(exc.retry_after)}
            await reject(scope, send, 429, "rate_limited", str(exc), headers_out)
            return True
        return False

    def take(self, key: tuple[str, bytes], settings: Settings) -> None:
        """Take a token from ``key``'s bucket; :class:`RateLimitedError` when it is empty. The
        middleware calls it for a credential in a header; the Segment routes for a write key in
        the body (``cdp.api.source_auth``), which only they can read."""
        if key[0] == "principal":
            rate = settings.rate_limit_principal_per_second
            burst = settings.rate_limit_principal_burst
        else:
            rate, burst = settings.rate_limit_source_per_second, settings.rate_limit_source_burst
        wait = self.buckets.take(key, rate=rate, burst=burst) if rate > 0 else 0.0
        if wait <= 0:
            return
        count_limited(reason=f"rate_{key[0]}")
        retry = max(1, math.ceil(wait))
        raise RateLimitedError(f"too many requests for this {key[0]}; retry after {retry} s", retry)

    @staticmethod
    def counted(receive: Receive, limit: int) -> Receive:
        """``receive`` that raises :class:`BodyTooLargeError` once the body passes ``limit``."""
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    count_limited(reason="body_too_large")
                    raise BodyTooLargeError()
            return message

        return limited_receive


class Deadline:
    """A request's response deadline: after ``seconds``, unless the response has started, the
    client is sent 504 through ``send`` at once (from a task created only then) and
    :attr:`scope` is cancelled (the handler stops at its next unshielded ``await``; a worker
    thread already running is waited for, see the module doc).

    Use: ``deadline.start()`` just before calling the app inside ``with deadline.scope:``,
    ``deadline.stop()`` just after; ``deadline.started`` when the response starts; once
    :attr:`expired`, drop the app's messages and :meth:`finish` instead of raising."""

    __slots__ = ("_answer", "_scope", "_seconds", "_send", "_timer", "expired", "scope", "started")

    def __init__(self, scope: Scope, send: Send, seconds: float) -> None:
        self._scope = scope
        self._send = send
        self._seconds = seconds
        self._timer: asyncio.TimerHandle | None = None
        self._answer: asyncio.Future[None] | None = None
        self.scope = anyio.CancelScope()
        self.expired = False
        self.started = False

    def start(self) -> None:
        """Arm the timer."""
        self._timer = asyncio.get_running_loop().call_later(self._seconds, self._expire)

    def stop(self) -> None:
        """Disarm the timer (the app returned or raised)."""
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        if self.started:
            return  # already answering: let it complete
        self.expired = True
        count_limited(reason="deadline")
        message = f"no answer within {self._seconds:g} s; the operation may still complete"
        self._answer = asyncio.ensure_future(
            reject(self._scope, self._send, 504, "deadline_exceeded", message)
        )
        self.scope.cancel()

    async def finish(self) -> None:
        """After :attr:`expired`: wait until the 504 has been sent (raise what sending it
        raised). The scope has taken back its own cancellation; any other one propagates."""
        if self._answer is not None:
            await self._answer
