"""Files and mappings that cannot be read as given stop the run with a clear error (exit 2 on the
CLI), before anything is stored where that is possible."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest

import cdp.ingest.pipeline as pipeline
from cdp.errors import InvalidInputError
from cdp.ingest.pipeline import IncompleteFileError, file_source, ingest_file
from cdp.ingest.readers import printable_path
from tests.conftest import CdpEnv
from tests.ingest.helpers import CUSTOMER_HEADER, count, customer, order, write_csv, write_jsonl

CLI = [sys.executable, "-c", "from cdp.cli import main; main()"]


def test_an_unreadable_header_stops_the_run_before_anything_is_stored(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    path = tmp_path / "customers.csv"
    path.write_bytes(b"customer_id,email,stra\xdfe\nC1,a1@example.com,x\nC2,a2@example.com,y\n")
    with pytest.raises(InvalidInputError, match="header row"):
        ingest_file(runtime=cdp_env.runtime, kind="customers", path=path)
    assert count(cdp_env.runtime, "subjects") == 0


def test_a_truncated_gzip_file_stops_the_run_before_anything_is_stored(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    plain = write_csv(
        tmp_path / "c.csv", [customer(i) for i in range(400)], CUSTOMER_HEADER
    ).read_bytes()
    packed = gzip.compress(plain)
    path = tmp_path / "customers.csv.gz"
    path.write_bytes(packed[: len(packed) * 3 // 4])
    with pytest.raises(InvalidInputError, match="is cut short") as caught:
        ingest_file(runtime=cdp_env.runtime, kind="customers", path=path, batch_size=50)
    assert "nothing was ingested" in str(caught.value)
    assert "example.com" not in str(caught.value)
    assert count(cdp_env.runtime, "subjects") == 0  # the file is checked whole first


def test_a_plain_file_named_gz_is_refused(cdp_env: CdpEnv, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "customers.csv.gz", [customer(1)], CUSTOMER_HEADER)
    with pytest.raises(InvalidInputError, match="gzip"):
        ingest_file(runtime=cdp_env.runtime, kind="customers", path=path)


def test_a_mapping_sending_two_columns_to_one_field_is_refused(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    path = tmp_path / "customers.csv"
    path.write_text("Kundennummer,E-Mail,Mail2\nK1,a@example.com,b@example.com\n")
    mapping = tmp_path / "m.json"
    mapping.write_text(
        '{"columns": {"Kundennummer": "customer_id", "E-Mail": "email", "Mail2": "email"}}'
    )
    with pytest.raises(InvalidInputError, match="several columns to email"):
        ingest_file(runtime=cdp_env.runtime, kind="customers", path=path, mapping_path=mapping)


def test_a_mapping_naming_an_unknown_order_field_is_refused(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("Nr,Kunde,Datum,Summe,Waehrung\nO1,C1,2025-01-01,1.00,EUR\n")
    mapping = tmp_path / "m.TOML"  # the suffix in any case
    mapping.write_text(
        '[columns]\nNr = "order_id"\nKunde = "customer_id"\nDatum = "ordered_at"\n'
        'Summe = "totl"\nWaehrung = "currency"\n'
    )
    with pytest.raises(InvalidInputError, match=r"unknown field.*totl"):
        ingest_file(runtime=cdp_env.runtime, kind="orders", path=path, mapping_path=mapping)
    mapping.write_text(mapping.read_text().replace('"totl"', '"total"'))
    assert (
        ingest_file(
            runtime=cdp_env.runtime, kind="orders", path=path, mapping_path=mapping
        ).inserted
        == 1
    )


def _bytes_named(tmp_path: Path, raw: bytes) -> Path:
    """A path in ``tmp_path`` whose name is the bytes ``raw`` (skipped where names must be
    UTF-8)."""
    path = tmp_path / os.fsdecode(raw)
    try:
        path.write_bytes(b"")
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system only takes UTF-8 names")
    return path


def test_a_file_name_that_is_not_utf8_is_stored_escaped(cdp_env: CdpEnv, tmp_path: Path) -> None:
    """A Latin-1 name (``M\\xfcller``) reaches Python with a lone surrogate for the byte; stored
    as the run's source it crashed the run (no database text holds one)."""
    path = _bytes_named(tmp_path, b"bestellungen_M\xfcller.jsonl")
    write_jsonl(path, [order(1), order(2, customer_id=None)])  # the second: missing_id
    summary = ingest_file(runtime=cdp_env.runtime, kind="orders", path=path)
    assert (summary.inserted, summary.rejected) == (1, 1)
    assert summary.rejects_path == path.with_name(path.name + ".rejects.jsonl")
    assert summary.rejects_path.exists()
    with cdp_env.runtime.data_engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT source FROM orders").scalar_one()
    assert stored == "file:bestellungen_M\\xfcller.jsonl"

    consents = _bytes_named(tmp_path, b"einwilligungen_\xe4.jsonl")
    row = {"customer_id": "C1", "purpose": "analytics", "status": "granted",
           "occurred_at": "2025-01-01T00:00:00Z"}  # fmt: skip
    write_jsonl(consents, [row])
    assert ingest_file(runtime=cdp_env.runtime, kind="consents", path=consents).inserted == 1
    with cdp_env.runtime.data_engine.connect() as conn:
        recorded = conn.exec_driver_sql("SELECT recorded_by FROM consent_events").scalar_one()
    assert recorded == "file:einwilligungen_\\xe4.jsonl"


