"""orjson is used only where it gives exactly what the json module gives."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.jsonio import NOT_STRICT, compact_size, strict_loads

_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.sampled_from([math.inf, -math.inf, math.nan, 1e16, 1e-7, 1e15])
    | st.text(max_size=6)
    | st.sampled_from(["\ud800", "é中", '"\\\n\x01'])
    | st.integers(min_value=2**63, max_value=2**80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=12,
)


def _exact_size(value: Any) -> int:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return len(text.encode("utf-8", "surrogatepass"))


@settings(max_examples=400, deadline=None)
@given(_values, st.sampled_from([", ", ","]), st.booleans())
def test_strict_loads_is_the_json_modules_reading_or_steps_aside(
    value: Any, separator: str, ascii_only: bool
) -> None:
    raw = json.dumps({"v": value}, separators=(separator, ":"), ensure_ascii=ascii_only)
    try:
        encoded = raw.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate written raw cannot be UTF-8
        return
    got = strict_loads(encoded)
    if got is not NOT_STRICT:
        assert repr(got) == repr(json.loads(encoded))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_strict_loads_steps_aside_on_anything_else(raw: bytes) -> None:
    got = strict_loads(raw)
    if got is not NOT_STRICT:
        assert repr(got) == repr(json.loads(raw))


@settings(max_examples=400, deadline=None)
@given(_values, st.sampled_from([8, 30, 100, 1000]))
def test_compact_size_decides_the_limit_as_json_dumps_would(value: Any, limit: int) -> None:
    exact = _exact_size(value)
    got = compact_size(value, limit)
    assert (got > limit) == (exact > limit)
    if exact * 3 >= limit:
        assert got == exact or got * 3 < limit


def test_worst_case_expansion_is_within_the_margin() -> None:
    value = [-math.inf] * 1000
    assert compact_size(value, 10**6) * 2.25 >= _exact_size(value)
    assert compact_size(value, 10_000) == _exact_size(value)  # near the limit: exact
