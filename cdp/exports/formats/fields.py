"""Per-field normalisers for the ad-platform formats.

Every function takes the raw text of one profile field and returns the platform-normalised
string, or ``""`` when the value cannot be used (not an email, not a phone number, ...). None
raises on any input, and none logs or echoes the value. Each is idempotent: normalising its
own output returns that output unchanged. Where each rule comes from is written down in
``docs/audience-formats.md``.
"""

from __future__ import annotations

import re
from datetime import date, datetime

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumber, PhoneNumberFormat

from cdp.exports.formats.tables import ISO_ALPHA2, US_STATE_CODE_SET, US_STATE_CODES
from cdp.exports.formats.text import fold_name, fold_place

_EMAIL_SHAPE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_GOOGLE_CONSUMER_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


# --- email -------------------------------------------------------------------------------


def meta_email(raw: str, region: str = "") -> str:
    """Meta ``EMAIL``: trimmed and lower-cased; must look like ``local@domain.tld``.

    (``region`` is unused: every normaliser takes the same two arguments.)
    """
    value = raw.strip().lower()
    return value if _EMAIL_SHAPE.fullmatch(value) else ""


def google_email(raw: str, region: str = "") -> str:
    """Google ``Email``: all whitespace removed, lower-cased; for gmail.com and
    googlemail.com the ``+tag`` and every ``.`` of the local part are removed."""
    value = "".join(raw.split()).lower()
    if not _EMAIL_SHAPE.fullmatch(value):
        return ""
    local, _, domain = value.partition("@")
    if domain in _GOOGLE_CONSUMER_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
        if not local:
            return ""
        value = f"{local}@{domain}"
    return value


# --- phone -------------------------------------------------------------------------------

_E164_SHAPE = re.compile(r"\+([1-9][0-9]{6,14})")
_CALLING_CODES = {str(code): code for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}


def _top_level_alternatives(pattern: str) -> list[str]:
    """Split a regular expression at its top-level ``|``."""
    parts: list[str] = []
    depth, start = 0, 0
    for index, char in enumerate(pattern):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(pattern[start:index])
            start = index + 1
    parts.append(pattern[start:])
    return parts


# A length-anchored alternative such as ``([2-9]\d{6})$``: it only matches a whole national
# number of a few digits (local dialling), so longer numbers need not be tried against it.
_ANCHORED = re.compile(r"\((\d*)(\[[0-9\-]+\])?\\d\{(\d+)(?:,(\d+))?\}\)\$")
_UNBOUNDED = 99


class _Trunk:
    """What libphonenumber may strip from a national number as a trunk (national) prefix
    for one calling code: literal prefixes, length-anchored patterns, other patterns."""

    __slots__ = ("anchored", "anchored_max", "code", "literals", "others")

    def __init__(self, code: int) -> None:
        self.code = code
        literals: set[str] = set()
        anchored: set[str] = set()
        others: set[str] = set()
        self.anchored_max = 0
        for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]:
            meta = PhoneMetadata.metadata_for_region_or_calling_code(code, region)
            found = meta and (meta.national_prefix_for_parsing or meta.national_prefix)
            for alternative in _top_level_alternatives(found) if found else ():
                shape = _ANCHORED.fullmatch(alternative)
                if alternative.isdigit():
                    literals.add(alternative)
                elif shape is not None:
                    anchored.add(alternative)
                    width = len(shape[1]) + bool(shape[2]) + int(shape[4] or shape[3])
                    self.anchored_max = max(self.anchored_max, width)
                else:
                    others.add(alternative)
        self.literals = tuple(sorted(literals))
        self.anchored = re.compile("|".join(sorted(anchored))) if anchored else None
        self.others = re.compile("|".join(sorted(others))) if others else None

    def may_strip(self, national: str) -> bool:
        """Whether a full parse might strip a trunk prefix from ``national``."""
        if national.startswith(self.literals):
            return True
        if self.others is not None and self.others.match(national) is not None:
            return True
        return (
            self.anchored is not None
            and len(national) <= self.anchored_max
            and self.anchored.match(national) is not None
        )


_TRUNKS: dict[str, _Trunk] = {}
_POSSIBLE: dict[tuple[int, int], bool] = {}


def _dialable(number: PhoneNumber) -> bool:
    """A plausible length for its country, dialled from anywhere: a number that is possible
    only locally (a US number without its area code, ``555-1234``) names no one an ad platform
    can match and is dropped."""
    reason = phonenumbers.is_possible_number_with_reason(number)
    return bool(reason == phonenumbers.ValidationResult.IS_POSSIBLE)


def _possible_length(code: int, national: str) -> bool:
    """``is_possible_number`` for a number without leading zeros: it depends on the calling
    code and the national number's length only, so the answer is cached per pair."""
    key = (code, len(national))
    known = _POSSIBLE.get(key)
    if known is None:
        number = PhoneNumber(country_code=code, national_number=int(national))
        known = _POSSIBLE[key] = _dialable(number)
    return known


#: The first three digits of an E.164 number -> how many of them are its calling code and that
#: code's trunk rules, or None (no calling code): the split depends on those digits only.
_LEADS: dict[str, tuple[int, _Trunk] | None] = {}


def _lead(lead: str) -> tuple[int, _Trunk] | None:
    """Where the calling code of a number starting with ``lead`` ends, and its trunk rules."""
    for split in (1, 2, 3):
        calling = lead[:split]
        if calling in _CALLING_CODES:
            trunk = _TRUNKS.get(calling)
            if trunk is None:
                trunk = _TRUNKS[calling] = _Trunk(_CALLING_CODES[calling])
            return split, trunk
    return None


