"""A fast path for the common shape of order records, in front of the pydantic model.

Pydantic calls a dozen Python validators per order and per line item (ids, times, money, the
currency), which made validation the largest single cost of order ingestion (~60 µs an order).
Most records of a shop export are plain: every string already trimmed, ISO timestamps, decimal
strings for money, integer quantities. :func:`fast_order` checks exactly that plain shape with
the same rules and builds the record directly; anything else — a blank cell, a float amount, an
unusual timestamp, any rule that fails — returns ``None`` and the record goes through
:class:`~cdp.ingest.records.OrderRecord` as before. So every rejection (and its reason) still
comes from the model, and a record accepted here equals what the model would build: a property
test (tests/ingest/test_fastpath.py) checks both on generated records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel

from cdp.crypto.normalize import normalize_email, normalize_phone
from cdp.ingest.money import exponent, whole_minor_units
from cdp.ingest.records import LineItem, OrderRecord
from cdp.ingest.times import aware
from cdp.validation import FORMULA_START

_ORDER_KEYS = frozenset(OrderRecord.model_fields)
_ITEM_KEYS = frozenset(LineItem.model_fields)
_STATUSES = frozenset(("completed", "refunded", "cancelled"))
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})")
_MONEY = re.compile(r"(?:0|[1-9]\d{0,11})(?:\.\d{1,6})?")
_ZERO = Decimal(0)
_M = TypeVar("_M", bound=BaseModel)
_set = object.__setattr__
_MAX_INT_MONEY = 10**12
_MAX_INT_ID = 10**18  # 18 digits: shorter than every id field's limit


def _build(
    cls: type[_M],
    data: Mapping[str, Any],
    values: dict[str, Any],
    fields_set: set[str] | None = None,
) -> _M:
    """The model holding ``values`` as validation would leave it (what ``model_construct`` does,
    without its per-field bookkeeping, which costs more than all these checks); the fields set
    are ``data``'s keys unless given."""
    record = cls.__new__(cls)
    _set(record, "__dict__", values)
    _set(record, "__pydantic_fields_set__", set(data) if fields_set is None else fields_set)
    _set(record, "__pydantic_extra__", None)
    _set(record, "__pydantic_private__", None)
    return record


class _FallbackError(Exception):
    """Not the plain shape: let the model decide."""


def _text(value: Any, limit: int) -> str | None:
    """A present, trimmed, non-blank, printable string of at most ``limit`` characters (else
    fallback: the model decides on control characters, tabs, line breaks, lone surrogates and
    the other non-printable characters, which no plain export holds)."""
    if value is None:
        return None
    if (
        value.__class__ is not str
        or not value
        or len(value) > limit
        or not value.isprintable()
        or value != value.strip()
    ):
        raise _FallbackError
    return value


def _ident(value: Any, limit: int) -> str | None:
    if value.__class__ is int and 0 <= value < _MAX_INT_ID:  # a JSON integer id: its text
        return str(value)
    text = _text(value, limit)  # printable
    if text is not None and text.startswith(FORMULA_START):
        raise _FallbackError
    return text


def _money(value: Any) -> Decimal:
    cls = value.__class__
    if cls is str and _MONEY.fullmatch(value):
        return Decimal(value)
    if cls is int and 0 <= value < _MAX_INT_MONEY:
        return Decimal(value)
    raise _FallbackError


def _time(value: Any, latest: datetime) -> datetime:
    """An ISO time up to ``latest`` (the context's ``latest_time``)."""
    if value.__class__ is not str or not _TIME.fullmatch(value):
        raise _FallbackError
    try:
        at = aware(datetime.fromisoformat(value))
    except ValueError:
        raise _FallbackError from None
    if at > latest:
        raise _FallbackError
    return at


def _item(data: Any) -> LineItem:
    if data.__class__ is not dict or not _ITEM_KEYS.issuperset(data):
        raise _FallbackError
    get = data.get
    quantity = get("quantity", 1)
    if quantity.__class__ is not int or not 1 <= quantity <= 100_000:
        raise _FallbackError
    price = get("price")
    return _build(
        LineItem,
        data,
        {
            "product_id": _ident(get("product_id"), 128),
            "sku": _ident(get("sku"), 128),
            "category": _text(get("category"), 128),
            "name": _text(get("name"), 256),
            "price": _ZERO if price is None and "price" not in data else _money(price),
            "quantity": quantity,
        },
    )


def identities(
    cells: Mapping[str, Any], context: Mapping[str, Any], region: str | None
) -> tuple[str | None, str | None, str | None, str | None]:
    """(customer_id, anonymous_id, email, phone) of a record, validated and normalised as the
    models do (national phone numbers read in ``region``, else the default region); falls back
    when a rule fails or the record names no subject at all."""
    get = cells.get
    customer_id = _ident(get("customer_id"), 256)
    anonymous_id = _ident(get("anonymous_id"), 256)
    email = _text(get("email"), 320)
    if email is not None:
        email = normalize_email(email)
    phone = _text(get("phone"), 64)
    if phone is not None:
        default = region or context.get("default_region") or "US"
        phone = normalize_phone(phone, default_region=default)
    if not (customer_id or email or phone or anonymous_id):
        raise _FallbackError
    return customer_id, anonymous_id, email, phone


def fast_order(data: Mapping[str, Any], context: Mapping[str, Any]) -> OrderRecord | None:
    """The order ``data`` describes when it has the plain shape and passes every rule; else None."""
    if not _ORDER_KEYS.issuperset(data):
        return None
    try:
        get = data.get
        currency = _text(get("currency"), 3)
        known = context.get("currencies")
        if currency is None or len(currency) != 3:
            return None
        currency = currency.upper()
        if known is not None and currency not in known:
            return None
        status = get("status", "completed")
        if status.__class__ is not str or status not in _STATUSES:
            return None
        items = get("items", [])
        if items.__class__ is str:
            items = json.loads(items)
        if items.__class__ is not list or len(items) > 1000:
            return None
        customer_id, anonymous_id, email, phone = identities(data, context, None)
        total = _money(get("total"))
        discount = get("discount")
        discount = _ZERO if discount is None and "discount" not in data else _money(discount)
        lines = [_item(i) for i in items]
        updated = get("updated_at")
        if updated is not None:
            updated = _time(updated, context["latest_time"])
        if not _whole(total, currency) or not _whole(discount, currency):
            return None  # finer than the minor unit: the model rejects it
        for line in lines:
            if not _whole(line.price, currency):
                return None
        return _build(
            OrderRecord,
            data,
            {
                "order_id": _ident(get("order_id"), 128) or _fail(),
                "customer_id": customer_id,
                "anonymous_id": anonymous_id,
                "email": email,
                "phone": phone,
                "ordered_at": _time(get("ordered_at"), context["latest_time"]),
                "currency": currency,
                "total": total,
                "discount": discount,
                "coupon": _ident(get("coupon"), 64),
                "status": status,
                "items": lines,
                "updated_at": updated,
            },
        )
    except Exception:  # any rule failing (normalisers raise their own): the model names it
        return None


def _fail() -> str:
    raise _FallbackError


def _whole(amount: Decimal, currency: str) -> bool:
    """``whole_minor_units``, quick for an amount with no more decimals than the currency (the
    plain case: its exponent alone says so)."""
    exp = amount.as_tuple().exponent
    if isinstance(exp, int) and -exp <= exponent(currency):
        return True
    return whole_minor_units(amount, currency)
