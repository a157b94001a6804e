"""A fast path for plain customer rows (a shop's CSV export), in front of the pydantic model.

Validating a customer through :class:`~cdp.ingest.customer_record.CustomerRecord` runs its
``before`` validator (blank cells, flat address columns, custom traits), a dozen field validators
and the nested address model: ~60 µs a row before any normalisation. Most rows of a CSV export are
plain: every cell a string, already trimmed, ISO dates. :func:`fast_customer` checks exactly that
shape with the same rules and builds the record directly; anything else — a non-string cell (JSON
input), a cell with surrounding spaces, an unusual date, any rule that fails — returns ``None`` and
the row goes through the model as before. Every rejection and its reason therefore still come from
the model, and a record accepted here equals the model's (tests/ingest/test_fast_customer.py checks
both on generated rows and on the demo shop).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from cdp.ingest.customer_record import ADDRESS_FIELDS, Address, CustomerRecord
from cdp.ingest.fastpath import _build, _FallbackError, _text, _time, identities

_ADDRESS_LIMITS = {"street": 256, "city": 128, "postal_code": 32, "state": 128, "country": 64}
"""Address's max_length per field (a test checks them against the model)."""
_TEXT_LIMITS = {"first_name": 256, "last_name": 256, "gender": 32}
_SCALARS = frozenset(("customer_id", "anonymous_id", "email", "phone", "birthday", "created_at"))
_KNOWN = _SCALARS | _TEXT_LIMITS.keys()
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MIN_DATE = date(1900, 1, 1)
_MAX_DATE = date(2100, 1, 1)
_MAX_TRAITS = 100
_MAX_TRAIT_CHARS = 1024


def _birthday(value: str | None) -> date | None:
    if value is None:
        return None
    if not _DATE.fullmatch(value):
        raise _FallbackError
    day = date.fromisoformat(value)
    if not _MIN_DATE <= day < _MAX_DATE:
        raise _FallbackError
    return day


def fast_customer(data: Mapping[str, Any], context: Mapping[str, Any]) -> CustomerRecord | None:
    """The customer ``data`` describes when it is a plain row passing every rule; else None."""
    if data.__class__ is not dict or "address" in data or "traits" in data:
        return None
    try:
        cells: dict[str, str | None] = {}
        address: dict[str, str] = {}
        traits: dict[str, Any] = {}
        for key, value in data.items():
            if value.__class__ is str:
                if not value or value.isspace():
                    value = None
            elif value is not None:
                return None  # typed JSON values: the model's coercion rules apply
            if key in _ADDRESS_LIMITS:
                if value is not None:
                    address[key] = _text(value, _ADDRESS_LIMITS[key])  # type: ignore[assignment]
            elif key in _KNOWN:
                cells[key] = value
            elif value is not None:
                if (
                    len(value) > _MAX_TRAIT_CHARS
                    or not value.isprintable()  # control characters, lone surrogates: the model
                    or value != value.strip()  # the model strips (by its own whitespace rules)
                ):
                    return None
                traits[str(key)[:64]] = value
        if len(traits) > _MAX_TRAITS:
            return None
        country = address.get("country")
        region = country.upper() if country and len(country) == 2 else None
        customer_id, anonymous_id, email, phone = identities(cells, context, region)
        get = cells.get
        created = get("created_at")
        values = {
            "customer_id": customer_id,
            "anonymous_id": anonymous_id,
            "address": _build(Address, address, {n: address.get(n) for n in ADDRESS_FIELDS})
            if address
            else None,
            "email": email,
            "phone": phone,
            "first_name": _text(get("first_name"), 256),
            "last_name": _text(get("last_name"), 256),
            "birthday": _birthday(get("birthday")),
            "gender": _text(get("gender"), 32),
            "created_at": None if created is None else _time(created, context["latest_time"]),
            "traits": traits,
        }
    except Exception:  # any rule failing (normalisers raise their own): the model names it
        return None
    fields_set = set(cells)
    if address:
        fields_set.add("address")
    if traits:
        fields_set.add("traits")
    return _build(CustomerRecord, data, values, fields_set)
