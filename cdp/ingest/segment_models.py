"""How each Segment Spec message (:mod:`cdp.ingest.segment_messages`) becomes cdp records.

``userId`` is the shop's customer id (identity kind ``customer_id``); ``anonymousId`` is a device
or browser id (``anonymous_id``). Mapping:

- ``identify`` → a customer record (reserved traits ``email``, ``phone``, ``firstName``,
  ``lastName``, ``birthday``, ``gender``, ``address{street, city, postalCode, state, country}``,
  ``createdAt``; other traits are custom traits);
- ``alias`` → links ``previousId`` (a former ``userId`` or an anonymous id:
  :mod:`cdp.ingest.segment_alias`) to ``userId``;
- ``track`` → an event; ``Order Completed`` is also an order (``order_id``, ``total`` or
  ``revenue``, ``currency`` — default the base currency —, ``discount``, ``coupon``,
  ``products[]``);
- ``page`` / ``screen`` → an event named after the page (``name``), or ``Page Viewed``;
- ``context.consent.categoryPreferences`` → consent entries (see :data:`CATEGORY_PURPOSES`).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from pydantic import TypeAdapter

from cdp.ingest.money import exponent
from cdp.ingest.segment_messages import MessageBasics, SegmentMessage
from cdp.validation import not_epoch

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


def _scalar(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, sort_keys=True, default=str)


_DATE_TIME: TypeAdapter[datetime] = TypeAdapter(datetime)


def birthday_date(value: Any) -> Any:
    """A ``birthday`` sent as a date-time, as the date it stands for; anything else as sent, for
    the customer record to judge (a date, or a refusal naming the field).

    analytics.js sends a JavaScript ``Date`` as ``toISOString()``: the instant in UTC. A date
    picked in a form is a ``Date`` at local midnight (``1990-05-12`` in UTC+8 is
    ``1990-05-11T16:00:00.000Z``) or at UTC midnight (``new Date("1990-05-12")``), so the UTC
    date would be a day early for everyone east of UTC. The date taken is the one whose midnight
    in UTC is nearest to the instant (the instant plus 12 hours, its UTC date): the picked day
    for a local midnight anywhere from UTC-11 to UTC+12. A time without a zone is UTC."""
    if not isinstance(value, str) or len(value.strip()) <= len("YYYY-MM-DD"):
        return value
    try:
        moment = _DATE_TIME.validate_python(not_epoch(value))
    except ValueError:  # ValidationError included: not a date-time, left to the record
        return value
    try:
        moment = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
        return (moment + timedelta(hours=12)).date().isoformat()
    except OverflowError:  # year 1 or 9999 moved past the calendar's ends by its offset or
        return moment.date().isoformat()  # the 12 hours: outside 1900-2099 either way


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
    if "birthday" in data:
        data["birthday"] = birthday_date(data["birthday"])
    name = traits.get("name")
    if isinstance(name, str) and name.strip():
        # ``name`` only fills what the explicit firstName / lastName leave out (absent or null)
        first, _, last = name.strip().partition(" ")
        for fld, part in (("first_name", first), ("last_name", last.strip())):
            if part and data.get(fld) is None:
                data[fld] = part
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


_LEFT_OUT_WHEN_NULL = frozenset(("order_id", "total", "discount", "coupon"))
"""Left out of an order's input when absent or null: the record names a required one, and an
order that says nothing of its discount or coupon says nothing against a stored one
(:mod:`cdp.ingest.segment_orders`); the record's defaults, no discount and no coupon, apply."""


def order_data(msg: SegmentMessage, at: datetime, base_currency: str) -> dict[str, Any]:
    """An ``Order Completed`` track as an order record's input (an absent or null ``order_id``
    or amount is left out, for the record to name it as required)."""
    p = msg.properties
    currency = p.get("currency") or base_currency
    products = p.get("products") or []
    data: dict[str, Any] = {
        "order_id": p["order_id"] if p.get("order_id") is not None else p.get("checkout_id"),
        "customer_id": msg.user_id,
        "anonymous_id": msg.anonymous_id,
        "ordered_at": at,
        "total": json_amount(p.get(total_field(p)), currency),
        "currency": currency,
        "discount": None
        if p.get("discount") is None
        else json_amount(p["discount"] or 0, currency),
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
    return {k: v for k, v in data.items() if v is not None or k not in _LEFT_OUT_WHEN_NULL}


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


def consent_choices(msg: SegmentMessage | MessageBasics) -> dict[str, str]:
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
