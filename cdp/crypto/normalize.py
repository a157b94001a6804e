"""Normalisers for identity values, applied before tokens are computed.

The same person must give the same token whatever the spelling of the input: an email with other
case or surrounding spaces, a phone number in national or international form. Errors name the kind,
never the value.
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import lru_cache

import idna
import phonenumbers
from phonenumbers import PhoneMetadata
from phonenumbers import phonenumberutil as _pnu

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


_E164_SHAPE = re.compile(r"\+([1-9][0-9]{5,16})")
_NATIONAL_SHAPE = re.compile(r"(?:\([0-9]{1,6}\) ?)?[0-9]+(?:[ .-][0-9]+)*")
_FORMATTING = str.maketrans("", "", " ().-")


# parse's own steps for a national (trunk) prefix, so the fast path strips it exactly as parse does
_strip_national_prefix = _pnu._maybe_strip_national_prefix_carrier_code
_test_number_length = _pnu._test_number_length
_IS_POSSIBLE = _pnu.ValidationResult.IS_POSSIBLE


@lru_cache(maxsize=512)
def _prefix_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _starts_with(pattern: str | None, digits: str) -> bool:
    return bool(pattern) and _prefix_pattern(pattern).match(digits) is not None


def _fast_phone(value: str, region: str) -> str | None:
    """E.164 of the plain shapes (``+<digits>``, or national digits with spaces, dashes, dots
    and an optional parenthesised area code, with or without a trunk prefix) without
    ``phonenumbers.parse`` (~100 µs); None whenever parse could read the digits differently — an
    international prefix, the country code repeated, a leading zero kept, an unknown region —
    so the caller parses in full.
    The number built here is what parse builds for these shapes (tests compare the two)."""
    plus = _E164_SHAPE.fullmatch(value)
    if plus is not None:
        digits = plus.group(1)
        for size in (1, 2, 3):
            code = int(digits[:size])
            if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                break
        else:
            return None
        meta = PhoneMetadata.metadata_for_region_or_calling_code(
            code, phonenumbers.region_code_for_country_code(code)
        )
        national = digits[size:]
    elif _NATIONAL_SHAPE.fullmatch(value):
        meta = PhoneMetadata.metadata_for_region(region, None)
        if meta is None or meta.country_code is None:
            return None
        code = meta.country_code
        national = value.translate(_FORMATTING)
        if _starts_with(meta.international_prefix, national) or national.startswith(str(code)):
            return None
    else:
        return None
    if meta is None or not 2 <= len(national) <= 17:
        return None
    if _starts_with(meta.national_prefix_for_parsing, national):
        # A trunk prefix ("0" in 020 7946 0958): parse strips it with these two steps and keeps
        # the stripped digits when their length is possible; any other outcome goes to parse.
        _carrier, stripped, _ = _strip_national_prefix(national, meta)
        if stripped == national or _test_number_length(stripped, meta) is not _IS_POSSIBLE:
            return None
        national = stripped
    if not national or national[0] == "0":
        return None
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        return None  # the full parse decides, and words the error
    return f"+{code}{national}"


def normalize_phone(raw: str, *, default_region: str) -> str:
    """E.164 (``+<country><number>``); national numbers are read in ``default_region``.

    Plain shapes take a fast path (:func:`_fast_phone`); everything else, and every number the
    fast path does not accept, goes through ``phonenumbers.parse``."""
    value = raw.strip()
    if not value or len(value) > 64:
        raise NormalizationError("phone is empty or too long")
    if value.startswith("00"):
        value = "+" + value[2:]
    fast = _fast_phone(value, default_region.upper())
    if fast is not None:
        return fast
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
