"""Bulk inserts sort a batch into index order with a fast key that orders as the tuple would."""

from __future__ import annotations

from operator import itemgetter

from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.ingest.bulk import _sort_key

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
