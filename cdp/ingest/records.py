"""The record types every connector produces: customer, order, consent event, behaviour event.

The batch files and the Segment API both end here, so one set of rules decides what is valid.
Fields we define are strict (types, bounds, known currencies and purposes); customer fields we do
not know are kept as custom traits. Validation messages name the rule, never the value, so that a
reject file or an HTTP error body cannot leak what was sent.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cdp.consent.purposes import PURPOSES
from cdp.crypto.normalize import normalize_email, normalize_phone
from cdp.ingest.money import finer_than_minor_unit, whole_minor_units
from cdp.ingest.times import MAX_DATE, MIN_DATE, RANGE_MESSAGE, aware, not_future
from cdp.validation import (
    CONTROL_MESSAGE,
    FORMULA_START,
    has_control,
    not_epoch,
    plain_text,
)

ADDRESS_FIELDS = ("street", "city", "postal_code", "state", "country")
PII_FIELDS = ("email", "phone", "first_name", "last_name", "birthday", "gender", *ADDRESS_FIELDS)
"""Customer fields stored encrypted in the PII vault (sealed together: one ``pii_records`` row
a subject)."""
CUSTOM_TRAITS_FIELD = "custom_traits"
"""The vault field holding a customer's custom traits as one JSON object."""

Text = Annotated[str, Field(min_length=1, max_length=256)]
ShortText = Annotated[str, Field(min_length=1, max_length=64)]
Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=6, allow_inf_nan=False)]


def _blank_to_none(data: Any) -> Any:
    """Empty or blank strings (CSV's empty cells) are absent values."""
    if isinstance(data, dict):
        for v in data.values():
            if v.__class__ is str and (not v or v.isspace()):
                break
        else:
            return data  # the common case (JSON input): no copy
        return {k: (None if isinstance(v, str) and not v.strip() else v) for k, v in data.items()}
    return data


def _object_copy(value: Any) -> Any:
    """A copy of a JSON object, an empty one for null, else the value itself."""
    if value is None:
        return {}
    return dict(value) if isinstance(value, dict) else value


def _safe_id(value: str | None) -> str | None:
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


def _phone(value: str | None, region: str | None, info: ValidationInfo) -> str | None:
    """E.164, reading national numbers in ``region`` (the address country) or the default."""
    if value is None:
        return None
    default = (info.context or {}).get("default_region") or "US"
    try:
        return normalize_phone(value, default_region=region or default)
    except Exception:
        raise ValueError("not a valid phone number") from None


def _email(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalize_email(value)
    except Exception:
        raise ValueError("not a valid email address") from None


class _Record(BaseModel):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, frozen=False, hide_input_in_errors=True
    )

    def __repr__(self) -> str:  # values may be personal data: name the type only
        return f"{type(self).__name__}(...)"

    __str__ = __repr__


class Address(_Record):
    street: str | None = Field(default=None, max_length=256)
    city: str | None = Field(default=None, max_length=128)
    postal_code: str | None = Field(default=None, max_length=32)
    state: str | None = Field(default=None, max_length=128)
    country: str | None = Field(default=None, max_length=64)

    @field_validator(*ADDRESS_FIELDS)
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return plain_text(value)