def test_the_stored_source_escapes_what_is_not_printable() -> None:
    raw = os.fsdecode(b"a\x01b\nc_\xff.csv")
    assert file_source(Path(raw)) == "file:a\\x01b\\nc_\\xff.csv"
    assert file_source(Path("Müller 中文.csv")) == "file:Müller 中文.csv"
    assert file_source(Path("x" * 100 + ".csv")) == "file:" + "x" * 59
    assert printable_path("lone\ud800") == "lone\\ud800"  # not from the file system


def test_a_damaged_gzip_file_with_such_a_name_is_reported_readably(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    path = _bytes_named(tmp_path, b"kunden_\xfc.csv.gz")
    path.write_bytes(b"not gzip")
    with pytest.raises(InvalidInputError, match="gzip") as caught:
        ingest_file(runtime=cdp_env.runtime, kind="customers", path=path)
    assert "kunden_\\xfc.csv.gz" in str(caught.value)
    str(caught.value).encode("utf-8")  # printable anywhere


def test_the_cli_prints_such_a_name_on_a_strict_utf8_output(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    """The summary names the reject file; printed as it is, a name that is not UTF-8 crashed
    the run at its end on an output that refuses lone surrogates (after everything was
    stored)."""
    import subprocess
    import sys

    path = _bytes_named(tmp_path, b"bestellungen_M\xfcller.jsonl")
    write_jsonl(path, [order(1), order(2, customer_id=None)])
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "CDP_LOG_FORMAT": "json"}
    done = subprocess.run(
        [sys.executable, "-c", "from cdp.cli import main; main()", "ingest", "orders", str(path)],
        capture_output=True,
        env=env,
        check=False,
    )
    out = (done.stdout + done.stderr).decode("utf-8", "replace")
    assert done.returncode == 0, out
    assert "internal_error" not in out and "Traceback" not in out
    assert "1 rejected" in out


def _cut_orders(tmp_path: Path, n: int, bad_every: int) -> Path:
    """``n`` orders as JSON Lines gzip, every ``bad_every``-th with an invalid total (whole: see
    :data:`CUT_AFTER_CHECK`)."""
    rows = [order(i, total="-1" if i % bad_every == 0 else "10.00") for i in range(1, n + 1)]
    plain = write_jsonl(tmp_path / "o.jsonl", rows).read_bytes()
    path = tmp_path / "orders.jsonl.gz"
    path.write_bytes(gzip.compress(plain, compresslevel=1))
    return path


CUT_AFTER_CHECK = """
import os
import cdp.ingest.pipeline as pipeline
checked = pipeline.verify_gzip
def check_then_cut(handle, path):
    checked(handle, path)
    os.truncate(path, os.path.getsize(path) // 2)  # in place: the open file is cut too
pipeline.verify_gzip = check_then_cut
"""
"""A gzip file cut in half in place after it passed its check (a file still being written, or
overwritten, while it is ingested): the run finds the damage while it reads."""


def test_a_file_cut_after_its_check_ingests_every_record_read_and_writes_their_rejects(
    cdp_env: CdpEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review's case: 3,000 orders cut in half, batches of 1,000. The records read after the
    last full batch were neither stored nor their rejects written, and the error said "the
    records before that line were ingested". (A file damaged before the run is refused whole:
    tests/ingest/test_damaged_gzip.py.)"""
    path = _cut_orders(tmp_path, 3000, bad_every=7)
    checked = pipeline.verify_gzip

    def check_then_cut(handle: IO[bytes], at: Path) -> None:  # as CUT_AFTER_CHECK does
        checked(handle, at)
        os.truncate(at, at.stat().st_size // 2)

    monkeypatch.setattr(pipeline, "verify_gzip", check_then_cut)
    with pytest.raises(IncompleteFileError) as caught:
        ingest_file(runtime=cdp_env.runtime, kind="orders", path=path, batch_size=1000)
    summary = caught.value.summary
    last = summary.read  # one record a line, no blank lines: the last line read
    assert 1000 < last < 3000 and last % 1000 != 0  # a partial batch was pending
    assert "changed after its gzip check" in str(caught.value)
    assert f"through line {last} was ingested" in str(caught.value)
    assert "example.com" not in str(caught.value)
    assert summary.rejected == last // 7 and summary.inserted == last - last // 7
    assert count(cdp_env.runtime, "orders") == summary.inserted
    assert summary.rejects_path == tmp_path / "orders.jsonl.gz.rejects.jsonl"
    lines = [json.loads(x)["line"] for x in summary.rejects_path.read_text().splitlines()]
    assert lines == list(range(7, last + 1, 7))
    # the complete file adds the rest
    full = write_jsonl(
        tmp_path / "full.jsonl",
        [order(i, total="-1" if i % 7 == 0 else "10.00") for i in range(1, 3001)],
    )
    again = ingest_file(runtime=cdp_env.runtime, kind="orders", path=full, batch_size=1000)
    assert again.duplicates == summary.inserted
    assert count(cdp_env.runtime, "orders") == 3000 - 3000 // 7


def test_the_cli_prints_the_summary_of_a_file_cut_after_its_check_and_exits_2(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    path = _cut_orders(tmp_path, 600, bad_every=50)
    code = CUT_AFTER_CHECK + "from cdp.cli import main\nmain()\n"
    done = subprocess.run(
        [sys.executable, "-c", code, "ingest", "orders", str(path), "--batch-size", "100"],
        capture_output=True, text=True, env=os.environ.copy(), check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    said = " ".join(done.stderr.split())
    assert "not a complete gzip file" in said and "was ingested" in said
    assert "Traceback" not in done.stderr
    stored = count(cdp_env.runtime, "orders")
    assert stored > 0
    assert f"{stored:,}" in done.stdout and "inserted" in done.stdout  # the summary table
    shown = "".join(done.stdout.split())  # (the console wraps long lines)
    assert "rejected(invalid:" in shown and "orders.jsonl.gz.rejects.jsonl" in shown
    assert (tmp_path / "orders.jsonl.gz.rejects.jsonl").exists()


def test_a_file_that_is_not_gzip_at_all_ingests_nothing(cdp_env: CdpEnv, tmp_path: Path) -> None:
    path = tmp_path / "orders.jsonl.gz"
    path.write_bytes(b'{"order_id": "O1"}\n')
    with pytest.raises(InvalidInputError, match="is not a gzip file") as caught:
        ingest_file(runtime=cdp_env.runtime, kind="orders", path=path)
    assert "nothing was ingested" in str(caught.value)
    assert "order_id" not in str(caught.value)  # gzip's own message quotes the first bytes
    assert not (tmp_path / "orders.jsonl.gz.rejects.jsonl").exists()
