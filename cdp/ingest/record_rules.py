"""The rules every ingested record shares: blank cells are absent, identifiers are safe (and an
integer id is its decimal text), emails
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


_INT_ID_LIMIT = 10**256
"""An integer id has fewer digits than this bound's (no id field holds more than 256 characters;
a longer number is refused before it is turned into text)."""
_EXACT_FLOAT = 2**53
"""Integral floats below this are exactly the integer they print as."""


def id_text(value: Any) -> Any:
    """An identifier sent as a JSON number (shop exports write numeric customer, order and
    product ids so) is its decimal text, so that ``12345`` in JSON Lines and the CSV cell
    ``"12345"`` name the same subject or order. An integral float (``12345.0``, as a table tool
    writes an integer column with gaps) is its integer's text, as the Segment API reads a number
    id, while it is exact (below 2**53); a float with a fraction, a larger float (its digits are
    no longer the sender's) and a bool are refused. Anything else goes on to the field's own
    rules."""
    cls = value.__class__
    if cls is int:
        if not -_INT_ID_LIMIT < value < _INT_ID_LIMIT:
            raise ValueError("an integer of more than 256 digits is not an id")
        return str(value)
    if cls is float:
        if value.is_integer() and abs(value) < _EXACT_FLOAT:
            return str(int(value))
        raise ValueError(
            "a number with a fraction, or too large to be exact, is not an id (send it as text)"
        )
    if cls is bool:
        raise ValueError("a boolean is not an id")
    return value


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

    @field_validator(
        "customer_id",
        "anonymous_id",
        "order_id",
        "coupon",
        "message_id",
        mode="before",
        check_fields=False,
    )
    @classmethod
    def _integer_ids(cls, value: Any) -> Any:
        return id_text(value)

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
