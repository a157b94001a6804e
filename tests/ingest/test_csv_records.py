"""CSV records are parsed one by one: a stray quote costs its own record, never the rest."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.ingest import csv_records
from cdp.ingest.csv_records import csv_rows
from cdp.ingest.pipeline import ingest_file
from cdp.ingest.readers import read_csv
from tests.conftest import CdpEnv
from tests.ingest.helpers import count


def _rows(data: bytes, limit: int = 1 << 20) -> list[tuple[int, Any, str]]:
    return [(n, row, reason) for n, row, reason, _ in csv_rows(io.BytesIO(data), limit=limit)]


def _csv_module(text: str) -> list[tuple[int, list[str]]]:
    """Python's csv module (strict): (first line, cells) per non-blank record."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    out, before = [], 0
    for row in reader:
        if row:
            out.append((before + 1, row))
        before = reader.line_num
    return out


_UNQUOTED = st.text(alphabet='ab "', min_size=1, max_size=6).filter(lambda s: s[0] != '"')
_QUOTED = st.text(alphabet='ab,"\n ', max_size=8).map(lambda s: '"' + s.replace('"', '""') + '"')


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 3).flatmap(
        lambda w: st.lists(st.lists(_UNQUOTED | _QUOTED, min_size=w, max_size=w), max_size=12)
    )
)
def test_records_are_what_the_csv_module_reads(rows: list[list[str]]) -> None:
    """Quotes inside unquoted fields are literal, quoted fields span lines: as csv reads them."""
    text = "".join(",".join(row) + "\n" for row in rows)
    expected = _csv_module(text)
    got = _rows(text.encode())
    assert [(n, row) for n, row, _ in got] == expected


def test_a_quote_inside_an_unquoted_field_is_literal() -> None:
    text = 'customer_id,email,note\nC1,a1@example.com,likes 27" monitors\n' + "".join(
        f"C{i},a{i}@example.com,ok\n" for i in range(2, 51)
    )
    got = list(read_csv(io.BytesIO(text.encode()), mapping={}, limit=1 << 20))
    assert [r.line for r in got] == list(range(2, 51 + 1))
    assert all(r.error is None for r in got)
    assert got[0].data is not None and got[0].data["note"] == 'likes 27" monitors'


_PLAIN = st.text(alphabet="ab ", min_size=1, max_size=5)
_GARBAGE = st.text(alphabet='a,"\n ', max_size=60).map(lambda s: s.replace("\n", ""))


@settings(max_examples=400, deadline=None)
@given(
    st.integers(1, 3).flatmap(
        lambda w: st.lists(st.lists(_PLAIN, min_size=w, max_size=w), min_size=1, max_size=30)
    ),
    _GARBAGE,
    st.integers(0, 30),
    st.sampled_from([40, 1 << 20]),
)
def test_one_broken_line_costs_at_most_its_own_record(
    rows: list[list[str]], garbage: str, where: int, limit: int
) -> None:
    """Whatever one line holds (unbalanced quotes included; over the limit or not), every other
    record is still read, with its own line number."""
    lines = [",".join(row) for row in rows]
    where = 1 + where % len(lines)  # after the header
    lines.insert(where, garbage)
    got = _rows(("\n".join(lines) + "\n").encode(), limit=limit)
    garbage_line = where + 1
    others = [(n, row) for n, row, _ in got if n != garbage_line]
    expected = [(i + 1, row) for i, row in enumerate(rows) if i + 1 < garbage_line]
    expected += [(i + 2, row) for i, row in enumerate(rows) if i + 1 >= garbage_line]
    assert others == expected
    assert len(got) - len(others) <= 1


def test_an_unterminated_quote_is_rejected_at_its_line_and_reading_goes_on() -> None:
    data = b'a,b\n1,"oops\n2,x\n3,y\n'
    assert _rows(data) == [
        (1, ["a", "b"], ""),
        (2, None, "invalid_csv"),
        (3, ["2", "x"], ""),
        (4, ["3", "y"], ""),
    ]


def test_a_stray_quote_before_a_quoted_field_spanning_lines_leaves_that_field_whole() -> None:
    data = b'a,b\n1,"oops\n2,x\n3,"multi\nline"\n4,y\n'
    assert _rows(data) == [
        (1, ["a", "b"], ""),
        (2, None, "invalid_csv"),
        (3, ["2", "x"], ""),
        (4, ["3", "multi\nline"], ""),
        (6, ["4", "y"], ""),
    ]


