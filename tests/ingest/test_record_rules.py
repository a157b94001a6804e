"""Record rules: nested objects must be objects."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cdp.ingest.records import CustomerRecord

CONTEXT: dict[str, Any] = {"currencies": frozenset({"USD", "CNY"}), "default_region": "US"}


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["address", "traits"]), _JSON, st.booleans())
def test_any_json_address_or_traits_is_read_or_rejected_never_an_error(
    key: str, value: Any, flat_city: bool
) -> None:
    data: dict[str, Any] = {"customer_id": "C1", key: value}
    if flat_city:
        data["city"] = "Springfield"
    try:
        record = CustomerRecord.model_validate(data, context=CONTEXT)
    except ValidationError as exc:
        if not isinstance(value, dict) and value is not None and value != "":
            locs = {e["loc"][0] for e in exc.errors(include_url=False, include_input=False)}
            assert key in locs
        return
    assert value is None or value == "" or isinstance(value, dict)
    if flat_city:
        assert record.address is not None and record.address.city == "Springfield"
