"""Normalisers for identity values, applied before tokens are computed.

The same person must give the same token whatever the spelling of the input: an email with other
case or surrounding spaces, a phone number in national or international form. Errors name the kind,
never the value.
"""

from __future__ import annotations

import re
from enum import StrEnum

import idna
import phonenumbers

from cdp.errors import NormalizationError


class IdentityKind(StrEnum):
    """The ways cdp recognises a subject."""

    EMAIL = "email"
    PHONE = "phone"
    CUSTOMER_ID = "customer_id"
    ANONYMOUS_ID = "anonymous_id"


MAX_ID_LENGTH = 256
_LOCAL_PART = re.compile(r"^[^\s@\x00-\x1f\x7f]{1,64}$")
_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize_email(raw: str) -> str:
    """Trim, lower-case, and encode the domain as IDNA (ASCII); refuse what is not an address."""
    value = raw.strip().lower()
    local, sep, domain = value.rpartition("@")
    if not sep or not _LOCAL_PART.match(local):
        raise NormalizationError("email is not a valid address")
    domain = domain.rstrip(".")
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise NormalizationError("email domain is not a valid internationalised name") from exc
    labels = domain.split(".")
    if len(labels) < 2 or len(domain) > 253 or not all(_DOMAIN_LABEL.match(x) for x in labels):
        raise NormalizationError("email domain is not valid")
    return f"{local}@{domain}"


def normalize_phone(raw: str, *, default_region: str) -> str:
    """E.164 (``+<country><number>``); national numbers are read in ``default_region``."""
    value = raw.strip()
    if not value or len(value) > 64:
        raise NormalizationError("phone is empty or too long")
    if value.startswith("00"):
        value = "+" + value[2:]
    try:
        number = phonenumbers.parse(value, default_region.upper())
    except phonenumbers.NumberParseException as exc:
        raise NormalizationError("phone cannot be parsed") from exc
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        raise NormalizationError("phone is not a valid number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_opaque_id(raw: str, *, kind: str) -> str:
    """External customer ids and device/anonymous ids: trimmed, case kept, bounded, printable."""
    value = raw.strip()
    if not value:
        raise NormalizationError(f"{kind} is empty")
    if len(value) > MAX_ID_LENGTH:
        raise NormalizationError(f"{kind} is longer than {MAX_ID_LENGTH} characters")
    if not value.isprintable():
        raise NormalizationError(f"{kind} contains control characters")
    return value


def normalize(kind: IdentityKind | str, raw: str, *, default_region: str = "US") -> str:
    """Normalise ``raw`` as an identity of ``kind``."""
    kind = IdentityKind(kind)
    if kind is IdentityKind.EMAIL:
        return normalize_email(raw)
    if kind is IdentityKind.PHONE:
        return normalize_phone(raw, default_region=default_region)
    return normalize_opaque_id(raw, kind=kind.value)
