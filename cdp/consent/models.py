"""The consent ledger table. Append-only: the current state is derived from it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, String
from sqlmodel import Field, SQLModel

from cdp.clock import utcnow
from cdp.db.types import UtcDateTime


class ConsentEvent(SQLModel, table=True):
    """One grant or withdrawal of one purpose by one subject."""

    __tablename__ = "consent_events"
    __table_args__ = (
        # covering: the current state of a (subject, purpose) is read from the index alone
        Index(
            "ix_consent_subject_purpose_time_status",
            "subject_id",
            "purpose",
            "occurred_at",
            "status",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    subject_id: str = Field(
        sa_column=Column(String(32), ForeignKey("subjects.id", ondelete="CASCADE"), nullable=False)
    )
    purpose: str = Field(max_length=32)
    status: str = Field(max_length=16, description="granted | withdrawn")
    occurred_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    source: str = Field(max_length=64)
    notice_version: str | None = Field(default=None, max_length=64)
    mechanism: str = Field(max_length=16, description="checkbox | banner | import | api | gpc")
    recorded_by: str = Field(max_length=64, description="principal or source that recorded it")
    dedupe_key: str = Field(
        max_length=64,
        unique=True,
        description="Hash of subject, purpose, status, time and source: replays add nothing.",
    )
