"""Tables of subject activity. Money is stored in minor units of its currency, plus the value in
the reporting currency (``value_base``) for analytics; nothing here is personal data in clear.
Event properties are free-form and may carry personal data, so they are stored encrypted under the
subject's data key (field ``event:<id>``) and vanish with it on erasure.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
)
from sqlmodel import Field, SQLModel

from cdp.clock import utcnow
from cdp.db.types import UtcDateTime


def _subject_fk(*, nullable: bool, ondelete: str, index: bool = True) -> Column[str]:
    return Column(
        String(32), ForeignKey("subjects.id", ondelete=ondelete), nullable=nullable, index=index
    )


class Order(SQLModel, table=True):
    """One order. ``subject_id`` is the personal link; erasure sets it to NULL."""

    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_subject_time_value", "subject_id", "ordered_at", "value_base"),
    )

    id: int | None = Field(default=None, primary_key=True)
    order_ref: str = Field(max_length=128, unique=True, description="The shop's order id.")
    # no index of its own: ix_orders_subject_time_value leads with it and serves every lookup
    # by subject (one index fewer to maintain for each order ingested; migration 0015o)
    subject_id: str | None = Field(
        sa_column=_subject_fk(nullable=True, ondelete="SET NULL", index=False)
    )
    ordered_at: datetime = Field(sa_type=UtcDateTime, nullable=False, index=True)
    status: str = Field(max_length=16, description="completed | refunded | cancelled")
    currency: str = Field(max_length=3)
    total_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    discount_minor: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    value_base: float = Field(
        sa_column=Column(Float, nullable=False),
        description="Total in the reporting currency (major units) for analytics.",
    )
    coupon: str | None = Field(default=None, max_length=64)
    source: str = Field(max_length=64, description="file name or source name it came from")
    source_updated_at: datetime | None = Field(
        default=None,
        sa_type=UtcDateTime,
        nullable=True,
        description="The shop's last change of the order (a record's updated_at), if given.",
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)


class OrderItem(SQLModel, table=True):
    """A line item of an order."""

    __tablename__ = "order_items"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    product_id: str | None = Field(default=None, max_length=128)
    sku: str | None = Field(default=None, max_length=128)
    category: str | None = Field(default=None, max_length=128, index=True)
    name: str | None = Field(default=None, max_length=256)
    price_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    quantity: int


class Event(SQLModel, table=True):
    """A behaviour event (track/page/screen) of a subject."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_subject_time", "subject_id", "occurred_at"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=128, unique=True)
    subject_id: str = Field(
        sa_column=Column(String(32), ForeignKey("subjects.id", ondelete="CASCADE"), nullable=False)
    )
    type: str = Field(max_length=16, description="track | page | screen")
    name: str = Field(max_length=256, index=True)
    properties_ct: bytes | None = Field(
        default=None,
        sa_column=Column(LargeBinary, nullable=True),
        description="Properties as JSON, encrypted under the subject's data key.",
    )
    occurred_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    source: str = Field(max_length=64)


class SubjectMerge(SQLModel, table=True):
    """A record that two subjects were found to be one person; ``merged_id`` no longer exists."""

    __tablename__ = "subject_merges"

    id: int | None = Field(default=None, primary_key=True)
    survivor_id: str = Field(
        sa_column=Column(
            String(32), ForeignKey("subjects.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    merged_id: str = Field(max_length=32, index=True)
    linked_by: str = Field(max_length=32, description="identity kind that linked them")
    merged_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
