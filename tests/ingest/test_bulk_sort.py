"""Bulk inserts sort a batch into index order with a fast key that orders as the tuple would."""

from __future__ import annotations

from operator import itemgetter

from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.ingest.bulk import _sort_key
from tests.conftest import CdpEnv

_text = st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_text, _text, st.integers()), min_size=1, max_size=40))
def test_joined_text_key_orders_exactly_as_the_tuple(rows: list[tuple[str, str, int]]) -> None:
    fast = sorted(rows, key=_sort_key([0, 1], rows[0]))
    assert [r[:2] for r in fast] == [r[:2] for r in sorted(rows, key=itemgetter(0, 1))]


def test_other_keys_are_plain_itemgetters() -> None:
    rows = [(2, "b"), (1, "z"), (1, "a")]
    assert sorted(rows, key=_sort_key([0, 1], rows[0])) == [(1, "a"), (1, "z"), (2, "b")]
    assert sorted(rows, key=_sort_key([1], rows[0])) == [(1, "a"), (2, "b"), (1, "z")]


def test_select_in_reads_rows_and_raises_sqlalchemys_errors(cdp_env: CdpEnv) -> None:
    from datetime import UTC, datetime

    import pytest
    import sqlalchemy as sa

    from cdp.db.models import Subject
    from cdp.ingest.bulk import _sqlite_datetime, insert_tuples, select_in

    table = Subject.__table__  # type: ignore[attr-defined]
    at = datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    ids = [f"s{n:031d}" for n in range(7)]
    with cdp_env.runtime.data_engine.begin() as conn:
        insert_tuples(conn, table, ("id", "created_at", "updated_at"), [(s, at, at) for s in ids])
        got = select_in(conn, table, "id", [*ids[:3], "unknown"], ("id",), chunk=2)
        assert sorted(got) == [(s,) for s in ids[:3]]
        assert all(type(r) is tuple for r in got)
        stored = conn.exec_driver_sql("SELECT created_at FROM subjects LIMIT 1").scalar_one()
        if conn.dialect.name == "sqlite":
            assert stored == "2025-01-02 03:04:05.000006" == _sqlite_datetime(at)
            with pytest.raises(sa.exc.OperationalError):
                select_in(conn, table, "no_such_column", ["x"], ("id",))
