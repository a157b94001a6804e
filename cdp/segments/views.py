"""Request and response bodies of the segment service (never the tables themselves)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from cdp.validation import text_problem

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


class SegmentIn(BaseModel):
    """A new segment, or a new version of an existing one. ``description`` omitted (or null)
    keeps an existing segment's description (a new one gets ""); ``""`` clears it."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = Field(None, max_length=512)
    rule: dict[str, Any]

    @field_validator("description")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        problem = None if value is None else text_problem(value)
        if problem is not None:
            raise ValueError(f"the description {problem}")
        return value


class SegmentVersionView(BaseModel):
    version: int
    rule: dict[str, Any]
    created_at: datetime
    created_by: str


class ComputationView(BaseModel):
    id: int
    version: int
    computed_at: datetime
    member_count: int
    added_count: int
    removed_count: int


class SegmentView(BaseModel):
    name: str
    description: str
    builtin: bool
    version: int
    rule: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    last_computation: ComputationView | None = None
    versions: list[SegmentVersionView] | None = None


class DiffView(BaseModel):
    """Who joined and who left between two computations (pseudonymous ids)."""

    segment: str
    from_computation: int | None
    to_computation: int
    added: list[str]
    removed: list[str]
    added_count: int
    removed_count: int
    truncated: bool


class MembersPage(BaseModel):
    segment: str
    computation: int
    computed_at: datetime
    member_count: int
    subject_ids: list[str]
    next_cursor: str | None
