"""``GET /v1/metrics``: shop metrics, cohort matrix and RFM grid (aggregates, no subject ids)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from cdp.api.auth import AccessContext, authorize
from cdp.api.deps import RuntimeDep
from cdp.clock import utcnow
from cdp.traits.metrics import shop_metrics

router = APIRouter(prefix="/v1/metrics", tags=["metrics"])

MetricsRead = Annotated[AccessContext, Depends(authorize("metrics", "read"))]


FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2100, 1, 1)
"""The days a period may start or end on (cdp stores times of 1900-2099)."""


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


PERIOD_RULE = (
    "`from` must be before `to` (the period is [from, to), at least one day); a period that "
    "does not start before it ends is refused with 422 (detail `from`)."
)
"""What JSON Schema cannot say about the two parameters (it cannot compare two values)."""


@router.get("", description=f"The period defaults to the 365 days before today. {PERIOD_RULE}")
def get_metrics(
    ctx: MetricsRead,
    runtime: RuntimeDep,
    start: Annotated[
        date | None,
        Query(
            alias="from",
            description="First day (UTC); before `to`. Default: 365 days before `to`.",
            ge=FIRST_DAY,
            le=LAST_DAY,
        ),
    ] = None,
    end: Annotated[
        date | None,
        Query(
            alias="to",
            description="Day after the period (UTC); after `from`. Default: today.",
            ge=FIRST_DAY,
            le=LAST_DAY,
        ),
    ] = None,
) -> dict[str, Any]:
    """The period defaults to the 365 days before today."""
    del ctx  # authorised; aggregates carry no personal data, so no audit record
    to = _midnight(end) if end else _midnight(utcnow().date())
    frm = _midnight(start) if start else to - timedelta(days=365)
    return shop_metrics(runtime=runtime, start=frm, end=to).to_dict()
