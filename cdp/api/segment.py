"""The Segment-compatible HTTP Tracking API: ``/v1/identify``, ``track``, ``page``, ``alias``,
``batch`` (and ``screen``, ``group``), so existing analytics SDKs can point at cdp unchanged;
also at analytics.js's one-letter paths (``/v1/i``, ``t``, ``p``, ``s``, ``a``, ``g``, ``b``:
the same routes, left out of the API document), whose answers a browser page of another origin
may read (:mod:`cdp.api.segment_cors`).

Routes are thin: authentication (:mod:`cdp.api.source_auth`), a bounded body reader
(:mod:`cdp.api.segment_body`: gzip bodies, Segment's size limits: 32 KB a message, 500 KB a
batch — past them 413), then
:func:`cdp.ingest.segment.ingest_messages`. Success answers ``{"success": true}`` like Segment;
invalid messages give 400 with one detail per message and field, the first :data:`MAX_DETAILS`
of them (the valid ones are stored).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from cdp.api.deps import RuntimeDep
from cdp.api.errors import error_body
from cdp.api.segment_body import (
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    message_size,
    read_body,
    too_large,
)
from cdp.api.source_auth import SourceDep, require_source
from cdp.ingest.segment import ingest_messages
from cdp.ingest.segment_messages import batch_sent_at

MAX_DETAILS = 100
"""At most this many problems are listed in a 400's details (the message counts them all), so an
invalid batch cannot make an answer many times its own size."""

router = APIRouter(prefix="/v1", tags=["segment"], dependencies=[Depends(require_source)])


class SegmentAck(BaseModel):
    """Segment's success answer."""

    success: bool = True


async def batch_messages(request: Request) -> list[Any]:
    """``{"batch": [...], "context": {...}, "sentAt": "..."}``: each message at most 32 KB, 500 KB
    in all. The batch's ``context`` and ``sentAt`` apply to its messages that carry none (a
    ``sentAt`` that is no valid time is not applied: :func:`batch_sent_at`)."""
    payload = await read_body(request, MAX_BATCH_BYTES)
    batch = payload.get("batch") if isinstance(payload, dict) else None
    if not isinstance(batch, list):
        raise HTTPException(400, "the body needs a batch array")
    shared = payload.get("context")
    sent_at = batch_sent_at(payload.get("sentAt"))
    for message in batch:
        if isinstance(message, dict):
            message.pop("writeKey", None)  # authentication's, never kept with the data
            if message_size(message) > MAX_MESSAGE_BYTES:
                raise too_large("a message of the batch")
            if isinstance(shared, dict) and "context" not in message:
                message["context"] = shared
            if sent_at is not None and message.get("sentAt") is None:
                message["sentAt"] = sent_at
    return batch


def single_message(kind: str) -> Any:
    async def read(request: Request) -> list[Any]:
        message = await read_body(request, MAX_MESSAGE_BYTES)
        if isinstance(message, dict):
            message.pop("writeKey", None)  # authentication's, never kept with the data
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
    # analytics.js posts to the type's first letter (``/v1/t`` for a track): the same route
    router.add_api_route(
        f"/{kind[0]}",
        route,
        methods=["POST"],
        response_model=SegmentAck,
        name=f"{kind}_short",
        include_in_schema=False,
    )


for _kind in ("identify", "track", "page", "screen", "alias", "group"):
    _single(_kind)

# analytics.js's batching delivery posts its batches to ``/v1/b``
router.add_api_route(
    "/b",
    batch,
    methods=["POST"],
    response_model=SegmentAck,
    name="batch_short",
    include_in_schema=False,
)
