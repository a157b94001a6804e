"""The body of a Segment request: read once, bounded, gzip inflated with a hard cap, parsed.

Segment's size limits: 32 KB a message, 500 KB a batch (past them 413). A body is read and
parsed once and kept on the request (:func:`read_body`), because two dependencies need it: the
route's messages, and authentication when the write key is in the body
(:mod:`cdp.api.source_auth`), which reads it first, to the route's own limit (32 KB for a single
message, 500 KB for a batch); the limit is checked again on the kept size.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from fastapi import Request
from starlette.exceptions import HTTPException

from cdp.ingest.segment import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES
from cdp.jsonio import MAX_DEPTH, NOT_STRICT, compact_size, strict_loads, too_deep

__all__ = ["MAX_BATCH_BYTES", "MAX_MESSAGE_BYTES", "message_size", "read_body", "too_large"]


def too_large(what: str) -> HTTPException:
    return HTTPException(413, f"{what} is larger than Segment's limit")


def _not_gzip(why: str) -> HTTPException:
    return HTTPException(400, f"the body is not valid gzip: {why}")


class _Gunzip:
    """Inflates a gzip body as it arrives, never producing more than the room it is given.

    The body must end where a gzip member ends (its CRC and length checked): a body cut short
    or followed by anything but another member (RFC 1952 allows several) is refused."""

    def __init__(self) -> None:
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, data: bytes, room: int) -> bytes:
        """The bytes ``data`` inflates to; 413 when they would be more than ``room``."""
        out: list[bytes] = []
        while data:
            if room <= 0:  # max_length 0 would mean no limit at all
                raise too_large("the request body")
            if self._inflater.eof:  # what follows a member must be another member
                self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                piece = self._inflater.decompress(data, room)
            except zlib.error:
                raise _not_gzip("damaged, or followed by data that is not gzip") from None
            if self._inflater.unconsumed_tail:
                raise too_large("the request body")
            out.append(piece)
            room -= len(piece)
            data = self._inflater.unused_data
        return b"".join(out)

    def finish(self) -> None:
        """Refuses a body that ended inside a member (its CRC and length never checked)."""
        if not self._inflater.eof:
            raise _not_gzip("it is cut short")


async def _read(request: Request, limit: int) -> bytes:
    """The request body, decompressed, refusing to hold more than ``limit`` bytes of either."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large("the request body")
    gzipped = request.headers.get("content-encoding", "").lower() == "gzip"
    inflater = _Gunzip() if gzipped else None
    parts: list[bytes] = []
    size = received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large("the request body")
        if inflater is not None:
            chunk = inflater.feed(chunk, limit + 1 - size)
        size += len(chunk)
        if size > limit:
            raise too_large("the request body")
        parts.append(chunk)
    if inflater is not None:
        inflater.finish()
    return b"".join(parts)


def _json(body: bytes) -> Any:
    value = strict_loads(body)
    if value is NOT_STRICT:  # what json reads beyond strict JSON (NaN, UTF-16...) is accepted
        try:
            value = json.loads(body)
        except RecursionError:
            raise HTTPException(400, f"the body nests more than {MAX_DEPTH} levels") from None
        except ValueError:
            raise HTTPException(400, "the body is not valid JSON") from None
    if too_deep(body, value, MAX_DEPTH + 2):  # a batch's messages sit two levels down
        raise HTTPException(400, f"the body nests more than {MAX_DEPTH} levels")
    return value


def message_size(message: Any) -> int:
    return compact_size(message, MAX_MESSAGE_BYTES)


async def read_body(request: Request, limit: int) -> Any:
    """The request's JSON body, decompressed and parsed once (kept on ``request.state``); 413
    when it is larger than ``limit``, 400 when it is not gzip or JSON as it claims."""
    kept: tuple[int, Any] | None = getattr(request.state, "segment_body", None)
    if kept is None:
        raw = await _read(request, limit)
        kept = request.state.segment_body = (len(raw), _json(raw))
    if kept[0] > limit:
        raise too_large("the request body")
    return kept[1]
