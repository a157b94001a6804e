"""``/v1/privacy-requests``: file, follow and serve data-subject requests (the DPO's API).

Every route is authorised for ``privacy_requests`` (the ``dpo`` role, purpose
``privacy_request``); reading requests, running one and downloading its package are audited by
the service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from cdp.api.auth import AccessContext, authorize
from cdp.api.deps import RuntimeDep
from cdp.api.openapi_access import error_responses
from cdp.errors import InvalidInputError
from cdp.privacy import request_filing, request_lifecycle, request_list, requests, runner
from cdp.privacy.requests import RequestView
from cdp.profiles.reads import one_identity

router = APIRouter(prefix="/v1/privacy-requests", tags=["privacy"])

Create = Annotated[AccessContext, Depends(authorize("privacy_requests", "create"))]
Read = Annotated[AccessContext, Depends(authorize("privacy_requests", "read"))]
Write = Annotated[AccessContext, Depends(authorize("privacy_requests", "write"))]
Run = Annotated[AccessContext, Depends(authorize("privacy_requests", "run"))]
RequestId = Annotated[str, Path(pattern=r"^pr_[0-9a-f]{24}$", description="A request id.")]


class Identity(BaseModel):
    """The identity the person gave: exactly one of email, phone, customer_id."""

    # min_length 1: an empty value names nobody (refused either way; now the schema says so)
    email: str | None = Field(default=None, min_length=1, max_length=320)
    phone: str | None = Field(default=None, min_length=1, max_length=64)
    customer_id: str | None = Field(default=None, min_length=1, max_length=256)


class RequestIn(BaseModel):
    type: Literal["access", "portability", "erasure", "rectification", "restriction", "objection"]
    identity: Identity
    corrections: dict[str, str] | None = Field(
        default=None, description="Rectification only: field -> corrected value."
    )


class StepOut(BaseModel):
    at: datetime
    status: str
    actor: str
    note: str | None


class RequestOut(BaseModel):
    id: str
    type: str
    status: str
    subject_id: str | None
    identity_kind: str
    received_at: datetime
    due_at: datetime
    extended_until: datetime | None
    deadline: datetime
    verified_at: datetime | None
    completed_at: datetime | None
    requested_by: str
    outcome: dict[str, Any] | None
    steps: list[StepOut]


class RequestList(BaseModel):
    items: list[RequestOut]
    next_cursor: str | None = Field(
        default=None, description="Pass as ?cursor= for the next page; null on the last page."
    )


class NoteIn(BaseModel):
    note: str | None = Field(default=None, max_length=256)


class RejectIn(BaseModel):
    reason: str = Field(min_length=1, max_length=256)


class ExtendIn(BaseModel):
    reason: str = Field(min_length=1, max_length=256)
    months: int = Field(default=2, ge=1, le=2)


def _out(view: RequestView) -> RequestOut:
    return RequestOut(
        id=view.id,
        type=view.type,
        status=view.status,
        subject_id=view.subject_id,
        identity_kind=view.identity_kind,
        received_at=view.received_at,
        due_at=view.due_at,
        extended_until=view.extended_until,
        deadline=view.deadline,
        verified_at=view.verified_at,
        completed_at=view.completed_at,
        requested_by=view.requested_by,
        outcome=view.outcome,
        steps=[StepOut(at=s.at, status=s.status, actor=s.actor, note=s.note) for s in view.steps],
    )


@router.post("", response_model=RequestOut, status_code=201)
def create(body: RequestIn, ctx: Create, runtime: RuntimeDep) -> RequestOut:
    """File a request; it is due one calendar month from now."""
    ident = body.identity  # an empty value is refused by the model (min_length 1)
    chosen = one_identity(email=ident.email, phone=ident.phone, customer_id=ident.customer_id)
    if chosen is None:
        raise InvalidInputError("give exactly one of email, phone, customer_id", field="identity")
    kind, value = chosen
    return _out(
        request_filing.create(
            runtime=runtime,
            type=body.type,
            identity_kind=kind,
            identity_value=value,
            ctx=ctx,
            corrections=body.corrections,
        )
    )


@router.get("", response_model=RequestList)
def list_requests(
    ctx: Read,
    runtime: RuntimeDep,
    status: Annotated[requests.RequestStatus | None, Query(description="Only this status.")] = None,
    overdue: Annotated[bool, Query(description="Only open requests past their deadline.")] = False,
    limit: Annotated[
        int | None,
        Query(
            ge=1,
            le=request_list.MAX_PAGE_SIZE,
            description=f"Page size (default {request_list.DEFAULT_PAGE_SIZE}, at most "
            f"{request_list.MAX_PAGE_SIZE}).",
        ),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(pattern=request_list.CURSOR_PATTERN, description="next_cursor of the previous page."),
    ] = None,
) -> RequestList:
    """Requests, most urgent deadline first, a page at a time (``next_cursor``); the read is
    audited with the subjects the page names."""
    page = request_list.read_page(
        runtime=runtime,
        ctx=ctx,
        status=None if status is None else status.value,
        overdue_only=overdue,
        limit=limit,
        cursor=cursor,
    )
    return RequestList(items=[_out(v) for v in page.items], next_cursor=page.next_cursor)


@router.get("/{request_id}", response_model=RequestOut)
def get(request_id: RequestId, ctx: Read, runtime: RuntimeDep) -> RequestOut:
    """One request, its deadline, outcome and every step (the read is audited)."""
    return _out(request_list.read_one(runtime=runtime, ctx=ctx, request_id=request_id))


@router.post("/{request_id}/verify", response_model=RequestOut, responses=error_responses(409))
def verify(request_id: RequestId, body: NoteIn, ctx: Write, runtime: RuntimeDep) -> RequestOut:
    """Record that the requester's identity was verified."""
    return _out(
        request_lifecycle.verify(
            runtime=runtime, request_id=request_id, actor=ctx.principal_name, note=body.note
        )
    )


