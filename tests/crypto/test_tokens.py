"""Identity normalisation and pseudonymous tokens."""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdp.crypto.normalize import IdentityKind, normalize, normalize_email, normalize_phone
from cdp.crypto.tokens import Tokenizer
from cdp.errors import NormalizationError

K1, K2 = os.urandom(32), os.urandom(32)


def tok(keys: dict[int, bytes] | None = None, region: str = "US") -> Tokenizer:
    return Tokenizer(keys or {1: K1}, current=max(keys or {1: K1}), default_region=region)


def test_email_case_and_whitespace_give_one_token() -> None:
    t = tok()
    a = t.token("email", "  Li.Na@Example.COM ")
    b = t.token("email", "li.na@example.com")
    assert a.value == b.value and a.key_version == 1


def test_another_key_gives_another_token() -> None:
    assert tok().token("email", "a@b.co").value != tok({1: K2}).token("email", "a@b.co").value


def test_kind_is_part_of_the_token() -> None:
    t = tok()
    assert t.token("customer_id", "C1").value != t.token("anonymous_id", "C1").value


@pytest.mark.parametrize(
    ("national", "e164", "region"),
    [
        ("(415) 555-0132", "+14155550132", "US"),
        ("138 0013 8000", "+8613800138000", "CN"),
        ("020 7946 0958", "+442079460958", "GB"),
        ("0044 20 7946 0958", "+442079460958", "US"),
    ],
)
def test_national_phone_and_e164_give_one_token(national: str, e164: str, region: str) -> None:
    t = tok(region=region)
    assert normalize_phone(national, default_region=region) == e164
    assert t.token("phone", national).value == t.token("phone", e164).value


def test_idna_domain() -> None:
    assert normalize_email("Ana@Bücher.DE") == "ana@xn--bcher-kva.de"


@pytest.mark.parametrize("bad", ["", "no-at-sign", "a@", "@b.com", "a b@c.com", "a@b", "a@-b-.com"])
def test_invalid_email_is_refused_without_echoing_it(bad: str) -> None:
    with pytest.raises(NormalizationError) as err:
        normalize_email(bad)
    assert bad.strip() == "" or bad not in str(err.value)


@pytest.mark.parametrize("bad", ["12", "not a phone", "+1 000", "9" * 70])
def test_invalid_phone_is_refused(bad: str) -> None:
    with pytest.raises(NormalizationError):
        normalize_phone(bad, default_region="US")


def test_lookup_tokens_cover_every_key_version() -> None:
    t = Tokenizer({1: K1, 2: K2}, current=2, default_region="US")
    found = t.lookup_tokens(IdentityKind.EMAIL, "x@y.org")
    assert [f.key_version for f in found] == [2, 1]
    assert found[1].value == tok().token("email", "x@y.org").value


def test_values_of_normalized_are_the_tokens_of_every_version_in_order() -> None:
    t = Tokenizer({2: K2, 1: K1, 3: os.urandom(32)}, current=2, default_region="US")
    for kind in IdentityKind:
        values = t.values_of_normalized(kind, "x@y.org")
        assert values == [
            t.token_of_normalized(kind, "x@y.org", version=v).value for v in [1, 2, 3]
        ]
        assert t.values_of_normalized(kind, "x@y.org") == values  # the pre-keyed MACs are copied


def test_token_repr_hides_the_value() -> None:
    t = tok().token("email", "x@y.org")
    assert t.value not in repr(t)


@given(st.emails())
def test_email_normalisation_is_idempotent(email: str) -> None:
    try:
        once = normalize_email(email)
    except NormalizationError:
        return
    assert normalize_email(once) == once
    assert normalize_email(f"  {email.upper()}  ") == once


@given(st.text(max_size=80))
def test_normalisers_never_raise_anything_but_domain_errors(text: str) -> None:
    for kind in IdentityKind:
        with contextlib.suppress(NormalizationError):
            normalize(kind, text, default_region="CN")
