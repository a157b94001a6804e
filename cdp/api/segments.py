"""``/v1/segments``: create, version, read segments and page through their members."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from cdp.api.auth import AccessContext, authorize
from cdp.api.deps import RuntimeDep
from cdp.api.openapi_access import error_responses
from cdp.segments import membership, service
from cdp.segments.views import NAME_PATTERN, MembersPage, SegmentIn, SegmentUpdate, SegmentView

router = APIRouter(prefix="/v1/segments", tags=["segments"])

SegmentsCreate = Annotated[AccessContext, Depends(authorize("segments", "create"))]
SegmentsRead = Annotated[AccessContext, Depends(authorize("segments", "read"))]
HARD_MAX_PAGE = 1000
#: A segment's name in a path: a name no segment can have is refused (422) before any query.
SegmentName = Annotated[str, Path(pattern=NAME_PATTERN, description="A segment's name.")]


@router.post(
    "",
    response_model=SegmentView,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409),
)
def create_segment(body: SegmentIn, ctx: SegmentsCreate, runtime: RuntimeDep) -> SegmentView:
    """A new segment at version 1 (409 if the name exists; 422 names a malformed clause)."""
    return service.create_segment(runtime=runtime, data=body, actor=ctx.principal_id)


@router.put("/{name}", response_model=SegmentView)
def update_segment(
    name: SegmentName, body: SegmentUpdate, ctx: SegmentsCreate, runtime: RuntimeDep
) -> SegmentView:
    """A new version of the segment's rule (nothing when the rule is unchanged). The body's
    ``name`` may be left out; if given it must be the path's (422 otherwise)."""
    return service.update_segment(
        runtime=runtime, data=body.for_segment(name), actor=ctx.principal_id
    )


@router.get("", response_model=list[SegmentView])
def list_segments(ctx: SegmentsRead, runtime: RuntimeDep) -> list[SegmentView]:
    del ctx
    return service.list_segments(runtime=runtime)


@router.get("/{name}", response_model=SegmentView)
def get_segment(name: SegmentName, ctx: SegmentsRead, runtime: RuntimeDep) -> SegmentView:
    del ctx
    return service.get_segment(runtime=runtime, name=name)


@router.get("/{name}/members", response_model=MembersPage)
def list_members(
    name: SegmentName,
    ctx: SegmentsRead,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=HARD_MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9A-Za-z_-]{1,64}$")] = None,
) -> MembersPage:
    """Pseudonymous subject ids of the last computation, by id; audited."""
    return membership.members(runtime=runtime, ctx=ctx, name=name, page_size=limit, cursor=cursor)
