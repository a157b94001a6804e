"""Cross-origin access to the Segment-compatible ingestion routes, and to them only.

analytics.js runs on the shop's pages and posts to cdp's host: another origin. Its posts are
"simple" requests (``text/plain``, the write key in the body), which the browser sends without
asking first, but it lets the script read the answer — and so count the event as delivered instead
of retrying it — only when the answer carries ``Access-Control-Allow-Origin``. A sender that puts
its key in an ``Authorization`` header, or posts ``application/json``, makes the browser ask first
with an ``OPTIONS`` preflight, which is answered here.

Any origin is allowed, as Segment's own endpoint does: a write key identifies a source, is public
by design (it ships in every page's script) and can only add data; cookies are never involved
(``Access-Control-Allow-Origin: *`` forbids credentialed requests). The permissioned API (profiles,
exports, audit, ...) sends no CORS headers at all: a browser page of another origin cannot read it.
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SEGMENT_PATHS: Final = frozenset(
    f"/v1/{name}"
    for name in (
        "identify",
        "track",
        "page",
        "screen",
        "alias",
        "group",
        "batch",
        "i",
        "t",
        "p",
        "s",
        "a",
        "g",
        "b",
    )
)
"""The ingestion routes, with analytics.js's one-letter paths."""

_ALLOW_ORIGIN: Final = (b"access-control-allow-origin", b"*")
_PREFLIGHT: Final = [
    _ALLOW_ORIGIN,
    (b"access-control-allow-methods", b"POST"),
    (b"access-control-allow-headers", b"Authorization, Content-Type, Content-Encoding"),
    (b"access-control-max-age", b"86400"),
    (b"content-length", b"0"),
]


class SegmentCorsMiddleware:
    """Answers a preflight to an ingestion route (204) and marks its answers readable from any
    origin; every other path passes through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in SEGMENT_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            await send({"type": "http.response.start", "status": 204, "headers": _PREFLIGHT})
            await send({"type": "http.response.body", "body": b""})
            return

        async def readable(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k != _ALLOW_ORIGIN[0]]
                message["headers"] = [*kept, _ALLOW_ORIGIN]
            await send(message)

        await self.app(scope, receive, readable)
