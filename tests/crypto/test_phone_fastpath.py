"""The phone fast path gives exactly what ``phonenumbers.parse`` gives, or steps aside."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.crypto.normalize import _fast_phone, _possible_and_valid, normalize_phone
from cdp.errors import NormalizationError


def _reference(raw: str, region: str) -> str | None:
    """The full parse, as normalize_phone did before the fast path (None: refused)."""
    value = raw.strip()
    if value.startswith("00"):
        value = "+" + value[2:]
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _normalized(raw: str, region: str) -> str | None:
    try:
        return normalize_phone(raw, default_region=region)
    except NormalizationError:
        return None


TABLE = [
    ("(215) 659-4953", "US", True),
    ("215.659.4953", "US", True),
    ("215-659-4953", "US", True),
    ("1 215 659 4953", "US", False),  # national prefix: full parse
    ("011 44 20 7946 0958", "US", False),  # international prefix: full parse
    ("+1 215 659 4953", "US", False),  # spaced international form: full parse
    ("+12156594953", "US", True),
    ("+12156594953", "CN", True),
    ("+8613912345678", "US", True),
    ("139 1234 5678", "CN", True),
    ("13912345678", "CN", True),
    ("008613912345678", "US", True),  # 00 is read as +
    ("0086 139 1234 5678", "US", False),  # spaced international form: full parse
    ("+442079460958", "US", True),
    ("020 7946 0958", "GB", True),  # trunk 0 stripped as parse strips it
    ("030 901820", "DE", True),
    ("06 12 34 56 78", "FR", True),
    ("080-2013-6001", "JP", True),
    ("+390612345678", "US", False),  # Italian leading zero: full parse
    ("+49 30 901820", "DE", False),
    ("03-1234-5678", "JP", True),
    ("0 12", "GB", False),  # too short once the trunk prefix is stripped
    ("+1 000", "US", False),
    ("12", "US", False),
    ("555-0100", "US", False),
    ("+999123456789", "US", False),  # unassigned country code
    ("(215) 659-4953", "ZZ", False),  # unknown region
]


@pytest.mark.parametrize(("raw", "region", "fast"), TABLE)
def test_table_matches_phonenumbers(raw: str, region: str, fast: bool) -> None:
    value = raw.strip()
    if value.startswith("00"):
        value = "+" + value[2:]
    got = _fast_phone(value, region)
    assert (got is not None) == fast
    assert _normalized(raw, region) == _reference(raw, region)
    if got is not None:
        assert got == _reference(raw, region)


_REGIONS = st.sampled_from(["US", "CA", "CN", "GB", "DE", "JP", "FR", "IT", "BR", "IN", "ZZ"])
_digits = st.text(alphabet="0123456789", min_size=1, max_size=15)
_phones = st.one_of(
    _digits.map(lambda d: "+" + d),
    _digits,
    st.tuples(_digits, _digits, _digits).map(lambda t: f"({t[0]}) {t[1]}-{t[2]}"),
    st.tuples(_digits, _digits).map(lambda t: f"{t[0]}.{t[1]}"),
    st.tuples(st.sampled_from(["1", "86", "44", "49", "81", "39", "55"]), _digits).map(
        lambda t: f"+{t[0]}{t[1]}"
    ),
    st.text(alphabet="0123456789 +-().x", max_size=20),
)


@settings(max_examples=1500, deadline=None)
@given(_phones, _REGIONS)
def test_fast_path_agrees_with_phonenumbers(raw: str, region: str) -> None:
    value = raw.strip()
    got = _fast_phone(value, region) if value else None
    if got is not None:
        assert got == _reference(raw, region)
    assert _normalized(raw, region) == _reference(raw, region)


def _library_valid(code: int, national: str) -> bool:
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
    return phonenumbers.is_possible_number(number) and phonenumbers.is_valid_number(number)


def _examples() -> list[tuple[int, str]]:
    """The library's example number of every type of every region and non-geographic code
    (those without an Italian leading zero: the fast path never checks those)."""
    types = [t for t in vars(phonenumbers.PhoneNumberType).values() if isinstance(t, int)]
    found = [
        phonenumbers.example_number_for_type(region, t)
        for region in sorted(phonenumbers.SUPPORTED_REGIONS)
        for t in types
    ]
    found += [
        phonenumbers.example_number_for_non_geo_entity(code)
        for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS)
    ]
    return sorted(
        {
            (n.country_code, str(n.national_number))
            for n in found
            if n and not n.italian_leading_zero
        }
    )


EXAMPLES = _examples()
_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


def test_validity_check_agrees_on_every_example_number() -> None:
    assert len(EXAMPLES) > 900
    assert [e for e in EXAMPLES if _possible_and_valid(*e) != _library_valid(*e)] == []
    assert all(_possible_and_valid(*e) for e in EXAMPLES if _library_valid(*e))


@st.composite
def _near_examples(draw: st.DrawFn) -> tuple[int, str]:
    """An example number with a few digits changed, added or dropped (mostly near-valid
    numbers: the patterns' edges), or random digits under any calling code."""
    if draw(st.booleans()):
        code = draw(st.sampled_from(_CODES))
        digits = draw(st.text(alphabet="0123456789", min_size=1, max_size=16))
        return code, str(draw(st.integers(1, 9))) + digits
    code, national = draw(st.sampled_from(EXAMPLES))
    digits = list(national)
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["set", "add", "drop"]))
        i = draw(st.integers(0, len(digits) - 1))
        if op == "set":
            digits[i] = draw(st.sampled_from("0123456789"))
        elif op == "add":
            digits.insert(i, draw(st.sampled_from("0123456789")))
        elif len(digits) > 1:
            del digits[i]
    if digits[0] == "0":
        digits[0] = draw(st.sampled_from("123456789"))
    return code, "".join(digits)


@settings(max_examples=3000, deadline=None)
@given(_near_examples())
def test_validity_check_agrees_with_phonenumbers(number: tuple[int, str]) -> None:
    assert _possible_and_valid(*number) == _library_valid(*number)


def _national_forms() -> list[tuple[str, str]]:
    """Every region's example numbers as its people write them (national format, trunk prefix
    included), and as bare digits."""
    types = [t for t in vars(phonenumbers.PhoneNumberType).values() if isinstance(t, int)]
    out = set()
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for t in types:
            number = phonenumbers.example_number_for_type(region, t)
            if number is None:
                continue
            text = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
            out.add((text, region))
            out.add(("".join(c for c in text if c.isdigit()), region))
    return sorted(out)


NATIONAL_FORMS = _national_forms()


def test_national_forms_of_every_region_match_phonenumbers() -> None:
    fast = 0
    for raw, region in NATIONAL_FORMS:
        got = _fast_phone(raw.strip(), region)
        expected = _reference(raw, region)
        if got is not None:
            fast += 1
            assert got == expected, (raw, region)
        assert _normalized(raw, region) == expected, (raw, region)
    assert fast > len(NATIONAL_FORMS) // 2  # the fast path takes most of them


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(NATIONAL_FORMS), st.integers(0, 30), st.sampled_from("0123456789"))
def test_national_forms_with_a_digit_changed_match_phonenumbers(
    form: tuple[str, str], at: int, digit: str
) -> None:
    raw, region = form
    places = [i for i, c in enumerate(raw) if c.isdigit()]
    i = places[at % len(places)]
    raw = raw[:i] + digit + raw[i + 1 :]
    got = _fast_phone(raw.strip(), region)
    if got is not None:
        assert got == _reference(raw, region)
    assert _normalized(raw, region) == _reference(raw, region)
