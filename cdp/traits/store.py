"""Reading a subject's stored traits: per-subject data, so every read is audited."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel

from cdp.access.context import AccessContext
from cdp.audit.service import audited_read
from cdp.db.models import Subject
from cdp.errors import NotFoundError
from cdp.profiles.former_ids import current_ids
from cdp.runtime import Runtime
from cdp.traits.models import ClvPrediction, LoyaltyStatus, SubjectTraits
from cdp.traits.points import balance

traits_t = SubjectTraits.__table__  # type: ignore[attr-defined]
status_t = LoyaltyStatus.__table__  # type: ignore[attr-defined]
pred_t = ClvPrediction.__table__  # type: ignore[attr-defined]
subjects_t = Subject.__table__  # type: ignore[attr-defined]


class OrderTraitsView(BaseModel):
    computed_at: datetime
    orders: int
    occasions: int
    first_order_at: datetime | None
    last_order_at: datetime | None
    total_value: float
    avg_order_value: float | None
    repurchase_cycle_days: float | None
    days_since_last_order: int | None
    recency_score: int | None
    frequency_score: int | None
    monetary_score: int | None
    rfm_segment: str | None
    lifecycle_stage: str
    value_layer: str


class LoyaltyView(BaseModel):
    tier: str
    since: datetime
    evaluated_at: datetime
    points_balance: int


class ClvView(BaseModel):
    computed_at: datetime
    horizon_weeks: float
    expected_purchases: float
    p_alive: float
    churn_probability: float
    churn_flag: bool
    clv: float | None
    clv_quantile: int | None


class SubjectTraitsView(BaseModel):
    """Every stored trait of one subject; a family is null until it has been computed."""

    subject_id: str
    order: OrderTraitsView | None
    loyalty: LoyaltyView | None
    clv: ClvView | None


def _row(conn: sa.Connection, table: sa.Table, subject_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(table).where(table.c.subject_id == subject_id)).mappings().first()
    return dict(row) if row is not None else None


def read_traits(conn: sa.Connection, *, subject_id: str) -> SubjectTraitsView:
    """The stored traits of ``subject_id``; NotFoundError for an unknown subject."""
    known = conn.execute(sa.select(subjects_t.c.id).where(subjects_t.c.id == subject_id))
    if known.first() is None:
        raise NotFoundError("subject not found")
    order = _row(conn, traits_t, subject_id)
    status = _row(conn, status_t, subject_id)
    pred = _row(conn, pred_t, subject_id)
    loyalty_view = None
    if status is not None:
        loyalty_view = LoyaltyView(**status, points_balance=balance(conn, subject_id=subject_id))
    return SubjectTraitsView(
        subject_id=subject_id,
        order=OrderTraitsView(**order) if order else None,
        loyalty=loyalty_view,
        clv=ClvView(**pred) if pred else None,
    )


def get_traits(*, runtime: Runtime, ctx: AccessContext, subject_id: str) -> SubjectTraitsView:
    """A subject's traits, read and audited in one transaction (the caller was authorised for
    ``data:traits`` read). An id a merge absorbed reads the survivor's traits, named in the view
    and in the record."""
    with audited_read(
        runtime=runtime, ctx=ctx, action="read", resource="data:traits", subject_ids=[subject_id]
    ) as scope:
        try:
            view = read_traits(scope.conn, subject_id=subject_id)
        except NotFoundError:
            held = current_ids(scope.conn, [subject_id])[subject_id]
            if held == subject_id:
                raise
            view = read_traits(scope.conn, subject_id=held)
            scope.returned(subject_ids=[held])
        scope.returned(
            fields=[f"traits.{k}" for k in ("order", "loyalty", "clv") if getattr(view, k)]
        )
    return view
