"""The append's value checks: remembering identifiers already seen never admits a value the
pattern refuses, and the answer does not change on a second look."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.audit.writer import _checked
from tests.audit.factories import make_entry

NAME = re.compile(r"^[A-Za-z0-9_.:/@*-]{1,64}$")
BASE = make_entry()
NAMES = st.one_of(
    st.text(max_size=70),
    st.from_regex(NAME, fullmatch=True),
    st.sampled_from(["ann@example.com", "Ann Smith", "", "x" * 65, "email"]),
)


@settings(max_examples=300, deadline=None)
@given(value=NAMES, slot=st.sampled_from(["action", "field", "role", "principal_name", "request"]))
def test_checks_match_the_pattern_every_time(value: str, slot: str) -> None:
    changes: dict[str, object] = {
        "action": {"action": value},
        "field": {"fields": (value,)},
        "role": {"roles": (value,)},
        "principal_name": {"principal_name": value},
        "request": {"request_id": value},
    }[slot]  # type: ignore[assignment]
    entry = replace(BASE, **changes)  # type: ignore[arg-type]
    for _ in range(2):
        if NAME.match(value):
            assert _checked(entry) is entry
        else:
            with pytest.raises(ValueError):
                _checked(entry)
