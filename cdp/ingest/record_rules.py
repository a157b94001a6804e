"""The rules every ingested record shares: blank cells are absent, identifiers are safe, emails
and phone numbers are normalised, times are UTC and not in the future, and a record's repr names
its type only (its values may be personal data).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

from cdp.crypto.normalize import normalize_email, normalize_phone
from cdp.ingest.times import aware, not_future
from cdp.validation import CONTROL_MESSAGE, FORMULA_START, not_epoch


def blank_to_none(data: Any) -> Any:
    """Empty or blank strings (CSV's empty cells) are absent values."""
    if isinstance(data, dict):
        for v in data.values():
            if v.__class__ is str and (not v or v.isspace()):
                break
        else:
            return data  # the common case (JSON input): no copy
        return {k: (None if isinstance(v, str) and not v.strip() else v) for k, v in data.items()}
    return data


def safe_id(value: str | None) -> str | None:
    """Identifiers are printable, trimmed and never start like a spreadsheet formula."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if not value.isprintable():
        raise ValueError(CONTROL_MESSAGE)
    if value.startswith(FORMULA_START):
        raise ValueError("starts with a spreadsheet formula character")
    return value


def checked_phone(value: str | None, region: str | None, info: ValidationInfo) -> str | None:
    """E.164, reading national numbers in ``region`` (the address country) or the default."""
    if value is None:
        return None
    default = (info.context or {}).get("default_region") or "US"
    try:
        return normalize_phone(value, default_region=region or default)
    except Exception:
        raise ValueError("not a valid phone number") from None


def checked_email(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalize_email(value)
    except Exception:
        raise ValueError("not a valid email address") from None


class Record(BaseModel):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, frozen=False, hide_input_in_errors=True
    )

    def __repr__(self) -> str:  # values may be personal data: name the type only
        return f"{type(self).__name__}(...)"

    __str__ = __repr__


class SubjectRecord(Record):
    """Rules shared by the records that name their subject (orders, consent, events): blank
    cells are absent, ids are safe, the email and phone are normalised, times are UTC."""

    @model_validator(mode="before")
    @classmethod
    def _blank(cls, data: Any) -> Any:
        return blank_to_none(data)

    @field_validator("customer_id", "anonymous_id", check_fields=False)
    @classmethod
    def _subject_ids(cls, value: str | None) -> str | None:
        return safe_id(value)

    @field_validator("email", check_fields=False)
    @classmethod
    def _subject_email(cls, value: str | None) -> str | None:
        return checked_email(value)

    @field_validator("phone", check_fields=False)
    @classmethod
    def _subject_phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        return checked_phone(value, None, info)

    @field_validator("ordered_at", "occurred_at", "timestamp", mode="before", check_fields=False)
    @classmethod
    def _not_epoch(cls, value: Any) -> Any:
        return not_epoch(value)

    @field_validator("ordered_at", "occurred_at", "timestamp", check_fields=False)
    @classmethod
    def _utc(cls, value: datetime, info: ValidationInfo) -> datetime:
        return not_future(aware(value), info.context)
