"""Segment Spec messages, and how each becomes cdp records.

Field names are Segment's (``userId``, ``anonymousId``, ``messageId``, ``traits``, ``context`` …).
``userId`` is the shop's customer id (identity kind ``customer_id``); ``anonymousId`` is a device
or browser id (``anonymous_id``). Mapping:

- ``identify`` → a customer record (reserved traits ``email``, ``phone``, ``firstName``,
  ``lastName``, ``birthday``, ``gender``, ``address{street, city, postalCode, state, country}``,
  ``createdAt``; other traits are custom traits);
- ``alias`` → links ``previousId`` (read as an anonymous id) to ``userId``;
- ``track`` → an event; ``Order Completed`` is also an order (``order_id``, ``total`` or
  ``revenue``, ``currency`` — default the base currency —, ``discount``, ``coupon``,
  ``products[]``);
- ``page`` / ``screen`` → an event named after the page (``name``), or ``Page Viewed``;
- ``context.consent.categoryPreferences`` → consent entries (see :data:`CATEGORY_PURPOSES`).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cdp.ingest.money import exponent
from cdp.ingest.record_rules import safe_id
from cdp.validation import CONTROL_MESSAGE, not_epoch, plain_text

#: Consent-manager category names (lower-cased) -> cdp purposes. Unknown categories are ignored.
CATEGORY_PURPOSES: dict[str, tuple[str, ...]] = {
    "advertising": ("ad_audiences",),
    "ads": ("ad_audiences",),
    "targeting": ("ad_audiences",),
    "ad_audiences": ("ad_audiences",),
    "marketing": ("email_marketing", "sms_marketing", "push_marketing"),
    "email": ("email_marketing",),
    "email_marketing": ("email_marketing",),
    "sms": ("sms_marketing",),
    "sms_marketing": ("sms_marketing",),
    "push": ("push_marketing",),
    "push_marketing": ("push_marketing",),
    "personalization": ("personalization",),
    "personalisation": ("personalization",),
    "functional": ("personalization",),
    "preferences": ("personalization",),
    "analytics": ("analytics",),
    "performance": ("analytics",),
    "statistics": ("analytics",),
}

_TRAIT_NAMES = {
    "email": "email",
    "phone": "phone",
    "firstName": "first_name",
    "first_name": "first_name",
    "lastName": "last_name",
    "last_name": "last_name",
    "birthday": "birthday",
    "gender": "gender",
    "createdAt": "created_at",
    "created_at": "created_at",
}
_ADDRESS_NAMES = {
    "street": "street",
    "city": "city",
    "postalCode": "postal_code",
    "postal_code": "postal_code",
    "state": "state",
    "country": "country",
}
_SKIP_TRAITS = {"id", "userId", "anonymousId", "address", "name"}
ORDER_COMPLETED = "Order Completed"


def number_id(value: Any) -> Any:
    """A number sent as an id, as the string Segment's libraries make of it (JavaScript's
    ``String(n)``): an integer, or an integral float, without a decimal point (``1`` and ``1.0``
    are one id, "1"), other finite numbers in their shortest form. NaN and the infinities (JSON
    extensions cdp reads, and ``1e400``) are refused: as "nan" or "inf" they would join unrelated
    visitors into one subject."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    if value.is_integer() and abs(value) < 1e21:  # JavaScript writes 1e21 and up with an exponent
        return str(int(value))
    return repr(value)