@router.post("/{request_id}/reject", response_model=RequestOut, responses=error_responses(409))
def reject(request_id: RequestId, body: RejectIn, ctx: Write, runtime: RuntimeDep) -> RequestOut:
    """Refuse the request, with the reason kept."""
    return _out(
        request_lifecycle.reject(
            runtime=runtime, request_id=request_id, actor=ctx.principal_name, reason=body.reason
        )
    )


@router.post("/{request_id}/extend", response_model=RequestOut, responses=error_responses(409))
def extend(request_id: RequestId, body: ExtendIn, ctx: Write, runtime: RuntimeDep) -> RequestOut:
    """Extend the deadline once by one or two months, with a reason."""
    return _out(
        request_lifecycle.extend(
            runtime=runtime,
            request_id=request_id,
            actor=ctx.principal_name,
            reason=body.reason,
            months=body.months,
        )
    )


@router.post("/{request_id}/run", response_model=RequestOut, responses=error_responses(409))
def run(request_id: RequestId, ctx: Run, runtime: RuntimeDep) -> RequestOut:
    """Carry out a verified request (audited) and complete it."""
    return _out(runner.run(runtime=runtime, ctx=ctx, request_id=request_id))


@router.post("/{request_id}/lift", response_model=RequestOut, responses=error_responses(409))
def lift(request_id: RequestId, ctx: Write, runtime: RuntimeDep) -> RequestOut:
    """Lift the restriction a completed restriction request opened."""
    runner.lift_restriction(runtime=runtime, ctx=ctx, request_id=request_id)
    return _out(requests.get(runtime=runtime, request_id=request_id))


@router.get(
    "/{request_id}/package",
    response_class=Response,
    responses={200: {"content": {"application/json": {}, "text/html": {}}}},
)
def package(
    request_id: RequestId,
    ctx: Read,
    runtime: RuntimeDep,
    format: Annotated[Literal["json", "html"], Query(description="json or html")] = "json",
) -> Response:
    """Download the access package (JSON, valid against audit/access-package.schema.json) or its
    readable HTML summary. Every download is audited."""
    pkg = runner.download_package(runtime=runtime, ctx=ctx, request_id=request_id)
    headers = {
        "Content-Disposition": f'attachment; filename="{request_id}.{format}"',
        "Cache-Control": "no-store",
    }
    if format == "html":
        return HTMLResponse(pkg.html(), headers=headers)
    return Response(pkg.json_bytes(), media_type="application/json", headers=headers)
