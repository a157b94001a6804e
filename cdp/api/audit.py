"""``/v1/audit/reports/{kind}``: compliance reports (auditor and dpo, per the policy)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from cdp.api.auth import AccessContext, authorize
from cdp.api.deps import RuntimeDep
from cdp.audit.report_service import produce_report
from cdp.validation import IsoDateTime

router = APIRouter(prefix="/v1/audit", tags=["audit"])

ReportsRead = Annotated[AccessContext, Depends(authorize("audit_reports", "read"))]
Kind = Literal["subject-access", "principal-activity", "denied-anomalies", "processing"]


@router.get("/reports/{kind}", response_class=Response)
def get_report(
    kind: Annotated[Kind, Path(description="Which report.")],
    ctx: ReportsRead,
    runtime: RuntimeDep,
    format: Annotated[Literal["md", "html", "csv"], Query()] = "md",
    subject_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{32}$")] = None,
    principal: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[IsoDateTime | None, Query(description="Start (ISO 8601 with zone).")] = None,
    until: Annotated[IsoDateTime | None, Query(description="End (ISO 8601 with zone).")] = None,
) -> Response:
    """Render a report as Markdown, HTML or CSV (default period: the last 30 days)."""
    report = produce_report(
        runtime=runtime,
        ctx=ctx,
        kind=kind,
        fmt=format,
        subject_id=subject_id,
        principal=principal,
        since=since,
        until=until,
    )
    return Response(report.body, media_type=f"{report.media_type}; charset=utf-8")
