"""Webhook delivery: signed JSON batches, retries with backoff and jitter, idempotency keys.

Each request carries::

    Content-Type: application/json
    Idempotency-Key: <export id>.<op>.<batch seq>     (the same on every try of one batch)
    X-CDP-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>[,v1=…]
    X-CDP-Export-Id: <export id>
    Accept-Encoding: identity
    Connection: close

A receiver recomputes the HMAC over the timestamp, a dot and the raw body bytes with the
destination's signing secret, compares it in constant time with each ``v1`` (during the overlap
window after a secret rotation there are two: the new secret's, then the old one's), rejects
timestamps older than a few minutes (replays), and processes each batch once
(:func:`verify_signature`).

The answer's status decides; its body is never read (a huge or hostile body costs cdp nothing),
and every try has a connection of its own.

Each try has a hard wall-clock deadline, the destination's ``timeout_seconds``, over connecting,
sending the batch and receiving the status line and headers. httpx's own timeouts bound each
socket operation, not a request, so a receiver answering a byte at a time would never be cut
off; :class:`_Deadline` enforces the whole. Opening the connection (the host-name lookup and
each of the host's addresses) runs within what remains of it too
(:mod:`cdp.exports.webhook_connect`). A try past its deadline counts as a timeout.

Retries: connection errors, timeouts, other transport or protocol errors, 5xx, 408 and 429 are
retried (429 and 408 are the two 4xx that mean "try later"); any other 4xx, any 3xx (redirects
are never followed: a batch only ever goes to the configured URL), a URL httpx cannot use and
one whose host creation refuses (:mod:`cdp.exports.webhook_hosts`; stored before it did) fail
the batch at once. Backoff is exponential with full jitter: before try ``n`` (n >= 2) wait
``uniform(0, min(cap, base * 2**(n-2)))``. After ``max_attempts`` tries the batch becomes a dead
letter. The request is re-signed on every try (fresh timestamp), so a receiver's replay window
does not reject a late retry. A sender given a ``stop`` event waits for a retry on it instead: once
it is set the batch ends at once, not delivered, with the error ``interrupted``.

:meth:`WebhookSender.deliver` calls its ``on_send`` callback on every try that starts writing its
request on an open connection, just before the first byte of it is written (a try whose
connection was refused, whose host did not resolve or whose URL is unusable never does): the
caller records the batch's subjects as recipients there, before any of their data can leave.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.request import getproxies

import httpx

from cdp.exports.webhook_connect import DeadlineTransport
from cdp.exports.webhook_hosts import host_problem

SIGNATURE_HEADER: Final = "X-CDP-Signature"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
EXPORT_HEADER: Final = "X-CDP-Export-Id"
DEFAULT_TOLERANCE_SECONDS: Final = 300
_RETRY_4XX: Final = frozenset({408, 429})


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>." + body`` under ``secret``."""
    return hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256).hexdigest()


def signature_header(secrets: str | Sequence[str], timestamp: int, body: bytes) -> str:
    """The ``X-CDP-Signature`` value: ``t=<timestamp>,v1=<signature>``, with one ``v1`` per
    secret, in the order given (during a rotation's overlap: the new secret, then the old)."""
    if isinstance(secrets, str):
        secrets = (secrets,)
    return ",".join([f"t={timestamp}", *(f"v1={signature(s, timestamp, body)}" for s in secrets)])


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    now: float,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """What a receiver does: parse ``t`` and every ``v1``, check the age, compare in constant
    time. Returns True only for a fresh, matching signature."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or abs(now - timestamp) > tolerance_seconds:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, c) for c in candidates)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """How one batch ended: delivered or not, after how many tries, the last status or error
    (an error class name or a short reason; never response bodies, which may echo data)."""

    delivered: bool
    attempts: int
    last_status: int | None
    last_error: str | None


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter (the random source and sleep are injectable)."""

    max_attempts: int = 5
    base_seconds: float = 0.5
    cap_seconds: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random

    def delay(self, attempt: int) -> float:
        """Seconds to wait before try ``attempt`` (2, 3, ...)."""
        return float(self.rand() * min(self.cap_seconds, self.base_seconds * 2.0 ** (attempt - 2)))


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed or reset: nothing left to cut
        sock.shutdown(socket.SHUT_RDWR)


