"""Segments: named rules (every change a new version), computations and membership snapshots."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from cdp.db.types import UtcDateTime


class Segment(SQLModel, table=True):
    """A named audience; its rule lives in :class:`SegmentVersion`."""

    __tablename__ = "segments"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    description: str = Field(default="", max_length=512)
    builtin: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    current_version: int
    created_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    updated_at: datetime = Field(sa_type=UtcDateTime, nullable=False)


class SegmentVersion(SQLModel, table=True):
    """One version of a segment's rule, as canonical JSON."""

    __tablename__ = "segment_versions"
    __table_args__ = (UniqueConstraint("segment_id", "version", name="uq_segment_version"),)

    id: int | None = Field(default=None, primary_key=True)
    segment_id: int = Field(
        sa_column=Column(Integer, ForeignKey("segments.id", ondelete="CASCADE"), nullable=False)
    )
    version: int
    rule: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    created_by: str = Field(max_length=64)


class SegmentComputation(SQLModel, table=True):
    """One evaluation of a segment version, with the size of its change since the previous."""

    __tablename__ = "segment_computations"
    __table_args__ = (Index("ix_segment_computations_segment", "segment_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    segment_id: int = Field(
        sa_column=Column(Integer, ForeignKey("segments.id", ondelete="CASCADE"), nullable=False)
    )
    version: int
    computed_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    member_count: int
    added_count: int
    removed_count: int
    previous_id: int | None = Field(default=None)


class SegmentSnapshotMember(SQLModel, table=True):
    """A subject in the snapshot of one computation (kept for the last few computations)."""

    __tablename__ = "segment_snapshot_members"

    computation_id: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey("segment_computations.id", ondelete="CASCADE"),
            primary_key=True,
            nullable=False,
        )
    )
    subject_id: str = Field(
        sa_column=Column(
            String(32),
            ForeignKey("subjects.id", ondelete="CASCADE"),
            primary_key=True,
            nullable=False,
        )
    )
