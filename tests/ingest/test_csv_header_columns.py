"""A CSV header's columns are settled once, before the first row: a column whose header cell is
blank (a trailing comma: ``order_id,...,currency,``) is ignored while its cells are empty, and a
row with a value there is rejected naming the column's position; a column that names no field of
the record kind (orders, consents, events) stops the run up front, naming its position. Before,
the blank column rejected every row of an orders, consents or events file as an unknown field
(and two blank columns were refused as a repeated name), and an unknown column rejected every
row one by one. Customers keep their rule: any other column is a custom trait."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.clock import FrozenClock
from cdp.errors import InvalidInputError
from cdp.ingest.pipeline import ingest_file
from cdp.ingest.readers import read_csv
from tests.conftest import CdpEnv
from tests.ingest.helpers import CUSTOMER_HEADER, count, customer

EMAIL = "jane.doe@example.com"
CLI = [sys.executable, "-c", "from cdp.cli import main; main()"]

ORDERS = (
    "order_id,customer_id,ordered_at,total,currency,\n"
    "O1,C1,2025-01-01T00:00:00Z,10.00,USD,\n"
    "O2,C2,2025-01-02T00:00:00Z,5.00,USD,\n"
)
CONSENTS = (
    "customer_id,purpose,status,occurred_at,\n"
    "C1,analytics,granted,2025-01-01T00:00:00Z,\n"
    "C2,analytics,withdrawn,2025-01-01T00:00:00Z,\n"
)
EVENTS = (
    "message_id,customer_id,event,timestamp,\n"
    "m1,C1,Viewed,2025-01-01T00:00:00Z,\n"
    "m2,C2,Viewed,2025-01-01T00:00:00Z,\n"
)
CUSTOMERS = "customer_id,email,first_name,\nC1,a@example.com,Ann,\nC2,b@example.com,Bo,\n"
FILES = {"orders": ORDERS, "consents": CONSENTS, "events": EVENTS, "customers": CUSTOMERS}
CLOCK = FrozenClock(datetime(2025, 6, 1, tzinfo=UTC))
"""After the records' times, within every retention window (the real clock would age them)."""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _rejects(path: Path) -> list[dict[str, Any]]:
    target = path.with_name(path.name + ".rejects.jsonl")
    if not target.exists():
        return []
    return [json.loads(line) for line in target.read_text().splitlines()]


@pytest.mark.parametrize("kind", list(FILES))
def test_a_trailing_comma_in_the_header_is_ignored(
    cdp_env: CdpEnv, tmp_path: Path, kind: str
) -> None:
    path = _write(tmp_path, f"{kind}.csv", FILES[kind])
    summary = ingest_file(runtime=cdp_env.runtime, kind=kind, path=path, clock=CLOCK)
    assert (summary.read, summary.rejected, summary.inserted) == (2, 0, 2), summary.reasons


@pytest.mark.parametrize("kind", list(FILES))
def test_several_blank_columns_anywhere_are_ignored(
    cdp_env: CdpEnv, tmp_path: Path, kind: str
) -> None:
    """Blank columns first, between and last (tab-separated too); blank header cells are not a
    repeated name."""
    lines = FILES[kind].splitlines()
    text = "".join(f",{line.replace(',', ',,', 1)},\n".replace(",", "\t") for line in lines)
    path = _write(tmp_path, f"{kind}.tsv", text)
    summary = ingest_file(runtime=cdp_env.runtime, kind=kind, path=path, clock=CLOCK)
    assert (summary.read, summary.rejected, summary.inserted) == (2, 0, 2), summary.reasons


@pytest.mark.parametrize("kind", list(FILES))
def test_a_value_under_a_blank_header_rejects_its_row_naming_the_column(
    cdp_env: CdpEnv, tmp_path: Path, kind: str
) -> None:
    lines = FILES[kind].splitlines()
    width = lines[0].count(",") + 1
    lines[2] = lines[2] + EMAIL  # the last column: no name
    lines.append(lines[1].replace(",", ", ", 1).rstrip(",") + ",  ")  # blank: spaces only
    path = _write(tmp_path, f"{kind}.csv", "\n".join(lines) + "\n")
    summary = ingest_file(runtime=cdp_env.runtime, kind=kind, path=path)
    rejects = _rejects(path)
    assert [(r["line"], r["reason"]) for r in rejects] == [(3, "invalid_csv")], rejects
    assert f"column {width}" in rejects[0]["message"]
    assert EMAIL not in json.dumps(rejects)
    assert summary.read == 3 and summary.rejected == 1


@pytest.mark.parametrize("kind", ["orders", "consents", "events"])
def test_an_unknown_column_stops_the_run_before_anything_is_stored(
    cdp_env: CdpEnv, tmp_path: Path, kind: str
) -> None:
    lines = FILES[kind].splitlines()
    lines = [lines[0].rstrip(",") + ",note"] + [line.rstrip(",") + ",x" for line in lines[1:]]
    position = lines[0].count(",") + 1
    path = _write(tmp_path, f"{kind}.csv", "\n".join(lines) + "\n")
    with pytest.raises(InvalidInputError, match=f"column {position} names no field") as caught:
        ingest_file(runtime=cdp_env.runtime, kind=kind, path=path)
    assert "note" not in str(caught.value)  # the header cell may be data: never repeated
    assert count(cdp_env.runtime, "subjects") == 0
    assert not _rejects(path)


