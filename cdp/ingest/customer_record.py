"""The customer record: a customer as a shop or CRM exports it (or as a Segment ``identify``
describes it), with its address and custom traits."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from cdp.ingest.record_rules import (
    Record,
    blank_to_none,
    checked_email,
    checked_phone,
    id_text,
    safe_id,
)
from cdp.ingest.times import MAX_DATE, MIN_DATE, RANGE_MESSAGE, aware, not_future
from cdp.validation import CONTROL_MESSAGE, has_control, not_epoch, plain_text

ADDRESS_FIELDS = ("street", "city", "postal_code", "state", "country")
PII_FIELDS = ("email", "phone", "first_name", "last_name", "birthday", "gender", *ADDRESS_FIELDS)
"""Customer fields stored encrypted in the PII vault (sealed together: one ``pii_records`` row
a subject)."""
CUSTOM_TRAITS_FIELD = "custom_traits"
"""The vault field holding a customer's custom traits as one JSON object."""


def _object_copy(value: Any) -> Any:
    """A copy of a JSON object, an empty one for null, else the value itself."""
    if value is None:
        return {}
    return dict(value) if isinstance(value, dict) else value


class Address(Record):
    street: str | None = Field(default=None, max_length=256)
    city: str | None = Field(default=None, max_length=128)
    postal_code: str | None = Field(default=None, max_length=32)
    state: str | None = Field(default=None, max_length=128)
    country: str | None = Field(default=None, max_length=64)

    @field_validator(*ADDRESS_FIELDS)
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return plain_text(value)


class CustomerRecord(Record):
    """A customer as a shop or CRM exports it (or as a Segment ``identify`` describes it)."""

    customer_id: str | None = Field(default=None, max_length=256)
    anonymous_id: str | None = Field(default=None, max_length=256)
    address: Address | None = None  # before phone: its country is the phone's region
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=64)
    first_name: str | None = Field(default=None, max_length=256)
    last_name: str | None = Field(default=None, max_length=256)
    birthday: date | None = None
    gender: str | None = Field(default=None, max_length=32)
    created_at: datetime | None = None
    traits: dict[str, str | int | float | bool | None] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        """Flat address columns nest under ``address``; unknown columns become custom traits."""
        data = blank_to_none(data)
        if not isinstance(data, dict):
            return data
        known = set(cls.model_fields)
        out: dict[str, Any] = {}
        # null is absent; anything else but an object (a number, a list, false) is left as it
        # is, for the field's type to reject
        address = _object_copy(data.get("address"))
        traits = _object_copy(data.get("traits"))
        for key, value in data.items():
            if key in ("address", "traits"):
                continue
            if key in ADDRESS_FIELDS:
                if value is not None and isinstance(address, dict):
                    address[key] = value
            elif key in known:
                out[key] = value
            elif value is not None and isinstance(traits, dict):
                traits[str(key)[:64]] = value
        if address or not isinstance(address, dict):
            out["address"] = address
        if traits or not isinstance(traits, dict):
            out["traits"] = traits
        return out

    @field_validator("customer_id", "anonymous_id", mode="before")
    @classmethod
    def _integer_ids(cls, value: Any) -> Any:
        return id_text(value)

    @field_validator("customer_id", "anonymous_id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        return safe_id(value)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return checked_email(value)

    @field_validator("first_name", "last_name", "gender")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return plain_text(value)

    @field_validator("birthday")
    @classmethod
    def _birthday(cls, value: date | None) -> date | None:
        if value is not None and not (MIN_DATE <= value < MAX_DATE):
            raise ValueError(RANGE_MESSAGE)
        return value

    @field_validator("birthday", "created_at", mode="before")
    @classmethod
    def _not_epoch(cls, value: Any) -> Any:
        return not_epoch(value)

    @field_validator("created_at")
    @classmethod
    def _created(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        return None if value is None else not_future(aware(value), info.context)

    @field_validator("traits")
    @classmethod
    def _traits(
        cls, value: dict[str, str | int | float | bool | None]
    ) -> dict[str, str | int | float | bool | None]:
        if len(value) > 100:
            raise ValueError("more than 100 custom traits")
        for v in value.values():
            if isinstance(v, str):
                if len(v) > 1024:
                    raise ValueError("a custom trait is longer than 1024 characters")
                if has_control(v):
                    raise ValueError(f"a custom trait {CONTROL_MESSAGE}")
        return value

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        address = info.data.get("address")
        country = address.country if isinstance(address, Address) else None
        region = country.upper() if country and len(country) == 2 else None
        return checked_phone(value, region, info)

    @model_validator(mode="after")
    def _has_identity(self) -> CustomerRecord:
        if not (self.customer_id or self.email or self.phone or self.anonymous_id):
            raise ValueError("missing id: needs customer_id, email, phone or anonymous_id")
        return self

    def pii(self) -> dict[str, str]:
        """The vault fields this record sets (email and phone normalised)."""
        out: dict[str, str] = {}
        for name in ("email", "phone", "first_name", "last_name", "gender"):
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        if self.birthday is not None:
            out["birthday"] = self.birthday.isoformat()
        if self.address is not None:
            for name in ADDRESS_FIELDS:
                v = getattr(self.address, name)
                if v is not None:
                    out[name] = v
        return out
