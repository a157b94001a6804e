"""Egress normalisation and hashing for ad-platform customer lists.

Every expected hash is written as ``sha256("<the normalised string>")`` so that the reader
sees the normalised form each platform is sent.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.exports.audience_formats import (
    PROFILE_FIELDS,
    GoogleCustomerMatch,
    MetaCustomAudience,
    UnknownAudienceFormatError,
    available_formats,
    get_format,
    is_sha256_hex,
)
from cdp.exports.formats import fields
from cdp.exports.formats.google import google_first_name, google_last_name

TODAY = date(2025, 6, 30)
HEX64 = re.compile(r"[0-9a-f]{64}")


def sha256(normalised: str) -> str:
    """The expected egress hash, computed independently of the code under test."""
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


def meta_cell(header: str, profile: dict[str, str | date | None], region: str = "US") -> str:
    fmt = MetaCustomAudience(today=TODAY)
    return fmt.row(profile, default_region=region)[fmt.headers.index(header)]


def google_cell(header: str, profile: dict[str, str | date | None], region: str = "US") -> str:
    fmt = GoogleCustomerMatch()
    return fmt.row(profile, default_region=region)[fmt.headers.index(header)]


# --- registry ----------------------------------------------------------------------------


def test_registry_names_and_factory() -> None:
    assert available_formats() == ("google_customer_match", "meta_custom_audience")
    assert isinstance(get_format("meta_custom_audience"), MetaCustomAudience)
    assert isinstance(get_format("google_customer_match"), GoogleCustomerMatch)
    with pytest.raises(UnknownAudienceFormatError):
        get_format("tiktok")


def test_headers_are_the_platform_file_headers() -> None:
    meta = get_format("meta_custom_audience")
    google = get_format("google_customer_match")
    assert meta.headers == (
        "email", "phone", "fn", "ln", "ct", "st", "zip", "country", "gen", "doby", "dobm", "dobd",
    )  # fmt: skip
    assert MetaCustomAudience.api_schema == tuple(h.upper() for h in meta.headers)
    assert google.headers == ("Email", "Phone", "First Name", "Last Name", "Country", "Zip")
    assert meta.hashed_headers == frozenset(meta.headers)
    assert google.hashed_headers == {"Email", "Phone", "First Name", "Last Name"}


@pytest.mark.parametrize("name", available_formats())
def test_fields_required_cover_every_column_with_profile_fields(name: str) -> None:
    fmt = get_format(name)
    assert set(fmt.fields_required) == set(fmt.headers)
    for needed in fmt.fields_required.values():
        assert needed and set(needed) <= set(PROFILE_FIELDS)


@pytest.mark.parametrize("region", ["Britain", "UK", "ZZ", ""])
def test_bad_default_region_is_refused_without_echoing_it(region: str) -> None:
    with pytest.raises(ValueError, match="default_region") as caught:
        get_format("meta_custom_audience").row({}, default_region=region)
    assert region == "" or region not in str(caught.value)


def test_default_region_is_case_insensitive() -> None:
    profile: dict[str, str | date | None] = {"phone": "020 7946 0958"}
    assert meta_cell("phone", profile, "gb") == sha256("442079460958")


# --- Meta: the table of tricky inputs ----------------------------------------------------

META_CASES = [
    # (column, profile, default region, expected cell)
    ("email", {"email": "  John.Doe@Example.COM \t"}, "US", sha256("john.doe@example.com")),
    ("email", {"email": "john.doe+shop@gmail.com"}, "US", sha256("john.doe+shop@gmail.com")),
    ("email", {"email": "J.Doe@GoogleMail.com"}, "US", sha256("j.doe@googlemail.com")),
    ("phone", {"phone": "(415) 555-0132"}, "US", sha256("14155550132")),
    ("phone", {"phone": "020 7946 0958"}, "GB", sha256("442079460958")),
    ("phone", {"phone": "138 0013 8000"}, "CN", sha256("8613800138000")),
    ("phone", {"phone": "+14155550132"}, "GB", sha256("14155550132")),
    ("phone", {"phone": "+1 (415) 555-0132"}, "CN", sha256("14155550132")),
    ("phone", {"phone": "0044 20 7946 0958"}, "DE", sha256("442079460958")),
    ("phone", {"phone": "020 7946 0958", "country": "GB"}, "US", sha256("442079460958")),
    ("phone", {"phone": "+39 06 1234 5678"}, "US", sha256("390612345678")),
    ("fn", {"first_name": "José"}, "US", sha256("jose")),
    ("fn", {"first_name": "Zoë"}, "US", sha256("zoe")),
    ("fn", {"first_name": "  Mary-Ann "}, "US", sha256("maryann")),
    ("fn", {"first_name": "JOHN"}, "US", sha256("john")),
    ("fn", {"first_name": "\uff2a\uff4f\uff48\uff4e"}, "US", sha256("john")),  # fullwidth
    ("ln", {"last_name": "O'Brien"}, "US", sha256("obrien")),
    ("ln", {"last_name": "Müller-Lüdenscheidt"}, "US", sha256("mullerludenscheidt")),
    ("ln", {"last_name": "Straße"}, "US", sha256("strasse")),
    ("ln", {"last_name": "Nguyễn"}, "US", sha256("nguyen")),
    # Chinese names: Meta lets FN/LN carry non-Roman scripts in UTF-8; cdp keeps them.
    ("fn", {"first_name": "小明"}, "CN", sha256("小明")),
    ("ln", {"last_name": " 王 "}, "CN", sha256("王")),
    ("ln", {"last_name": "阿沛·阿旺晋美"}, "CN", sha256("阿沛阿旺晋美")),
    ("fn", {"first_name": "Владимир"}, "US", sha256("владимир")),
    ("ct", {"city": "São Paulo"}, "BR", sha256("saopaulo")),
    ("ct", {"city": "New York City "}, "US", sha256("newyorkcity")),
    ("st", {"state": "California"}, "US", sha256("ca")),
    ("st", {"state": " NY "}, "US", sha256("ny")),
    ("st", {"state": "New Jersey"}, "US", sha256("nj")),
    ("st", {"state": "Île-de-France", "country": "FR"}, "US", sha256("iledefrance")),
    ("zip", {"postal_code": "94105-1234"}, "US", sha256("94105")),
    ("zip", {"postal_code": "941051234"}, "US", sha256("94105")),
    ("zip", {"postal_code": "SW1A 1AA"}, "GB", sha256("sw1a1")),
    ("zip", {"postal_code": "M5V 3L9", "country": "CA"}, "US", sha256("m5v3l9")),
    ("zip", {"postal_code": "75008", "country": "fr"}, "US", sha256("75008")),
    ("country", {"country": " US "}, "US", sha256("us")),
    ("country", {"country": "gb"}, "US", sha256("gb")),
    ("gen", {"gender": "Female"}, "US", sha256("f")),
    ("gen", {"gender": " M "}, "US", sha256("m")),
    ("gen", {"gender": "男"}, "CN", sha256("m")),
    ("doby", {"birthday": date(1990, 3, 7)}, "US", sha256("1990")),
    ("dobm", {"birthday": date(1990, 3, 7)}, "US", sha256("03")),
    ("dobd", {"birthday": date(1990, 3, 7)}, "US", sha256("07")),
    ("dobm", {"birthday": "1990-11-23"}, "US", sha256("11")),
    # Already hashed: passed through lower-cased, never hashed again.
    ("email", {"email": sha256("john@example.com").upper()}, "US", sha256("john@example.com")),
    ("email", {"email": f" {sha256('john@example.com')} "}, "US", sha256("john@example.com")),
    ("phone", {"phone": sha256("14155550132").upper()}, "US", sha256("14155550132")),
    ("fn", {"first_name": sha256("jose")}, "US", sha256("jose")),
]


@pytest.mark.parametrize(("column", "profile", "region", "expected"), META_CASES)
def test_meta_normalisation(
    column: str, profile: dict[str, str | date | None], region: str, expected: str
) -> None:
    assert meta_cell(column, profile, region) == expected


# --- Google: the table of tricky inputs --------------------------------------------------

GOOGLE_CASES = [
    ("Email", {"email": " John.Doe@Example.COM "}, "US", sha256("john.doe@example.com")),
    ("Email", {"email": "john.doe+shop@gmail.com"}, "US", sha256("johndoe@gmail.com")),
    ("Email", {"email": "J.O.H.N+news+2@GoogleMail.com"}, "US", sha256("john@googlemail.com")),
    ("Email", {"email": "john.doe+shop@example.com"}, "US", sha256("john.doe+shop@example.com")),
    ("Email", {"email": "john.doe@gmail.co.uk"}, "US", sha256("john.doe@gmail.co.uk")),
    ("Email", {"email": "john doe@example.com"}, "US", sha256("johndoe@example.com")),
    ("Phone", {"phone": "(415) 555-0132"}, "US", sha256("+14155550132")),
    ("Phone", {"phone": "020 7946 0958"}, "GB", sha256("+442079460958")),
    ("Phone", {"phone": "138 0013 8000"}, "CN", sha256("+8613800138000")),
    ("Phone", {"phone": "+14155550132"}, "CN", sha256("+14155550132")),
    ("Phone", {"phone": "0044 20 7946 0958"}, "DE", sha256("+442079460958")),
    ("Phone", {"phone": "138 0013 8000", "country": "CN"}, "US", sha256("+8613800138000")),
    ("First Name", {"first_name": "  Jane "}, "US", sha256("jane")),
    ("First Name", {"first_name": "Mrs. Jane"}, "US", sha256("jane")),
    ("First Name", {"first_name": "Mary  Ann"}, "US", sha256("mary ann")),
    ("First Name", {"first_name": "José"}, "US", sha256("josé")),
    ("First Name", {"first_name": "Zoë"}, "US", sha256("zoë")),
    ("First Name", {"first_name": "小明"}, "CN", sha256("小明")),
    ("Last Name", {"last_name": "Smith, Jr."}, "US", sha256("smith")),
    ("Last Name", {"last_name": "Smith,Jr."}, "US", sha256("smith")),
    ("Last Name", {"last_name": "Smith Jr. III"}, "US", sha256("smith")),
    ("Last Name", {"last_name": "Jr."}, "US", sha256("jr.")),
    ("Last Name", {"last_name": "Van Der Berg"}, "US", sha256("van der berg")),
    ("Last Name", {"last_name": " PÉREZ "}, "US", sha256("pérez")),
    ("Last Name", {"last_name": "王"}, "CN", sha256("王")),
    ("Email", {"email": sha256("johndoe@gmail.com").upper()}, "US", sha256("johndoe@gmail.com")),
    # Country and Zip go unhashed.
    ("Country", {"country": " us "}, "US", "US"),
    ("Zip", {"postal_code": "94105"}, "US", "94105"),
    ("Zip", {"postal_code": "94105-1234"}, "US", "94105-1234"),
    ("Zip", {"postal_code": "941051234"}, "US", "94105-1234"),
    ("Zip", {"postal_code": " wc2h  8lg ", "country": "GB"}, "US", "WC2H 8LG"),
    ("Zip", {"postal_code": "100020", "country": "CN"}, "US", "100020"),
]


@pytest.mark.parametrize(("column", "profile", "region", "expected"), GOOGLE_CASES)
def test_google_normalisation(
    column: str, profile: dict[str, str | date | None], region: str, expected: str
) -> None:
    assert google_cell(column, profile, region) == expected


# --- unusable values: empty cell, counted, never raised ----------------------------------


def test_unusable_values_leave_empty_cells_and_are_counted() -> None:
    profile: dict[str, str | date | None] = {
        "email": "not an email",
        "phone": "call me maybe",
        "first_name": "!!!",
        "city": "北京",  # Meta: only FN and LN take non-Roman scripts
        "state": "Narnia",
        "postal_code": "ABC",
        "country": "USA",
        "gender": "unknown",
        "birthday": date(2030, 1, 1),
    }
    meta = MetaCustomAudience(today=TODAY)
    cells, dropped = meta.row_with_drops(profile, default_region="US")
    assert cells == [""] * len(meta.headers)
    assert dropped == (
        "email", "phone", "fn", "ct", "st", "zip", "country", "gen", "doby", "dobm", "dobd",
    )  # fmt: skip
    cells, dropped = GoogleCustomerMatch().row_with_drops(profile, default_region="US")
    assert cells[:2] == ["", ""] and cells[4:] == ["", ""]
    assert dropped == ("Email", "Phone", "Country", "Zip")


def test_missing_or_blank_values_are_empty_but_not_dropped() -> None:
    profile: dict[str, str | date | None] = {"email": "   ", "phone": None, "birthday": ""}
    for fmt in (MetaCustomAudience(today=TODAY), GoogleCustomerMatch()):
        cells, dropped = fmt.row_with_drops(profile, default_region="US")
        assert set(cells) == {""}
        assert dropped == ()


@pytest.mark.parametrize("phone", ["555-1234", "+1 555 1234", "+15551234"])
def test_phone_possible_only_locally_is_dropped(phone: str) -> None:
    """A US number without its area code is dialable only locally: no platform can match it."""
    cells, dropped = MetaCustomAudience().row_with_drops({"phone": phone}, default_region="US")
    assert cells[1] == "" and dropped == ("phone",)
    assert fields.e164(phone, "US") == ""


def test_phone_too_short_for_its_country_is_dropped() -> None:
    cells, dropped = MetaCustomAudience().row_with_drops({"phone": "+44 20"}, default_region="GB")
    assert cells[1] == "" and dropped == ("phone",)


def test_birthdays_before_1900_or_malformed_are_dropped() -> None:
    meta = MetaCustomAudience(today=TODAY)
    for born in (date(1899, 12, 31), "31/12/1990", "1990-02-30"):
        _, dropped = meta.row_with_drops({"birthday": born}, default_region="US")
        assert dropped == ("doby", "dobm", "dobd")


def test_invalid_country_falls_back_to_default_region_for_phone() -> None:
    profile: dict[str, str | date | None] = {"phone": "020 7946 0958", "country": "Great Britain"}
    cells, dropped = MetaCustomAudience().row_with_drops(profile, default_region="GB")
    assert cells[1] == sha256("442079460958")
    assert dropped == ("country",)


def test_a_full_row() -> None:
    profile: dict[str, str | date | None] = {
        "email": "Li.Wei+vip@Gmail.com",
        "phone": "138 0013 8000",
        "first_name": "Wei",
        "last_name": "李",
        "city": "Shanghai",
        "state": "Shanghai",
        "postal_code": "200000",
        "country": "CN",
        "gender": "female",
        "birthday": date(1988, 12, 1),
    }
    assert MetaCustomAudience(today=TODAY).row(profile, default_region="US") == [
        sha256("li.wei+vip@gmail.com"),
        sha256("8613800138000"),
        sha256("wei"),
        sha256("李"),
        sha256("shanghai"),
        sha256("shanghai"),
        sha256("200000"),
        sha256("cn"),
        sha256("f"),
        sha256("1988"),
        sha256("12"),
        sha256("01"),
    ]
    assert GoogleCustomerMatch().row(profile, default_region="US") == [
        sha256("liwei@gmail.com"),
        sha256("+8613800138000"),
        sha256("wei"),
        sha256("李"),
        "CN",
        "200000",
    ]


# --- properties --------------------------------------------------------------------------

REGIONS = st.sampled_from(["US", "GB", "CN", "DE", "FR", "BR", "IT", "JP", "IN"])
PROFILE_VALUES = st.one_of(st.none(), st.text(max_size=40), st.text("+0123456789 -()", max_size=20))
PROFILES = st.fixed_dictionaries(
    {name: PROFILE_VALUES for name in PROFILE_FIELDS if name != "birthday"},
    optional={"birthday": st.one_of(st.none(), st.dates(), st.text(max_size=12))},
)


@settings(max_examples=300, deadline=None)
@given(profile=PROFILES, region=REGIONS)
def test_rows_never_raise_and_cells_are_hashes_or_empty(
    profile: dict[str, str | date | None], region: str
) -> None:
    for name in available_formats():
        fmt = get_format(name, today=TODAY)
        cells, dropped = fmt.row_with_drops(profile, default_region=region)
        assert len(cells) == len(fmt.headers)
        assert set(dropped) <= set(fmt.headers)
        for header, cell in zip(fmt.headers, cells, strict=True):
            if header in fmt.hashed_headers:
                assert cell == "" or HEX64.fullmatch(cell), header
            elif header == "Country":
                assert cell == "" or re.fullmatch(r"[A-Z]{2}", cell)
            else:
                assert cell == "" or re.fullmatch(r"[0-9A-Z][0-9A-Z -]*", cell)


@settings(max_examples=200, deadline=None)
@given(profile=PROFILES, region=REGIONS)
def test_hashing_a_row_twice_changes_nothing(
    profile: dict[str, str | date | None], region: str
) -> None:
    """Feeding a row's hashes back as a profile yields the same hashes: nothing is hashed
    twice (the birthday columns, made from one field, are left out)."""
    columns = {
        "meta_custom_audience": ("email", "phone", "fn", "ln", "ct", "st", "zip", "gen"),
        "google_customer_match": ("Email", "Phone", "First Name", "Last Name"),
    }
    for name, headers in columns.items():
        fmt = get_format(name, today=TODAY)
        cells = dict(zip(fmt.headers, fmt.row(profile, default_region=region), strict=True))
        again: dict[str, str | date | None] = {
            fmt.fields_required[header][0]: cells[header] or None for header in headers
        }
        second = dict(zip(fmt.headers, fmt.row(again, default_region=region), strict=True))
        assert all(second[header] == cells[header] for header in headers)


REGION_FREE_NORMALISERS = [
    fields.meta_email,
    fields.google_email,
    fields.meta_name,
    fields.meta_city,
    fields.meta_country,
    fields.google_country,
    fields.meta_gender,
    google_first_name,
    google_last_name,
]
REGIONAL_NORMALISERS = [fields.meta_state, fields.meta_zip, fields.google_zip, fields.e164]


@settings(max_examples=400, deadline=None)
@given(raw=st.text(max_size=40), region=REGIONS)
def test_normalising_twice_equals_once(raw: str, region: str) -> None:
    for normalise in REGION_FREE_NORMALISERS:
        once = normalise(raw)
        assert normalise(once) == once, normalise.__name__
    for regional in REGIONAL_NORMALISERS:
        once = regional(raw, region)
        assert regional(once, region) == once, regional.__name__


@settings(max_examples=300, deadline=None)
@given(
    digits=st.text("0123456789", min_size=7, max_size=15).filter(lambda d: d[0] != "0"),
    region=REGIONS,
)
def test_e164_shortcut_agrees_with_a_full_parse(digits: str, region: str) -> None:
    try:
        parsed = phonenumbers.parse("+" + digits, region)
    except phonenumbers.NumberParseException:
        expected = ""
    else:
        reason = phonenumbers.is_possible_number_with_reason(parsed)
        possible = reason == phonenumbers.ValidationResult.IS_POSSIBLE  # not local-only
        expected = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        expected = expected if possible else ""
    assert fields.e164("+" + digits, region) == expected


@given(st.text(max_size=80))
def test_only_64_hex_digits_count_as_prehashed(raw: str) -> None:
    assert is_sha256_hex(raw) == bool(re.fullmatch(r"[0-9a-fA-F]{64}", raw))