class _Deadline:
    """A hard wall-clock limit on one try.

    httpx's timeouts bound each socket operation; a receiver that keeps every operation short
    (a byte at a time) is only stopped by this. At the deadline a timer thread shuts the try's
    TCP connection down, so that a blocked TLS handshake, write or read returns at once and the
    try fails (:attr:`expired` tells it was the deadline). The connection is learnt from the
    ``connect_tcp.complete`` event of httpx's documented ``trace`` request extension; the
    deadline keeps a duplicate of its socket, which reaches the same connection after TLS has
    wrapped (and detached) the original, and closes it in :meth:`stop`. Opening the connection
    is not interrupted but bounded: the try's connect timeout is set to :meth:`remaining`, which
    :class:`~cdp.exports.webhook_connect.DeadlineBackend` spends on the lookup and the addresses
    all told; a connection made just after the deadline is shut down at once. Every try opens a
    connection of its own (the sender keeps none alive), so there is always one to learn."""

    def __init__(self, seconds: float) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._expired = False
        self._stopped = False
        self._seconds = seconds
        self._ends: float | None = None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    @property
    def expired(self) -> bool:
        with self._lock:
            return self._expired

    def start(self) -> None:
        self._ends = time.monotonic() + self._seconds
        self._timer.start()

    def remaining(self) -> float:
        """Seconds left before the deadline (all of them before :meth:`start`; never < 0)."""
        if self._ends is None:
            return self._seconds
        return max(0.0, self._ends - time.monotonic())

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        """The ``trace`` extension's callback: keep each new TCP connection of the try."""
        if not event.endswith("connect_tcp.complete"):
            return
        get_extra_info = getattr(info.get("return_value"), "get_extra_info", None)
        sock = get_extra_info("socket") if callable(get_extra_info) else None
        if not isinstance(sock, socket.socket):
            return
        try:
            dup = sock.dup()
        except (OSError, NotImplementedError):
            return
        with self._lock:
            if self._stopped:
                dup.close()
                return
            self._sockets.append(dup)
            if self._expired:
                _shutdown(dup)

    def _expire(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._expired = True
            for sock in self._sockets:
                _shutdown(sock)

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._stopped = True
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


_REQUEST_STARTS: Final = "send_request_headers.started"


def _announcing(
    trace: Callable[[str, Mapping[str, Any]], None], on_send: Callable[[], None] | None
) -> Callable[[str, Mapping[str, Any]], None]:
    """``trace``, and ``on_send()`` when httpcore is about to write the request on its open
    connection (not a proxy's ``CONNECT``, which carries no body)."""
    if on_send is None:
        return trace

    def announce(event: str, info: Mapping[str, Any]) -> None:
        trace(event, info)
        if event.endswith(_REQUEST_STARTS):
            method = getattr(info.get("request"), "method", b"POST")
            if method != b"CONNECT":
                on_send()

    return announce


def _env_proxied() -> bool:
    """Whether httpx would send through a proxy named in the environment (``HTTP_PROXY``,
    ``HTTPS_PROXY``, ``ALL_PROXY``): it does so only with its own transport, so such a sender
    keeps it, and the lookup and connect stages are the proxy's."""
    return any(scheme in getproxies() for scheme in ("http", "https", "all"))


def _fixed(secret: str) -> Callable[[], Sequence[str]]:
    secrets = (secret,)
    return lambda: secrets


class WebhookSender:
    """Posts signed batches to one URL (never following redirects), retrying as documented.

    ``secret``: the signing secret, or a function giving the secrets to sign with, asked again
    for every try (:class:`~cdp.exports.signing_secrets.SigningSecrets`: a running export
    follows a rotation of the destination's secret).

    Without a ``transport`` it connects through
    :class:`~cdp.exports.webhook_connect.DeadlineTransport`, unless the environment names a
    proxy (then httpx's own transport, which uses it, as before)."""

    def __init__(
        self,
        *,
        url: str,
        secret: str | Callable[[], Sequence[str]],
        timeout_seconds: float,
        retry: RetryPolicy,
        wall_clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self._url = url
        self._stop = stop
        self._secrets = _fixed(secret) if isinstance(secret, str) else secret
        self._timeout_seconds = timeout_seconds
        self._retry = retry
        self._wall_clock = wall_clock
        if transport is None and not _env_proxied():
            transport = DeadlineTransport()
        self._client = httpx.Client(
            timeout=timeout_seconds,
            follow_redirects=False,
            transport=transport,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    def __repr__(self) -> str:
        return "WebhookSender(secret=<hidden>)"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _headers(self, body: bytes, key: str, export_id: str) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: key,
            SIGNATURE_HEADER: signature_header(self._secrets(), int(self._wall_clock()), body),
            EXPORT_HEADER: export_id,
            "Accept-Encoding": "identity",
            "Connection": "close",
        }

    def _status(self, request: httpx.Request, deadline: _Deadline) -> int:
        """One try: the answer's status code. The body is not read: closing the answer unread
        closes its connection."""
        deadline.start()
        # the connect timeout bounds opening the connection as a whole (DeadlineBackend)
        timeouts = request.extensions.get("timeout", {})
        request.extensions["timeout"] = {**timeouts, "connect": deadline.remaining()}
        try:
            response = self._client.send(request, stream=True)
            try:
                return response.status_code
            finally:
                response.close()
        finally:
            deadline.stop()

    def deliver(
        self,
        body: bytes,
        *,
        idempotency_key: str,
        export_id: str,
        on_send: Callable[[], None] | None = None,
    ) -> DeliveryResult:
        """Send one batch until a 2xx, a final failure, or the last try; ``on_send()`` just
        before each try writes its request (see the module doc; an exception from it ends the
        try before anything is written, and is raised from here)."""
        last_status: int | None = None
        last_error: str | None = None
        attempts = 0
        for attempt in range(1, self._retry.max_attempts + 1):
            if attempt > 1:
                delay = self._retry.delay(attempt)
                if self._stop is None:
                    self._retry.sleep(delay)
                elif self._stop.wait(delay):
                    return DeliveryResult(False, attempts, last_status, "interrupted")
            attempts = attempt
            deadline = _Deadline(self._timeout_seconds)
            try:
                request = self._client.build_request(
                    "POST",
                    self._url,
                    content=body,
                    headers=self._headers(body, idempotency_key, export_id),
                    extensions={"trace": _announcing(deadline.trace, on_send)},
                )
            except (httpx.InvalidURL, UnicodeError):  # IDNA errors are UnicodeErrors
                return DeliveryResult(False, attempts, None, "invalid_url")
            if host_problem(request.url.raw_host.decode("ascii")) is not None:
                # stored before creation refused it (e.g. a legacy IPv4 number): never connected
                return DeliveryResult(False, attempts, None, "invalid_url")
            try:
                last_status = self._status(request, deadline)
            except httpx.HTTPError as exc:
                timed_out = deadline.expired or isinstance(exc, httpx.TimeoutException)
                last_status, last_error = None, "timeout" if timed_out else type(exc).__name__
                continue
            if 200 <= last_status < 300:
                return DeliveryResult(True, attempts, last_status, None)
            if 300 <= last_status < 400:
                return DeliveryResult(False, attempts, last_status, "redirect_not_followed")
            if last_status >= 500 or last_status in _RETRY_4XX:
                last_error = "server_error" if last_status >= 500 else "retry_later"
                continue
            return DeliveryResult(False, attempts, last_status, "rejected")
        return DeliveryResult(False, attempts, last_status, last_error)