def _e164_fast(digits: str) -> str | None:
    """Check an already-E.164 number without a full parse; None when a full parse is needed."""
    lead = digits[:3]
    if lead in _LEADS:
        known = _LEADS[lead]
    else:  # at most 900 leads (the first digit is 1 to 9)
        known = _LEADS[lead] = _lead(lead)
    if known is None:
        return ""
    split, trunk = known
    national = digits[split:]
    if national[0] == "0" or trunk.may_strip(national):
        return None  # a trunk prefix may need stripping: leave it to the full parser
    return "+" + digits if _possible_length(trunk.code, national) else None


def e164(raw: str, region: str) -> str:
    """The phone number in E.164 (``+`` country code, national number), or ``""``.

    National formats are read in ``region`` (ISO 3166-1 alpha-2, upper-case); numbers with a
    ``+`` or an international call prefix (such as ``00``) carry their own country. A number
    must be *possible* (a plausible length for its country) to be kept.
    """
    value = raw.strip()
    shaped = _E164_SHAPE.fullmatch(value)
    if shaped is not None:
        fast = _e164_fast(shaped.group(1))
        if fast is not None:
            return fast
    try:
        number = phonenumbers.parse(value, region)
    except NumberParseException:
        return ""
    if not _dialable(number):
        return ""
    return str(phonenumbers.format_number(number, PhoneNumberFormat.E164))


def meta_phone(raw: str, region: str) -> str:
    """Meta ``PHONE``: digits only, country code first, no ``+`` and no leading zeros."""
    international = e164(raw, region)
    return international[1:] if international else ""


# --- country, region ---------------------------------------------------------------------


def country_code(raw: str) -> str:
    """The ISO 3166-1 alpha-2 code, upper-case, or ``""`` if not an assigned code."""
    value = raw.strip().upper()
    return value if value in ISO_ALPHA2 else ""


def meta_country(raw: str, region: str = "") -> str:
    """Meta ``COUNTRY``: the ISO 3166-1 alpha-2 code in lower case."""
    return country_code(raw).lower()


def google_country(raw: str, region: str = "") -> str:
    """Google ``Country`` (sent unhashed): the ISO 3166-1 alpha-2 code, upper-case."""
    return country_code(raw)


def region_for(country: str | None, default_region: str) -> str:
    """The region that rules a profile's phone, state and zip: its country, else the default."""
    if country:
        code = country_code(country)
        if code:
            return code
    return default_region


# --- names, places ----------------------------------------------------------------------


def meta_name(raw: str, region: str = "") -> str:
    """Meta ``FN``/``LN``: see :func:`cdp.exports.formats.text.fold_name`."""
    return fold_name(raw)


def meta_city(raw: str, region: str = "") -> str:
    """Meta ``CT``: lower-case ``a`` to ``z`` only (accents folded, spaces removed)."""
    return fold_place(raw)


# --- state, zip --------------------------------------------------------------------------

_US_ZIP = re.compile(r"([0-9]{5})(?:-?([0-9]{4}))?")
_UK_POSTCODE = re.compile(r"([a-z]{1,2}[0-9][a-z0-9]?)([0-9])(?:[a-z]{2})?")
_POSTAL_CODE = re.compile(r"[0-9A-Z][0-9A-Z -]{0,8}[0-9A-Z]")


def meta_state(raw: str, region: str) -> str:
    """Meta ``ST``: US states as their 2-letter code; elsewhere lower-case ``a`` to ``z`` only."""
    value = fold_place(raw)
    if region != "US":
        return value
    if value in US_STATE_CODE_SET:
        return value
    return US_STATE_CODES.get(value, "")


def meta_zip(raw: str, region: str) -> str:
    """Meta ``ZIP``: lower-case, no whitespace; US: the first 5 digits; UK: the sector
    (outward code and the first digit of the inward code, e.g. ``sw1a1``)."""
    value = "".join(raw.split()).lower()
    if region == "US":
        us = _US_ZIP.fullmatch(value)
        return us.group(1) if us else ""
    if region == "GB":
        uk = _UK_POSTCODE.fullmatch(value)
        return uk.group(1) + uk.group(2) if uk else ""
    return value


def google_zip(raw: str, region: str) -> str:
    """Google ``Zip`` (sent unhashed): US ``12345`` or ``12345-6789``; elsewhere the postal
    code trimmed, upper-cased, inner whitespace collapsed."""
    value = " ".join(raw.split()).upper()
    if region == "US":
        us = _US_ZIP.fullmatch(value)
        if us is None:
            return ""
        return f"{us.group(1)}-{us.group(2)}" if us.group(2) else us.group(1)
    return value if _POSTAL_CODE.fullmatch(value) else ""


# --- gender, birthday --------------------------------------------------------------------

_GENDERS = {
    "m": "m",
    "male": "m",
    "man": "m",
    "男": "m",
    "f": "f",
    "female": "f",
    "woman": "f",
    "女": "f",
}


def meta_gender(raw: str, region: str = "") -> str:
    """Meta ``GEN``: ``m`` or ``f``; any other value is not usable."""
    return _GENDERS.get(raw.strip().lower(), "")


def birth_date(value: date | str, today: date) -> date | None:
    """The birthday as a date between 1900-01-01 and ``today``, or None if unusable."""
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value.strip())
        except ValueError:
            return None
    elif isinstance(value, datetime):
        value = value.date()
    if value.year < 1900 or value > today:
        return None
    return value
