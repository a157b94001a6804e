"""The append's shortcuts give exactly what they replace: the canonical time text, the stored
subject-id list, and the SQLite text of a record time (what ``Connection.execute`` stores)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from cdp.audit.chain import format_at, list_text
from cdp.audit.writer import LOG, _at_text, _faster, _subjects_text

ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-9, minutes=-30))]
)
TIMES = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONES)


@settings(max_examples=500, deadline=None)
@given(at=TIMES)
def test_the_time_text_is_format_at(at: datetime) -> None:
    assert _at_text(at) == format_at(at)


@settings(max_examples=300, deadline=None)
@given(ids=st.lists(st.text(alphabet="0123456789abcdef", min_size=32, max_size=32), max_size=5))
def test_the_subject_ids_text_is_list_text(ids: list[str]) -> None:
    assert _subjects_text(tuple(ids)) == list_text(ids)


@settings(max_examples=500, deadline=None)
@given(at=TIMES)
def test_the_stored_time_is_what_the_column_type_stores(at: datetime) -> None:
    dialect = sqlite.dialect()
    original = LOG.c["at"].type.dialect_impl(dialect).bind_processor(dialect)
    faster = _faster(original)
    assert faster is not original  # the shortcut is in use for the record time
    assert faster is not None and original is not None
    assert faster(at) == original(at)


def test_a_processor_that_differs_is_kept() -> None:
    def other(value: object) -> object:
        return f"<{value}>"

    assert _faster(other) is other
    assert _faster(None) is None
