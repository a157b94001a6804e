"""``/v1/exports``: run and read exports (destinations: :mod:`cdp.api.destinations`).

Routes parse input and hand the caller's :class:`AccessContext` to :mod:`cdp.exports`; the
pipeline checks the policy again for the destination's purpose and writes the audit records.
An export runs within the request and answers with its manifest; a refused export (audience too
small) answers 409 with the counts in the message.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from cdp.api.auth import AccessContext, authorize
from cdp.api.deps import RuntimeDep
from cdp.api.openapi_access import error_responses
from cdp.exports.records import ExportView, get_export, list_exports
from cdp.exports.run import run_export
from cdp.segments.views import NAME_PATTERN as SEGMENT_NAME_PATTERN

router = APIRouter(tags=["exports"])

ExportsRun = Annotated[AccessContext, Depends(authorize("exports", "run"))]
ExportsRead = Annotated[AccessContext, Depends(authorize("exports", "read"))]
ExportId = Annotated[str, Path(pattern=r"^exp_[0-9a-f]{24}$", description="An export id.")]
DESTINATION_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class ExportIn(BaseModel):
    """Run ``segment`` to ``destination`` now (send ``X-Purpose`` = the destination's purpose)."""

    segment: str = Field(pattern=SEGMENT_NAME_PATTERN)
    destination: str = Field(pattern=DESTINATION_NAME_PATTERN)
    full: bool = Field(False, description="Resend every eligible subject, not only changes.")


class UndeliveredOut(BaseModel):
    """A dead-lettered webhook batch: which, how many rows, tries, how the last one ended."""

    seq: int
    op: str
    rows: int
    attempts: int
    last_status: int | None
    last_error: str | None


class ExportOut(BaseModel):
    """An export: status and manifest (ids, counts and digests; never personal data)."""

    id: str
    status: str
    segment: str
    destination: str
    purpose: str
    principal: str
    started_at: datetime
    finished_at: datetime | None
    error_code: str | None
    manifest: dict[str, Any] | None
    files_deleted_at: datetime | None = Field(
        default=None,
        description="When retention deleted the files the export wrote (CDP_EXPORT_FILE_DAYS "
        "after it); null while they are kept.",
    )
    undelivered: list[UndeliveredOut] = Field(
        default_factory=list,
        description="GET /v1/exports/{id} only: the webhook batches dead-lettered, with how "
        "their last try ended (never their rows).",
    )


class ExportList(BaseModel):
    items: list[ExportOut]


def _export_out(view: ExportView) -> ExportOut:
    return ExportOut(
        id=view.id,
        status=view.status,
        segment=view.segment,
        destination=view.destination,
        purpose=view.purpose,
        principal=view.principal_name,
        started_at=view.started_at,
        finished_at=view.finished_at,
        error_code=view.error_code,
        manifest=view.manifest,
        files_deleted_at=view.files_deleted_at,
        undelivered=[UndeliveredOut(**asdict(u)) for u in view.undelivered],
    )


@router.post(
    "/v1/exports", response_model=ExportOut, status_code=201, responses=error_responses(404, 409)
)
def post_export(body: ExportIn, ctx: ExportsRun, runtime: RuntimeDep) -> ExportOut:
    """Run an export now: membership recomputed, consent and restriction checked at send time,
    only the destination's fields decrypted, audited, manifest returned."""
    result = run_export(
        runtime=runtime,
        ctx=ctx,
        segment=body.segment,
        destination=body.destination,
        full=body.full,
    )
    return _export_out(get_export(runtime=runtime, export_id=result.export_id))


@router.get("/v1/exports/{export_id}", response_model=ExportOut)
def read_export(export_id: ExportId, ctx: ExportsRead, runtime: RuntimeDep) -> ExportOut:
    """One export with its manifest."""
    return _export_out(get_export(runtime=runtime, export_id=export_id))


@router.get("/v1/exports", response_model=ExportList)
def read_exports(ctx: ExportsRead, runtime: RuntimeDep) -> ExportList:
    """The latest 50 exports, newest first."""
    return ExportList(items=[_export_out(v) for v in list_exports(runtime=runtime)])
