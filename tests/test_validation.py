"""Validation errors name where they happened without echoing keys taken from the input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cdp.validation import UNKNOWN_FIELD, safe_location

KEYS = st.text(min_size=1, max_size=40)


def test_schema_paths_are_kept() -> None:
    assert safe_location(("items", 0, "price")) == "items.0.price"
    assert safe_location(("body", "roles", 1)) == "body.roles.1"
    assert safe_location(("ordered_at",), "datetime_parsing") == "ordered_at"


def test_a_union_members_tag_is_dropped() -> None:
    assert safe_location(("email", "function-after[check(), str]")) == "email"


@given(key=KEYS, tail=st.lists(st.one_of(KEYS, st.integers(0, 9)), max_size=3))
def test_the_path_stops_at_a_free_form_object(key: str, tail: list[int | str]) -> None:
    for container in ("traits", "properties", "context"):
        got = safe_location(("batch", 0, container, key, *tail), "string_type")
        assert got == f"batch.0.{container}"


@given(key=KEYS)
def test_an_unknown_key_is_never_named(key: str) -> None:
    assert safe_location((key,), "extra_forbidden") == UNKNOWN_FIELD
    assert safe_location(("items", 2, key), "extra_forbidden") == f"items.2.{UNKNOWN_FIELD}"


def test_a_key_that_is_not_a_name_is_left_out() -> None:
    where = safe_location(("body", "corrections", "jane.doe@example.com"), "string_type")
    assert where == "body.corrections"
