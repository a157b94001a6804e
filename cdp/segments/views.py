"""Request and response bodies of the segment service (never the tables themselves)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from cdp.errors import InvalidInputError
from cdp.segments.rules import RULE_SCHEMA
from cdp.validation import text_problem

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


class _RuleBody(BaseModel):
    description: str | None = Field(None, max_length=512)
    rule: dict[str, Any] = Field(json_schema_extra=RULE_SCHEMA)

    @field_validator("description")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        problem = None if value is None else text_problem(value)
        if problem is not None:
            raise ValueError(f"the description {problem}")
        return value


class SegmentIn(_RuleBody):
    """A new segment, or a new version of an existing one. ``description`` omitted (or null)
    keeps an existing segment's description (a new one gets ""); ``""`` clears it."""

    name: str = Field(pattern=NAME_PATTERN)


class SegmentUpdate(_RuleBody):
    """The body of ``PUT /v1/segments/{name}``: the path names the segment, so ``name`` may be
    left out; when given it must be the path's name (a body naming another segment is refused,
    not silently applied to the path's one)."""

    name: str | None = Field(None, pattern=NAME_PATTERN)

    def for_segment(self, name: str) -> SegmentIn:
        """The update as the service takes it, for the segment named ``name`` by the path."""
        if self.name is not None and self.name != name:
            raise InvalidInputError(
                "the body's name differs from the segment in the path; leave it out or repeat "
                "the path's name",
                field="name",
            )
        # the fields were validated here; the path's name is looked up as given (404 if unknown)
        return SegmentIn.model_construct(name=name, description=self.description, rule=self.rule)


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
