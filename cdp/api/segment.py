"""The Segment-compatible HTTP Tracking API: ``/v1/identify``, ``track``, ``page``, ``alias``,
``batch`` (and ``screen``, ``group``), so existing analytics SDKs can point at cdp unchanged.

Routes are thin: authentication (:mod:`cdp.api.source_auth`), a bounded body reader (gzip bodies,
Segment's size limits: 32 KB a message, 500 KB a batch — past them 413), then
:func:`cdp.ingest.segment.ingest_messages`. Success answers ``{"success": true}`` like Segment;
invalid messages give 400 with one detail per message and field, the first :data:`MAX_DETAILS`
of them (the valid ones are stored).
"""

from __future__ import annotations

import json
import zlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from cdp.api.deps import RuntimeDep
from cdp.api.errors import error_body
from cdp.api.source_auth import SourceDep, require_source
from cdp.ingest.segment import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES, ingest_messages
from cdp.ingest.segment_messages import batch_sent_at
from cdp.jsonio import MAX_DEPTH, NOT_STRICT, compact_size, strict_loads, too_deep

MAX_DETAILS = 100
"""At most this many problems are listed in a 400's details (the message counts them all), so an
invalid batch cannot make an answer many times its own size."""

router = APIRouter(prefix="/v1", tags=["segment"], dependencies=[Depends(require_source)])


class SegmentAck(BaseModel):
    """Segment's success answer."""

    success: bool = True


def _too_large(what: str) -> HTTPException:
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
                raise _too_large("the request body")
            if self._inflater.eof:  # what follows a member must be another member
                self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                piece = self._inflater.decompress(data, room)
            except zlib.error:
                raise _not_gzip("damaged, or followed by data that is not gzip") from None
            if self._inflater.unconsumed_tail:
                raise _too_large("the request body")
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
        raise _too_large("the request body")
    gzipped = request.headers.get("content-encoding", "").lower() == "gzip"
    inflater = _Gunzip() if gzipped else None
    parts: list[bytes] = []
    size = received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large("the request body")
        if inflater is not None:
            chunk = inflater.feed(chunk, limit + 1 - size)
        size += len(chunk)
        if size > limit:
            raise _too_large("the request body")
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


def _size(message: Any) -> int:
    return compact_size(message, MAX_MESSAGE_BYTES)


async def batch_messages(request: Request) -> list[Any]:
    """``{"batch": [...], "context": {...}, "sentAt": "..."}``: each message at most 32 KB, 500 KB
    in all. The batch's ``context`` and ``sentAt`` apply to its messages that carry none (a
    ``sentAt`` that is no valid time is not applied: :func:`batch_sent_at`)."""
    payload = _json(await _read(request, MAX_BATCH_BYTES))
    batch = payload.get("batch") if isinstance(payload, dict) else None
    if not isinstance(batch, list):
        raise HTTPException(400, "the body needs a batch array")
    shared = payload.get("context")
    sent_at = batch_sent_at(payload.get("sentAt"))
    for message in batch:
        if isinstance(message, dict):
            if _size(message) > MAX_MESSAGE_BYTES:
                raise _too_large("a message of the batch")
            if isinstance(shared, dict) and "context" not in message:
                message["context"] = shared
            if sent_at is not None and message.get("sentAt") is None:
                message["sentAt"] = sent_at
    return batch


def single_message(kind: str) -> Any:
    async def read(request: Request) -> list[Any]:
        message = _json(await _read(request, MAX_MESSAGE_BYTES))
        if isinstance(message, dict):
            message.setdefault("type", kind)
        return [message]

    return read


def _answer(
    request: Request,
    runtime: RuntimeDep,
    source: SourceDep,
    messages: list[Any],
    sec_gpc: str | None,
) -> SegmentAck | JSONResponse:
    result = ingest_messages(
        runtime=runtime,
        source_name=source.name,
        messages=messages,
        gpc=(sec_gpc or "").strip() == "1",
    )
    if result.invalid:
        details = [
            {"loc": f"batch.{i.index}.{i.field}", "msg": i.message}
            for i in result.invalid[:MAX_DETAILS]
        ]
        bad = {i.index for i in result.invalid}
        refused = bad - {i.index for i in result.invalid if i.order_only}
        message = f"{len(bad)} of {result.received} messages are invalid"
        if len(refused) < len(bad):
            message += (
                f" ({len(bad) - len(refused)} of them Order Completed events stored without"
                " their order)"
            )
        message += "; the others were accepted"
        if len(result.invalid) > MAX_DETAILS:
            message += f" (the first {MAX_DETAILS} of {len(result.invalid)} problems are listed)"
        body = error_body(request, "invalid_messages", message, details)
        return JSONResponse(body, status_code=400)
    return SegmentAck()


Gpc = Annotated[str | None, Header(alias="Sec-GPC")]

# The bodies are read by hand (bounded, gzip); these document them in the OpenAPI schema.
_MESSAGE = {"type": "object", "description": "A Segment Spec message (32 KB at most)."}
_BODY = {"required": True, "content": {"application/json": {"schema": _MESSAGE}}}
_BATCH = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["batch"],
                "properties": {"batch": {"type": "array", "items": _MESSAGE}},
            }
        }
    },
}


@router.post("/batch", response_model=SegmentAck, openapi_extra={"requestBody": _BATCH})
def batch(
    request: Request,
    runtime: RuntimeDep,
    source: SourceDep,
    messages: Annotated[list[Any], Depends(batch_messages)],
    sec_gpc: Gpc = None,
) -> SegmentAck | JSONResponse:
    """A batch of identify/track/page/screen/alias/group messages."""
    return _answer(request, runtime, source, messages, sec_gpc)


def _single(kind: str) -> None:
    def route(
        request: Request,
        runtime: RuntimeDep,
        source: SourceDep,
        messages: list[Any],
        sec_gpc: Gpc = None,
    ) -> SegmentAck | JSONResponse:
        return _answer(request, runtime, source, messages, sec_gpc)

    # set as an object: a string annotation could not see this closure's ``kind``
    route.__annotations__["messages"] = Annotated[list[Any], Depends(single_message(kind))]
    route.__doc__ = f"One {kind} message."
    router.add_api_route(
        f"/{kind}",
        route,
        methods=["POST"],
        response_model=SegmentAck,
        name=kind,
        openapi_extra={"requestBody": _BODY},
    )


for _kind in ("identify", "track", "page", "screen", "alias", "group"):
    _single(_kind)
