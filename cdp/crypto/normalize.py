"""Normalisers for identity values, applied before tokens are computed.

The same person must give the same token whatever the spelling of the input: an email with other
case or surrounding spaces, a phone number in national or international form. Errors name the kind,
never the value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from typing import Any

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
_LOCAL_PART = re.compile(r"^[^\s@\x00-\x1f\x7f]{1,64}\Z")
_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")


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


_Desc = tuple[frozenset[int], Callable[[str], object]]


def _desc(desc: Any) -> _Desc | None:
    """A number description as the library tests it (``_is_number_matching_desc``): the
    possible lengths (empty: any), then a full match of the pattern; None never matches."""
    if desc is None or not desc.national_number_pattern:
        return None
    return frozenset(desc.possible_length), re.compile(desc.national_number_pattern).fullmatch


class _TypeCheck:
    """``_number_type_helper(national, metadata) != UNKNOWN`` with the patterns compiled once:
    the general description matches and so does one type's (the helper tries them in turn and
    returns the first that matches; mobile only when its pattern differs from fixed line's)."""

    __slots__ = ("general", "types")

    def __init__(self, meta: Any) -> None:
        self.general = _desc(meta.general_desc)
        types = [] if meta.same_mobile_and_fixed_line_pattern else [meta.mobile]
        types += [
            meta.fixed_line,
            meta.premium_rate,
            meta.toll_free,
            meta.shared_cost,
            meta.voip,
            meta.personal_number,
            meta.pager,
            meta.uan,
            meta.voicemail,
        ]  # the order only saves time: any match gives a known type
        self.types = [d for d in map(_desc, types) if d is not None]

    def __call__(self, national: str) -> bool:
        if self.general is None:
            return False
        size = len(national)
        lengths, fullmatch = self.general
        if (lengths and size not in lengths) or fullmatch(national) is None:
            return False
        for lengths, fullmatch in self.types:
            if (not lengths or size in lengths) and fullmatch(national) is not None:
                return True
        return False


class _ValidCheck:
    """``is_possible_number(n) and is_valid_number(n)`` for the numbers of one country calling
    code whose national significant number has no leading zero, with the library's metadata
    read and compiled once (the two calls cost ~25-40 µs a number, mostly re-reading metadata
    and looking patterns up in ``re``'s cache).

    The steps are the library's: possible = the length is one of the main region's possible
    (or local-only) lengths; valid = the number's region (the only one, or the first whose
    leading digits match or, without leading digits, whose types match) has metadata with this
    calling code and the number matches one of its types. Tests compare it with the library on
    generated numbers of every calling code."""

    __slots__ = ("lengths", "regions")

    def __init__(self, code: int) -> None:
        regions: tuple[str, ...] = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]
        main = PhoneMetadata.metadata_for_region_or_calling_code(
            code, phonenumbers.region_code_for_country_code(code)
        )
        general = None if main is None else main.general_desc
        if general is None or not general.possible_length:
            self.lengths: frozenset[int] = frozenset()  # never here: the full parse decides
        else:
            self.lengths = frozenset(general.possible_length) | frozenset(
                general.possible_length_local_only
            )
        # per region in the library's order: how it is picked (leading digits; else, when the
        # calling code has several regions, its own types) and its check (None: never valid)
        self.regions: list[
            tuple[Callable[[str], object] | None, _TypeCheck | None, _TypeCheck | None]
        ] = []
        for region in regions:
            leading, picker = None, None
            if len(regions) > 1:
                meta = PhoneMetadata.metadata_for_region(region.upper(), None)
                if meta is None:
                    continue
                if meta.leading_digits is not None:
                    leading = re.compile(meta.leading_digits).match
                else:
                    picker = _TypeCheck(meta)
            meta = PhoneMetadata.metadata_for_region_or_calling_code(code, region.upper())
            valid = None
            if meta is not None and (
                region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY
                or code == phonenumbers.country_code_for_valid_region(region)
            ):
                valid = _TypeCheck(meta)
            self.regions.append((leading, picker, valid))

    def __call__(self, national: str) -> bool:
        if len(national) not in self.lengths:
            return False
        for leading, picker, valid in self.regions:
            if leading is not None:
                if leading(national) is None:
                    continue
            elif picker is not None and not picker(national):
                continue
            return valid is not None and valid(national)
        return False


