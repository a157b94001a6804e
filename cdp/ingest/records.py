"""The record types every connector produces: customer, order, consent event, behaviour event.

The batch files and the Segment API both end here, so one set of rules decides what is valid.
Fields we define are strict (types, bounds, known currencies and purposes); customer fields we do
not know are kept as custom traits. Validation messages name the rule, never the value, so that a
reject file or an HTTP error body cannot leak what was sent. The customer record is
:mod:`cdp.ingest.customer_record`; the rules the records share are :mod:`cdp.ingest.record_rules`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from cdp.consent.purposes import PURPOSES
from cdp.ingest.customer_record import CustomerRecord
from cdp.ingest.money import finer_than_minor_unit, whole_minor_units
from cdp.ingest.record_rules import Record, SubjectRecord, blank_to_none, id_text, safe_id
from cdp.ingest.times import aware, not_future
from cdp.validation import not_epoch, plain_text

Text = Annotated[str, Field(min_length=1, max_length=256)]
ShortText = Annotated[str, Field(min_length=1, max_length=64)]
Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=6, allow_inf_nan=False)]


class LineItem(Record):
    product_id: str | None = Field(default=None, max_length=128)
    sku: str | None = Field(default=None, max_length=128)
    category: str | None = Field(default=None, max_length=128)
    name: str | None = Field(default=None, max_length=256)
    price: Money = Decimal(0)
    quantity: int = Field(default=1, ge=1, le=100_000)

    @model_validator(mode="before")
    @classmethod
    def _blank(cls, data: Any) -> Any:
        return blank_to_none(data)

    @field_validator("product_id", "sku", mode="before")
    @classmethod
    def _integer_ids(cls, value: Any) -> Any:
        return id_text(value)

    @field_validator("product_id", "sku")
    @classmethod
    def _ids(cls, value: str | None) -> str | None:
        return safe_id(value)

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


class OrderRecord(SubjectRecord):
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
        return safe_id(value)

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


class ConsentRecord(SubjectRecord):
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
    _message: str | None = PrivateAttr(default=None)

    def from_message(self, key: str) -> ConsentRecord:
        """Mark this choice as one of the event message keyed ``key`` (its ``messageId``): the
        ledger then dedupes it by the message, not by its time, which the clock-skew correction
        makes depend on when the message arrived (a replay of a grant, dated later, would be
        recorded again and undo a withdrawal made in between). Not settable from a file."""
        self._message = key
        return self

    @property
    def message_key(self) -> str | None:
        """The key of the event message this choice came from (:meth:`from_message`)."""
        return self._message

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


class EventRecord(SubjectRecord):
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
        return safe_id(value)

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
