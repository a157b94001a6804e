"""The streaming readers never fail on arbitrary bytes and account for every line."""

from __future__ import annotations

import io
import json
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.ingest.money import Converter, to_minor
from cdp.ingest.readers import read_csv, read_jsonl
from cdp.ingest.records import OrderRecord


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=80).filter(lambda b: b"\n" not in b and b"\r" not in b),
                max_size=30))  # fmt: skip
def test_jsonl_reader_reports_every_nonblank_line_once(lines: list[bytes]) -> None:
    data = b"\n".join(lines) + b"\n"
    out = list(read_jsonl(io.BytesIO(data), mapping={}, limit=64))
    if lines:  # a byte order mark opening the file is not part of the first line
        lines = [lines[0].removeprefix(b"\xef\xbb\xbf"), *lines[1:]]
    expected = [i + 1 for i, line in enumerate(lines) if line.strip()]
    assert [r.line for r in out] == expected
    for r, line in zip(out, [x for x in lines if x.strip()], strict=True):
        assert (r.data is None) != (r.error is None)
        if len(line) > 64:
            assert r.error == "record_too_large"


def _json_module_reading(line: bytes) -> tuple[str | None, object]:
    """What the json module makes of one line: (error code, value)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8", None
    try:
        value = json.loads(text)
    except ValueError:
        return "invalid_json", None
    return (None, value) if isinstance(value, dict) else ("invalid_json", None)


_JSONISH = st.one_of(
    st.sampled_from(
        [
            b'{"a": NaN, "b": Infinity}',
            b'{"big": 123456789012345678901234567890}',
            b'{"s": "\\ud800"}',
            b'{"s": "caf\xc3\xa9", "n": 1.5e300}',
            b'{"bad": "\xff"}',
            b"\xef\xbb\xbf{}",
            b'{"a": 1, "a": 2}',
            b"[1, 2]",
            b'{"a": 1',
        ]
    ),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=8,
    ).map(lambda v: json.dumps({"v": v}).encode()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_JSONISH, min_size=1, max_size=8))
def test_jsonl_reader_reads_lines_as_the_json_module_does(lines: list[bytes]) -> None:
    out = list(read_jsonl(io.BytesIO(b"\n".join(lines) + b"\n"), mapping={}, limit=1 << 20))
    assert len(out) == len(lines)
    for i, (record, line) in enumerate(zip(out, lines, strict=True)):
        if i == 0:
            line = line.removeprefix(b"\xef\xbb\xbf")  # a byte order mark opening the file
        error, value = _json_module_reading(line)
        assert record.error == error
        if error is None:
            assert repr(record.data) == repr(value)  # same types, NaN included


# "\r" alone is excluded: Python's csv writer leaves it unquoted with a "\n" line terminator,
# so its own output is ambiguous to every reader
_CELL = st.text(alphabet=st.characters(blacklist_characters="\r"), max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_CELL, min_size=2, max_size=2), max_size=20))
def test_csv_reader_round_trips_what_csv_writes(rows: list[list[str]]) -> None:
    import csv

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["a", "b"])
    writer.writerows(rows)
    raw = buf.getvalue().encode("utf-8", "surrogatepass")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return  # surrogates are not UTF-8 text; covered by the invalid_utf8 tests
    out = list(read_csv(io.BytesIO(raw), mapping={}, limit=10_000))
    good = [r.data for r in out if r.data is not None]
    assert good == [{"a": a, "b": b} for a, b in rows]
    assert all(r.error is None for r in out)


def test_oversize_line_is_skipped_without_reading_it_whole() -> None:
    data = b'{"a": 1}\n' + b"x" * 5_000_000 + b'\n{"b": 2}\n'
    out = list(read_jsonl(io.BytesIO(data), mapping={}, limit=1024))
    assert [(r.line, r.error) for r in out] == [(1, None), (2, "record_too_large"), (3, None)]


@given(st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False))
def test_minor_units_are_exact(amount: Decimal) -> None:
    assert to_minor(amount, "USD") == int(amount * 100)
    value = Converter({"CNY": 1.0, "USD": 7.1}, "CNY").value_base(to_minor(amount, "USD"), "USD")
    assert abs(value - float(amount) * 7.1) <= 1e-4 + 1e-12 * float(amount)


def test_order_record_items_from_a_csv_cell() -> None:
    r = OrderRecord.model_validate(
        {"order_id": "O1", "customer_id": "C1", "ordered_at": "2025-01-01T00:00:00",
         "total": "3", "currency": "usd", "items": json.dumps([{"price": "1.5", "quantity": 2}])},
    )  # fmt: skip
    assert r.currency == "USD" and r.items[0].quantity == 2
    assert r.ordered_at.tzinfo is not None


def test_a_byte_order_mark_opening_a_jsonl_file_is_not_part_of_its_first_record() -> None:
    data = b'\xef\xbb\xbf{"customer_id": "C1"}\n{"customer_id": "C2"}\n'
    out = list(read_jsonl(io.BytesIO(data), mapping={}, limit=1 << 20))
    assert [(r.line, r.error, r.data) for r in out] == [
        (1, None, {"customer_id": "C1"}),
        (2, None, {"customer_id": "C2"}),
    ]
    # only at the start of the file: elsewhere it is not JSON
    out = list(read_jsonl(io.BytesIO(b"{}\n\xef\xbb\xbf{}\n"), mapping={}, limit=1 << 20))
    assert [r.error for r in out] == [None, "invalid_json"]


def test_a_first_line_over_the_limit_with_a_byte_order_mark_is_one_reject() -> None:
    data = b'\xef\xbb\xbf{"a": "' + b"x" * 60 + b'"}\n{}\n'
    out = list(read_jsonl(io.BytesIO(data), mapping={}, limit=64))
    assert [(r.line, r.error) for r in out] == [(1, "record_too_large"), (2, None)]