class SegmentMessage(BaseModel):
    """One message of the Segment Spec (unknown fields such as ``integrations`` are ignored)."""

    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True, populate_by_name=True)

    type: Literal["identify", "track", "page", "screen", "alias", "group"]
    message_id: str | None = Field(default=None, alias="messageId", max_length=128)
    user_id: str | None = Field(default=None, alias="userId", max_length=256)
    anonymous_id: str | None = Field(default=None, alias="anonymousId", max_length=256)
    previous_id: str | None = Field(default=None, alias="previousId", max_length=256)
    timestamp: datetime | None = None
    original_timestamp: datetime | None = Field(default=None, alias="originalTimestamp")
    sent_at: datetime | None = Field(default=None, alias="sentAt")
    event: str | None = Field(default=None, max_length=256)
    name: str | None = Field(default=None, max_length=256)
    traits: dict[str, Any] = Field(default_factory=dict)
    properties: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)

    def __repr__(self) -> str:
        return f"SegmentMessage(type={self.type!r})"

    @field_validator("user_id", "anonymous_id", "previous_id", mode="before")
    @classmethod
    def _number_ids(cls, value: Any) -> Any:
        return number_id(value)

    @field_validator("user_id", "anonymous_id", "previous_id")
    @classmethod
    def _ids(cls, value: str | None) -> str | None:
        """The identifier rules of every record (printable, trimmed, no formula start), checked
        here so that a message that builds no record (``group``) is held to them too."""
        return safe_id(value)

    @field_validator("message_id")
    @classmethod
    def _message_id(cls, value: str | None) -> str | None:
        """Printable, as every identifier (an identify's id is stored as sent)."""
        if value is not None and not value.isprintable():
            raise ValueError(CONTROL_MESSAGE)
        return value

    @field_validator("event", "name")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return plain_text(value)

    @field_validator("timestamp", "original_timestamp", "sent_at", mode="before")
    @classmethod
    def _not_epoch(cls, value: Any) -> Any:
        return not_epoch(value)

    @field_validator("traits", "properties", "context", mode="before")
    @classmethod
    def _null_objects(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("timestamp", "original_timestamp", "sent_at", mode="after")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """A time without a zone is UTC (as in batch files), so times can be compared."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    def checks(self) -> list[tuple[str, str]]:
        """Segment's own rules: an identifier; a track has an event; an alias has both ids; the
        objects the spec nests (``context.traits``, an order's ``products``) have their shape."""
        problems = []
        if not isinstance(self.context.get("traits") or {}, dict):
            problems.append(("context.traits", "context.traits must be an object"))
        products = self.properties.get("products")
        if self.event == ORDER_COMPLETED and not isinstance(products or [], list):
            problems.append(("properties.products", "products must be an array"))
        if not (self.user_id or self.anonymous_id):
            problems.append(("userId", "userId or anonymousId is required"))
        if self.type == "track" and not self.event:
            problems.append(("event", "a track call needs an event name"))
        if self.type == "alias" and not (self.previous_id and self.user_id):
            problems.append(("previousId", "an alias call needs previousId and userId"))
        return problems

    def when(self, received_at: datetime) -> datetime:
        """The event time, corrected for the sender's clock skew as Segment does."""
        at = self.timestamp or self.original_timestamp
        if at is None:
            return received_at
        if self.sent_at is not None and self.timestamp is None:
            try:
                return at + (received_at - self.sent_at)
            except OverflowError:  # a sentAt centuries off: no correction; the time is then
                return at  # dated at arrival if ahead (plan_messages), else range-checked
        return at


def _scalar(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def customer_data(msg: SegmentMessage) -> dict[str, Any]:
    """identify traits (and context.traits) as a customer record's input."""
    traits = {**(msg.context.get("traits") or {}), **msg.traits}
    data: dict[str, Any] = {"customer_id": msg.user_id, "anonymous_id": msg.anonymous_id}
    custom: dict[str, Any] = {}
    for key, value in traits.items():
        if key in _TRAIT_NAMES:
            data[_TRAIT_NAMES[key]] = value
        elif key not in _SKIP_TRAITS:
            custom[key[:64]] = _scalar(value)
    name = traits.get("name")
    if isinstance(name, str) and name.strip() and "first_name" not in data:
        first, _, last = name.strip().partition(" ")
        data["first_name"] = first
        if last:
            data["last_name"] = last
    address = traits.get("address")
    if isinstance(address, dict):
        data["address"] = {_ADDRESS_NAMES[k]: v for k, v in address.items() if k in _ADDRESS_NAMES}
    if custom:
        data["traits"] = custom
    return data


def alias_data(msg: SegmentMessage) -> dict[str, Any]:
    return {"customer_id": msg.user_id, "anonymous_id": msg.previous_id}


def json_amount(value: Any, currency: Any) -> Any:
    """An amount as the order record reads it. A JSON number with a fraction is a binary float
    to whoever sent it (a JavaScript cart summing 0.1 + 0.2 sends 0.30000000000000004), so it is
    read by its shortest decimal form and rounded half-even to the currency's minor unit (cents
    for USD, whole yen for JPY); strings (exact decimal text) and integers are passed on as they
    are, for the record's rules to judge. NaN and the infinities are passed on to be refused."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return repr(value)
    code = currency.strip().upper() if isinstance(currency, str) else ""
    amount = Decimal(repr(value))
    try:
        return str(amount.quantize(Decimal(1).scaleb(-exponent(code)), rounding=ROUND_HALF_EVEN))
    except InvalidOperation:  # too many digits to round: the record refuses it as too large
        return str(amount)


def total_field(properties: dict[str, Any]) -> str:
    """Which property is an ``Order Completed``'s total: ``total`` unless it is absent or null,
    else ``revenue``."""
    return "total" if properties.get("total") is not None else "revenue"


def order_data(msg: SegmentMessage, at: datetime, base_currency: str) -> dict[str, Any]:
    """An ``Order Completed`` track as an order record's input (an absent or null ``order_id``
    or amount is left out, for the record to name it as required)."""
    p = msg.properties
    currency = p.get("currency") or base_currency
    products = p.get("products") or []
    data: dict[str, Any] = {
        "order_id": p.get("order_id") or p.get("checkout_id"),
        "customer_id": msg.user_id,
        "anonymous_id": msg.anonymous_id,
        "ordered_at": at,
        "total": json_amount(p.get(total_field(p)), currency),
        "currency": currency,
        "discount": json_amount(p.get("discount") or 0, currency),
        "coupon": p.get("coupon"),
        "status": "completed",
        "items": [
            {
                "product_id": i.get("product_id"),
                "sku": i.get("sku"),
                "category": i.get("category"),
                "name": i.get("name"),
                "price": json_amount(i.get("price") or 0, currency),
                # absent or null: one; 0 or a negative number reaches the record and is refused
                # there, as in a batch file
                "quantity": 1 if i.get("quantity") is None else i["quantity"],
            }
            for i in products
            if isinstance(i, dict)
        ],
    }
    return {k: v for k, v in data.items() if v is not None or k not in ("order_id", "total")}


def event_data(msg: SegmentMessage, at: datetime) -> dict[str, Any]:
    """A track, page or screen call as an event record's input."""
    if msg.type == "track":
        name = msg.event
    else:
        name = (
            msg.name
            or msg.properties.get("name")
            or ("Page Viewed" if msg.type == "page" else "Screen Viewed")
        )
    return {
        "message_id": msg.message_id,
        "customer_id": msg.user_id,
        "anonymous_id": msg.anonymous_id,
        "type": msg.type,
        "event": name,
        "properties": msg.properties,
        "timestamp": at,
    }


def consent_choices(msg: SegmentMessage) -> dict[str, str]:
    """purpose -> granted/withdrawn from ``context.consent.categoryPreferences``."""
    consent = msg.context.get("consent")
    prefs = consent.get("categoryPreferences") if isinstance(consent, dict) else None
    if not isinstance(prefs, dict):
        return {}
    out: dict[str, str] = {}
    for category, value in prefs.items():
        if not isinstance(value, bool):
            continue
        for purpose in CATEGORY_PURPOSES.get(str(category).lower(), ()):
            status = "granted" if value else "withdrawn"
            if out.get(purpose) != "withdrawn":  # the most restrictive choice wins
                out[purpose] = status
    return out
