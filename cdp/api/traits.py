"""``GET /v1/profiles/{subject_id}/traits``: a subject's stored traits (authorised, audited)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from cdp.api.auth import AccessContext, authorize
from cdp.api.deps import RuntimeDep
from cdp.traits.store import SubjectTraitsView, get_traits

router = APIRouter(prefix="/v1/profiles", tags=["traits"])

TraitsRead = Annotated[AccessContext, Depends(authorize("data:traits", "read"))]
SubjectId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="A cdp subject id.")]


@router.get("/{subject_id}/traits", response_model=SubjectTraitsView)
def read_traits(subject_id: SubjectId, ctx: TraitsRead, runtime: RuntimeDep) -> SubjectTraitsView:
    """Order facts, RFM, lifecycle, value layer, loyalty tier and points, CLV and churn."""
    return get_traits(runtime=runtime, ctx=ctx, subject_id=subject_id)