def test_a_record_joined_by_a_stray_quote_into_the_wrong_width_is_read_again() -> None:
    data = b'a,b,c\nC1,x,"oops\nC2,y,fine\nC3,27",z\nC4,w,v\n'
    assert _rows(data) == [
        (1, ["a", "b", "c"], ""),
        (2, None, "invalid_csv"),
        (3, ["C2", "y", "fine"], ""),
        (4, ["C3", '27"', "z"], ""),
        (5, ["C4", "w", "v"], ""),
    ]


def test_a_quoted_field_whose_first_line_is_over_the_limit_keeps_its_quote() -> None:
    """The line is skipped in bounded reads but its quote is followed: the field's later lines
    belong to the rejected record, and the records after it are read."""
    data = b'a,b\n1,"' + b"x" * 5000 + b'\nmore, text\nend of it",\n2,ok\n3,ok\n'
    assert _rows(data, limit=1000) == [
        (1, ["a", "b"], ""),
        (2, None, "record_too_large"),
        (5, ["2", "ok"], ""),
        (6, ["3", "ok"], ""),
    ]


def test_a_quoted_field_longer_than_the_limit_is_one_reject() -> None:
    data = b'a,b\n1,"' + b"".join(b"line %d\n" % i for i in range(150)) + b'end"\n2,ok\n'
    got = _rows(data, limit=1000)
    assert got == [(1, ["a", "b"], ""), (2, None, "record_too_large"), (153, ["2", "ok"], "")]


def test_a_stray_quote_holds_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("wb") as fh:
        fh.write(b'id,note\n1,"stray\n')
        for i in range(120_000):
            fh.write(b"%d,plain note\n" % i)
    limit = 64 * 1024
    tracemalloc.start()
    try:
        with path.open("rb") as fh:
            good = sum(1 for _, row, _, _ in csv_rows(fh, limit=limit) if row is not None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert good == 1 + 120_000
    assert peak < 40 * limit, peak  # the file is ~2 MB: held lines are bounded by the limit


def test_reading_stays_linear_when_quotes_keep_reopening(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines that reopen a quote after closing one: each line is handed to csv a few times at
    most, not once per earlier line."""
    lines = 20_000
    data = b'a,b\n1,"x\n' + b'a",x,"b\n' * lines
    calls = [0]
    original = csv_records._Feed.__next__

    def counting(self: Any) -> str:
        calls[0] += 1
        return original(self)

    monkeypatch.setattr(csv_records._Feed, "__next__", counting)
    got = _rows(data, limit=4096)
    assert len(got) == 1 + 1 + lines
    assert calls[0] < 4 * lines


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_ingest_reads_every_row_after_a_quote_inside_a_field(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rows = "".join(f"C{i},a{i}@example.com,ok\n" for i in range(2, 51))
    path = _write(
        tmp_path / "customers.csv",
        'customer_id,email,note\nC1,a1@example.com,likes 27" monitors\n' + rows,
    )
    summary = ingest_file(runtime=cdp_env.runtime, kind="customers", path=path)
    assert (summary.read, summary.inserted, summary.rejected) == (50, 50, 0)
    assert count(cdp_env.runtime, "subjects") == 50


def test_ingest_rejects_only_the_row_with_an_unbalanced_quote(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rows = "".join(f"C{i},a{i}@example.com,ok\n" for i in range(2, 51))
    path = _write(
        tmp_path / "customers.csv",
        'customer_id,email,note\nC1,a1@example.com,"likes 27 monitors\n' + rows,
    )
    summary = ingest_file(runtime=cdp_env.runtime, kind="customers", path=path)
    assert (summary.read, summary.inserted, summary.rejected) == (50, 49, 1)
    assert summary.rejects_path is not None
    rejects = [json.loads(line) for line in summary.rejects_path.read_text().splitlines()]
    assert rejects == [
        {"line": 2, "reason": "invalid_csv", "fields": [], "message": "unterminated quote"}
    ]
    assert count(cdp_env.runtime, "subjects") == 49
