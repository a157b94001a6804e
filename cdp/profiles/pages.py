"""The pages the order and consent reads answer with (:mod:`cdp.profiles.reads`): their rows'
fields as stored, and the page models the API documents."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from pydantic import BaseModel, ConfigDict

ORDER_FIELDS: Final = (
    "order_ref",
    "ordered_at",
    "status",
    "currency",
    "total_minor",
    "discount_minor",
    "value_base",
)
CONSENT_FIELDS: Final = (
    "purpose",
    "status",
    "occurred_at",
    "recorded_at",
    "source",
    "notice_version",
    "mechanism",
)


class OrderOut(BaseModel):
    """One order as the API shows it (behaviour category; no personal data)."""

    model_config = ConfigDict(extra="forbid")

    order_ref: str
    ordered_at: datetime
    status: str
    currency: str
    total_minor: int
    discount_minor: int
    value_base: float


class ConsentOut(BaseModel):
    """One consent ledger entry."""

    model_config = ConfigDict(extra="forbid")

    purpose: str
    status: str
    occurred_at: datetime
    recorded_at: datetime
    source: str
    notice_version: str | None
    mechanism: str


class OrderPage(BaseModel):
    """A page of orders, oldest first, of ``subject_id``: the subject asked for, or the one that
    absorbed it in a merge; pass ``next_cursor`` back as ``cursor`` for the next."""

    subject_id: str
    items: list[OrderOut]
    next_cursor: int | None


class ConsentPage(BaseModel):
    """A page of consent ledger entries, oldest first, of ``subject_id``: the subject asked for,
    or the one that absorbed it in a merge."""

    subject_id: str
    items: list[ConsentOut]
    next_cursor: int | None