class CustomerRecord(_Record):
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
        data = _blank_to_none(data)
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

    @field_validator("customer_id", "anonymous_id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        return _safe_id(value)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return _email(value)

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
        return _phone(value, region, info)

    @model_validator(mode="after")
    def _has_identity(self) -> CustomerRecord:
        if not (self.customer_id or self.email or self.phone or self.anonymous_id):
            raise ValueError("missing id: needs customer_id, email, phone or anonymous_id")
        return self

    @property
    def region(self) -> str | None:
        """The address country as a two-letter region, for reading national phone numbers."""
        country = self.address.country if self.address else None
        return country.upper() if country and len(country) == 2 else None

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


class LineItem(_Record):
    product_id: str | None = Field(default=None, max_length=128)
    sku: str | None = Field(default=None, max_length=128)
    category: str | None = Field(default=None, max_length=128)
    name: str | None = Field(default=None, max_length=256)
    price: Money = Decimal(0)
    quantity: int = Field(default=1, ge=1, le=100_000)

    @model_validator(mode="before")
    @classmethod
    def _blank(cls, data: Any) -> Any:
        return _blank_to_none(data)

    @field_validator("product_id", "sku")
    @classmethod
    def _ids(cls, value: str | None) -> str | None:
        return _safe_id(value)

    @field_validator("category", "name")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return plain_text(value)

    @field_validator("quantity", mode="before")
    @classmethod
    def _one_when_absent(cls, value: Any) -> Any:
        """A quantity that is null (or a blank cell) is absent, so 1, as when the key is missing
        (and as the Segment API reads a product's ``quantity: null``); 0 or less is refused."""
        return 1 if value is None else value


class _SubjectRecord(_Record):
    """Rules shared by the records that name their subject (orders, consent, events): blank
    cells are absent, ids are safe, the email and phone are normalised, times are UTC."""

    @model_validator(mode="before")
    @classmethod
    def _blank(cls, data: Any) -> Any:
        return _blank_to_none(data)

    @field_validator("customer_id", "anonymous_id", check_fields=False)
    @classmethod
    def _subject_ids(cls, value: str | None) -> str | None:
        return _safe_id(value)

    @field_validator("email", check_fields=False)
    @classmethod
    def _subject_email(cls, value: str | None) -> str | None:
        return _email(value)

    @field_validator("phone", check_fields=False)
    @classmethod
    def _subject_phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _phone(value, None, info)

    @field_validator("ordered_at", "occurred_at", "timestamp", mode="before", check_fields=False)
    @classmethod
    def _not_epoch(cls, value: Any) -> Any:
        return not_epoch(value)

    @field_validator("ordered_at", "occurred_at", "timestamp", check_fields=False)
    @classmethod
    def _utc(cls, value: datetime, info: ValidationInfo) -> datetime:
        return not_future(aware(value), info.context)


class OrderRecord(_SubjectRecord):
    """An order; the customer is named by customer_id, email or phone."""

    order_id: str = Field(min_length=1, max_length=128)
    customer_id: str | None = Field(default=None, max_length=256)
    anonymous_id: str | None = Field(default=None, max_length=256)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=64)
    ordered_at: datetime
    currency: str = Field(min_length=3, max_length=3)  # before the amounts: their validators
    total: Money  # read it (an amount must be a whole number of its minor units)
    discount: Money = Decimal(0)
    coupon: str | None = Field(default=None, max_length=64)
    status: Literal["completed", "refunded", "cancelled"] = "completed"
    items: list[LineItem] = Field(default_factory=list, max_length=1000)
    updated_at: datetime | None = None
    """When the shop last changed the order: among rows of one order with the same status, only
    a strictly later one replaces what is stored (:mod:`cdp.ingest.orders`)."""

    @field_validator("updated_at", mode="before")
    @classmethod
    def _updated_not_epoch(cls, value: Any) -> Any:
        return not_epoch(value)

    @field_validator("updated_at")
    @classmethod
    def _updated(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        return None if value is None else not_future(aware(value), info.context)

    @field_validator("items", mode="before")
    @classmethod
    def _items_text(cls, value: Any) -> Any:
        """A CSV export carries the line items as one JSON array cell."""
        if isinstance(value, str):
            import json

            try:
                return json.loads(value)
            except ValueError:
                raise ValueError("items is not a JSON array") from None
        return value

    @field_validator("order_id", "coupon")
    @classmethod
    def _ids(cls, value: str | None) -> str | None:
        return _safe_id(value)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str, info: ValidationInfo) -> str:
        value = value.upper()
        known = (info.context or {}).get("currencies")
        if known is not None and value not in known:
            raise ValueError("unknown currency (not in CDP_FX_RATES)")
        return value

    @field_validator("total", "discount")
    @classmethod
    def _minor_units(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        currency = info.data.get("currency")  # absent when the currency itself is invalid
        if currency is not None and not whole_minor_units(value, currency):
            raise ValueError(finer_than_minor_unit(currency))
        return value

    @field_validator("items")
    @classmethod
    def _item_prices(cls, value: list[LineItem], info: ValidationInfo) -> list[LineItem]:
        currency = info.data.get("currency")
        if currency is not None:
            for n, item in enumerate(value):
                if not whole_minor_units(item.price, currency):
                    raise ValueError(f"the price of item {n}: {finer_than_minor_unit(currency)}")
        return value

    @model_validator(mode="after")
    def _has_customer(self) -> OrderRecord:
        if not (self.customer_id or self.email or self.phone or self.anonymous_id):
            raise ValueError("missing id: needs customer_id, email or phone")
        return self


class ConsentRecord(_SubjectRecord):
    """One grant or withdrawal of a purpose, for the consent ledger."""

    customer_id: str | None = Field(default=None, max_length=256)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=64)
    anonymous_id: str | None = Field(default=None, max_length=256)
    purpose: str = Field(max_length=32)
    status: Literal["granted", "withdrawn"]
    occurred_at: datetime
    source: str = Field(default="import", min_length=1, max_length=64)
    notice_version: str | None = Field(default=None, max_length=64)
    mechanism: Literal["checkbox", "banner", "import", "api", "cli", "sdk", "gpc", "request"] = (
        "import"
    )

    @field_validator("purpose")
    @classmethod
    def _purpose(cls, value: str) -> str:
        if value not in PURPOSES:
            raise ValueError("unknown purpose")
        return value

    @field_validator("source", "notice_version")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return plain_text(value)

    @model_validator(mode="after")
    def _has_subject(self) -> ConsentRecord:
        if not (self.customer_id or self.email or self.phone or self.anonymous_id):
            raise ValueError("missing id: needs customer_id, email, phone or anonymous_id")
        return self


class EventRecord(_SubjectRecord):
    """A behaviour event (Segment ``track``/``page``/``screen``)."""

    message_id: str | None = Field(default=None, max_length=128)
    customer_id: str | None = Field(default=None, max_length=256)
    anonymous_id: str | None = Field(default=None, max_length=256)
    email: str | None = Field(default=None, max_length=320)
    type: Literal["track", "page", "screen"] = "track"
    event: str = Field(min_length=1, max_length=256)
    properties: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime

    @field_validator("message_id")
    @classmethod
    def _ids(cls, value: str | None) -> str | None:
        return _safe_id(value)

    @field_validator("event")
    @classmethod
    def _text(cls, value: str) -> str:
        return plain_text(value)

    @model_validator(mode="after")
    def _has_subject(self) -> EventRecord:
        if not (self.customer_id or self.anonymous_id or self.email):
            raise ValueError("missing id: needs customer_id (userId), anonymous_id or email")
        return self


AnyRecord = CustomerRecord | OrderRecord | ConsentRecord | EventRecord