_VALID_CHECKS: dict[int, _ValidCheck] = {}


def _possible_and_valid(code: int, national: str) -> bool:
    """``is_possible_number`` and ``is_valid_number`` of ``+<code><national>`` (``national``
    all ASCII digits, the first not 0, ``code`` a calling code the library knows)."""
    check = _VALID_CHECKS.get(code)
    if check is None:
        check = _VALID_CHECKS[code] = _ValidCheck(code)
    return check(national)


class _Plan:
    """What the fast path reads of one region's metadata (or a calling code's main region's),
    compiled once: the calling code, the international and trunk prefixes, and the steps parse
    takes to strip a trunk prefix (``_maybe_strip_national_prefix_carrier_code``, then the
    length test), which looked up every pattern in ``re``'s cache on every call."""

    __slots__ = (
        "code",
        "code_text",
        "general",
        "international",
        "meta",
        "possible",
        "transform",
        "trunk",
    )

    def __init__(self, meta: Any) -> None:
        self.meta = meta
        self.code: int = meta.country_code
        self.code_text = str(meta.country_code)
        self.international = _match_of(meta.international_prefix)
        self.trunk = _match_of(meta.national_prefix_for_parsing)
        self.transform = bool(meta.national_prefix_transform_rule)
        general = meta.general_desc
        pattern = None if general is None else general.national_number_pattern
        self.general = re.compile(pattern).fullmatch if pattern else None
        # the lengths _test_number_length calls IS_POSSIBLE (none: the full parse decides)
        self.possible: frozenset[int] = (
            frozenset(general.possible_length) - frozenset(general.possible_length_local_only)
            if general is not None
            else frozenset()
        )

    def strip_trunk(self, national: str) -> str | None:
        """``national`` without its trunk prefix ("0" in 020 7946 0958) as parse strips it,
        when parse would keep the stripped digits and their length is possible; ``national``
        itself without a trunk prefix; None when parse could do anything else."""
        if self.trunk is None:
            return national
        match = self.trunk(national)
        if match is None:
            return national
        groups = match.groups()
        if self.transform and (not groups or groups[-1] is not None):
            # a transformation rule applies (a few regions): the library's own step
            _carrier, stripped, _ = _strip_national_prefix(national, self.meta)
        else:
            stripped = national[match.end() :]
            general = self.general
            if general is not None and general(national) is not None and general(stripped) is None:
                return None  # parse keeps the original digits
        if stripped == national or len(stripped) not in self.possible:
            return None
        return stripped


def _match_of(pattern: str | None) -> Callable[[str], re.Match[str] | None] | None:
    return re.compile(pattern).match if pattern else None


_REGION_PLANS: dict[str, _Plan] = {}
_CODE_PLANS: dict[int, _Plan | None] = {}


def _region_plan(region: str) -> _Plan | None:
    plan = _REGION_PLANS.get(region)
    if plan is None:
        meta = PhoneMetadata.metadata_for_region(region, None)
        if meta is None or meta.country_code is None:
            return None  # not cached: regions come from input
        plan = _REGION_PLANS[region] = _Plan(meta)
    return plan


def _code_plan(code: int) -> _Plan | None:
    if code not in _CODE_PLANS:  # the calling codes the library knows: a bounded set
        meta = PhoneMetadata.metadata_for_region_or_calling_code(
            code, phonenumbers.region_code_for_country_code(code)
        )
        _CODE_PLANS[code] = None if meta is None else _Plan(meta)
    return _CODE_PLANS[code]


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
        plan = _code_plan(code)
        national = digits[size:]
    elif _NATIONAL_SHAPE.fullmatch(value):
        plan = _region_plan(region)
        if plan is None:
            return None
        code = plan.code
        national = value.translate(_FORMATTING)
        if (
            plan.international is not None and plan.international(national) is not None
        ) or national.startswith(plan.code_text):
            return None
    else:
        return None
    if plan is None or not 2 <= len(national) <= 17:
        return None
    stripped = plan.strip_trunk(national)
    if not stripped or stripped[0] == "0":
        return None
    if not _possible_and_valid(code, stripped):
        return None  # the full parse decides, and words the error
    return f"+{code}{stripped}"


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