def test_a_headerless_file_names_no_value(cdp_env: CdpEnv, tmp_path: Path) -> None:
    """Its first row is read as the header: the error names positions only."""
    path = _write(
        tmp_path,
        "orders.csv",
        f"O1,{EMAIL},2024-01-15T10:00:00Z,10.00,USD\nO2,john@example.com,2024-01-16,5.00,USD\n",
    )
    with pytest.raises(InvalidInputError, match="columns 1, 2, 3, 4, 5 name no field") as caught:
        ingest_file(runtime=cdp_env.runtime, kind="orders", path=path)
    said = str(caught.value)
    assert EMAIL not in said and "jane" not in said and "2024" not in said and "O1" not in said
    assert count(cdp_env.runtime, "orders") == 0


def test_the_cli_refuses_an_unknown_column_with_exit_2(cdp_env: CdpEnv, tmp_path: Path) -> None:
    text = ORDERS.replace("currency,\n", "currency,totl\n").replace("USD,\n", "USD,1\n")
    path = _write(tmp_path, "orders.csv", text)
    done = subprocess.run(
        [*CLI, "ingest", "orders", str(path)],
        capture_output=True, text=True, env=os.environ.copy(), check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    said = " ".join(done.stderr.split())
    assert "column 6 names no field" in said and "totl" not in said, said
    assert "Traceback" not in said
    assert count(cdp_env.runtime, "orders") == 0


def test_customers_keep_unknown_columns_as_custom_traits(cdp_env: CdpEnv, tmp_path: Path) -> None:
    header = [*CUSTOMER_HEADER, "loyalty_tier", ""]
    rows = [{**customer(1), "loyalty_tier": "gold"}, customer(2)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: row.get(k, "") for k in header})
    path = _write(tmp_path, "customers.csv", buf.getvalue())
    summary = ingest_file(runtime=cdp_env.runtime, kind="customers", path=path)
    assert (summary.inserted, summary.rejected) == (2, 0), summary.reasons


def test_a_mapping_may_name_or_drop_columns_and_is_checked_too(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    text = "Nr,Kunde,Datum,Summe,Waehrung,Notiz,\nO1,C1,2025-01-01,1.00,EUR,hallo,\n"
    path = _write(tmp_path, "orders.csv", text)
    mapping = tmp_path / "m.json"
    columns = {"Nr": "order_id", "Kunde": "customer_id", "Datum": "ordered_at",
               "Summe": "total", "Waehrung": "currency"}  # fmt: skip
    mapping.write_text(json.dumps({"columns": columns}))
    with pytest.raises(InvalidInputError, match="column 6"):  # Notiz: not a field
        ingest_file(runtime=cdp_env.runtime, kind="orders", path=path, mapping_path=mapping)
    mapping.write_text(json.dumps({"columns": {**columns, "Notiz": ""}}))  # dropped
    summary = ingest_file(runtime=cdp_env.runtime, kind="orders", path=path, mapping_path=mapping)
    assert (summary.inserted, summary.rejected) == (1, 0), summary.reasons


_cell = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\x00"), max_size=5)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.lists(_cell, min_size=3, max_size=3), max_size=5),
    blanks=st.lists(st.integers(0, 3), max_size=4),
    filled=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3), _cell), max_size=3),
)
def test_blank_columns_change_nothing_but_rows_with_a_value_there(
    rows: list[list[str]], blanks: list[int], filled: list[tuple[int, int, str]]
) -> None:
    """Blank columns inserted at any positions: the reader yields the same records, except
    that a row with a (non-blank) value in one is rejected, naming that column."""
    header = ["a", "b", "c"]
    at = sorted(blanks)
    widened_header = list(header)
    for n, pos in enumerate(at):
        widened_header.insert(pos + n, "")
    blank_cols = [i for i, h in enumerate(widened_header) if h == ""]
    values: dict[tuple[int, int], str] = {}
    for r, k, v in filled:
        if r < len(rows) and blank_cols:
            values[(r, blank_cols[k % len(blank_cols)])] = v
    widened = []
    for r, row in enumerate(rows):
        cells = iter(row)
        widened.append(
            [
                values.get((r, i), "") if h == "" else next(cells)
                for i, h in enumerate(widened_header)
            ]
        )

    def read(head: list[str], body: list[list[str]]) -> list[Any]:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerows([head, *body])
        raw = io.BytesIO(buf.getvalue().encode())
        return list(read_csv(raw, mapping={}, limit=1 << 16))

    plain = read(header, rows)
    wide = read(widened_header, widened)
    assert len(plain) == len(wide)
    for r, (p, w) in enumerate(zip(plain, wide, strict=True)):
        bad = [i for i in blank_cols if values.get((r, i), "").strip()]
        if p.error is not None:
            continue  # (a row csv itself cannot read stays so)
        if bad:
            assert w.data is None and w.error == "invalid_csv"
            assert f"column {bad[0] + 1}" in w.message
        else:
            assert w.data == p.data, (p, w)
