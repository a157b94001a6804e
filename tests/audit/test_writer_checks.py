"""The append's value checks: remembering identifiers already seen never admits a value the
pattern refuses, and the answer does not change on a second look."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.audit.writer import check_entry
from tests.audit.factories import make_entry

NAME = re.compile(r"[A-Za-z0-9_.:/@*-]{1,64}")  # fullmatch: no trailing newline either
LONGEST = {"action": 32}  # the column's size (a role list has its own total, not reached here)
BASE = make_entry()
NAMES = st.one_of(
    st.text(max_size=70),
    st.from_regex(NAME, fullmatch=True),
    st.sampled_from(["ann@example.com", "Ann Smith", "", "x" * 65, "email", "x" * 33, "ok\n"]),
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
    allowed = NAME.fullmatch(value) is not None and len(value) <= LONGEST.get(slot, 64)
    for _ in range(2):
        if allowed:
            assert check_entry(entry) is entry
        else:
            with pytest.raises(ValueError):
                check_entry(entry)


ID = re.compile(r"[0-9a-f]{32}")
IDS = st.one_of(
    st.from_regex(ID, fullmatch=True),
    st.text(alphabet="0123456789abcdefABCDEF,\n @", min_size=30, max_size=34),
    st.sampled_from(["a" * 32 + "\n", "A" * 32, "a" * 31, "a" * 33, "a" * 16 + "," + "a" * 15]),
)


@settings(max_examples=300, deadline=None)
@given(ids=st.lists(IDS, max_size=6))
def test_a_record_is_refused_when_any_subject_id_is_not_a_cdp_id(ids: list[str]) -> None:
    """All of a record's ids are checked at once; the answer is the per-id rule's: every id is
    exactly 32 lower-case hex digits (no trailing newline, no comma smuggling two in one)."""
    entry = replace(BASE, subject_ids=tuple(ids))
    if all(ID.fullmatch(s) for s in ids):
        assert check_entry(entry) is entry
    else:
        with pytest.raises(ValueError, match="subject ids"):
            check_entry(entry)
