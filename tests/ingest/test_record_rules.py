"""Record rules: times are ISO 8601 text, never epoch numbers; nested objects are objects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from cdp.consent.service import CLOCK_SKEW
from cdp.ingest.customer_record import CustomerRecord
from cdp.ingest.fast_customer import fast_customer
from cdp.ingest.fastpath import fast_order
from cdp.ingest.records import ConsentRecord, EventRecord, OrderRecord
from cdp.ingest.segment_messages import SegmentMessage
from tests.ingest.helpers import customer, fast_matches_model, order

CONTEXT: dict[str, Any] = {
    "currencies": frozenset({"USD", "CNY"}),
    "default_region": "US",
    "latest_time": datetime.now(UTC) + CLOCK_SKEW,
}

_RECORDS: list[tuple[type[BaseModel], str, dict[str, Any]]] = [
    (OrderRecord, "ordered_at", {**order(1), "items": []}),
    (CustomerRecord, "created_at", customer(1)),
    (CustomerRecord, "birthday", customer(1)),
    (ConsentRecord, "occurred_at",
     {"customer_id": "C1", "purpose": "analytics", "status": "granted",
      "occurred_at": "2025-01-01T00:00:00Z"}),
    (EventRecord, "timestamp",
     {"customer_id": "C1", "event": "Viewed", "timestamp": "2025-01-01T00:00:00Z"}),
]  # fmt: skip

_DIGITS = st.one_of(
    st.from_regex(r"\A[+-]?\d{1,14}(\.\d{0,6})?\Z"),
    st.sampled_from(["20240115", "0", "86400", "1705276800", "1705276800.5", " 20240115 "]),
)
_NUMBERS = st.integers(-(10**12), 10**13) | st.floats(-1e12, 1e13, allow_nan=False)


def _rejected_for(model: type[BaseModel], data: dict[str, Any], field: str) -> str:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data, context=CONTEXT)
    errors = info.value.errors(include_url=False, include_input=False)
    assert [e["loc"] for e in errors] == [(field,)]
    return str(errors[0]["msg"])


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(_RECORDS), _DIGITS | _NUMBERS)
def test_a_time_of_digits_or_a_number_is_rejected_not_read_as_unix_seconds(
    record: tuple[type[BaseModel], str, dict[str, Any]], value: Any
) -> None:
    model, field, plain = record
    data = {**plain, field: value}
    message = _rejected_for(model, data, field)
    assert "Unix seconds" in message
    fast = {OrderRecord: fast_order, CustomerRecord: fast_customer}.get(model)
    if fast is not None:
        assert fast(data, CONTEXT) is None
        fast_matches_model(fast, model, data, CONTEXT)


def test_iso_times_and_dates_are_still_read() -> None:
    for model, field, plain in _RECORDS:
        value = "1990-04-01" if field == "birthday" else "2024-01-15"
        record = model.model_validate({**plain, field: value}, context=CONTEXT)
        assert str(getattr(record, field)).startswith("1990-04-01" if field == "birthday" else
                                                      "2024-01-15")  # fmt: skip


@pytest.mark.parametrize("field", ["timestamp", "originalTimestamp", "sentAt"])
def test_segment_message_times_are_not_read_as_unix_seconds(field: str) -> None:
    with pytest.raises(ValidationError):
        SegmentMessage.model_validate({"type": "track", "userId": "u", "event": "e",
                                       field: "20240115"})  # fmt: skip
    ok = SegmentMessage.model_validate(
        {"type": "track", "userId": "u", "event": "e", field: "2024-01-15T00:00:00Z"}
    )
    assert ok.model_dump()[{"originalTimestamp": "original_timestamp",
                            "sentAt": "sent_at"}.get(field, field)].year == 2024  # fmt: skip


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


def _absent(value: Any) -> bool:
    """null, or a blank string (an empty CSV cell)."""
    return value is None or (isinstance(value, str) and not value.strip())


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
        if not (_absent(value) or isinstance(value, dict)):
            locs = {e["loc"][0] for e in exc.errors(include_url=False, include_input=False)}
            assert key in locs
        return
    assert _absent(value) or isinstance(value, dict)
    if flat_city:
        assert record.address is not None and record.address.city == "Springfield"


_FUTURE_FIELDS = [(m, f, p) for m, f, p in _RECORDS if f != "birthday"]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(_FUTURE_FIELDS), st.integers(-(10**6), 10**9))
def test_a_time_ahead_of_the_clock_beyond_the_skew_is_rejected(
    record: tuple[type[BaseModel], str, dict[str, Any]], seconds: int
) -> None:
    """Up to the clock plus CLOCK_SKEW a time is read; past it, rejected — model and fast path."""
    model, field, plain = record
    latest = datetime(2026, 6, 1, 12, tzinfo=UTC)
    context = {**CONTEXT, "latest_time": latest}
    at = latest + timedelta(seconds=seconds)
    if at.year > 2099:
        return
    data = {**plain, field: at.isoformat().replace("+00:00", "Z")}
    fast = {OrderRecord: fast_order, CustomerRecord: fast_customer}.get(model)
    if seconds <= 0:
        assert getattr(model.model_validate(data, context=context), field) == at
        if fast is not None:
            assert fast_matches_model(fast, model, data, context) is not None
        return
    with pytest.raises(ValidationError) as info:
        model.model_validate(data, context=context)
    errors = info.value.errors(include_url=False, include_input=False)
    assert [e["loc"] for e in errors] == [(field,)] and "future" in errors[0]["msg"]
    if fast is not None:
        assert fast(data, context) is None


def test_without_a_clock_in_the_context_now_is_the_clock() -> None:
    grant = {"customer_id": "C1", "purpose": "analytics", "status": "granted"}
    with pytest.raises(ValidationError):
        ConsentRecord.model_validate({**grant, "occurred_at": "2095-01-01T00:00:00Z"})
    soon = datetime.now(UTC) + CLOCK_SKEW - timedelta(seconds=30)
    assert ConsentRecord.model_validate({**grant, "occurred_at": soon}).occurred_at == soon
