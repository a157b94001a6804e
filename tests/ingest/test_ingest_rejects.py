"""Records a file cannot give us are rejected with their line and reason; the rest ingests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cdp.clock import FrozenClock
from cdp.ingest.pipeline import ingest_file
from tests.conftest import CdpEnv
from tests.ingest.helpers import CUSTOMER_HEADER, count, customer, write_csv, write_jsonl


def _rejects(path: Path | None) -> dict[int, dict[str, Any]]:
    assert path is not None
    return {r["line"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_an_address_or_traits_that_is_not_an_object_rejects_its_line_only(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rows: list[dict[str, Any]] = [
        {"customer_id": "C1"},
        {"customer_id": "C2"},
        {"customer_id": "C3", "address": 5},  # line 3, in the second batch
        {"customer_id": "C4", "traits": 5},
        {"customer_id": "C5", "address": [1, 2]},
        {"customer_id": "C6", "traits": [["tier", "gold"]]},
        {"customer_id": "C7", "address": False, "city": "Springfield"},
        {"customer_id": "C8", "address": {"city": "Springfield"}, "traits": {"tier": "gold"}},
        {"customer_id": "C9", "address": None, "traits": None},
    ]
    path = write_jsonl(tmp_path / "customers.jsonl", rows)
    summary = ingest_file(runtime=cdp_env.runtime, kind="customers", path=path, batch_size=2)
    assert (summary.read, summary.inserted, summary.rejected) == (9, 4, 5)
    rejects = _rejects(summary.rejects_path)
    assert {n: (r["reason"], r["fields"]) for n, r in rejects.items()} == {
        3: ("invalid", ["address"]),
        4: ("invalid", ["traits"]),
        5: ("invalid", ["address"]),
        6: ("invalid", ["traits"]),
        7: ("invalid", ["address"]),
    }
    assert count(cdp_env.runtime, "subjects") == 4


def test_a_digit_only_time_is_rejected_and_nothing_is_stored_in_1970(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    clock = FrozenClock(datetime(2024, 6, 1, tzinfo=UTC))  # the records' time, within every window
    header = "order_id,customer_id,ordered_at,total,currency\n"
    path = tmp_path / "orders.csv"
    path.write_text(
        header + "O1,C1,20240115,10.00,USD\nO2,C1,2024-01-15T10:00:00Z,10.00,USD\n"
        "O3,C1,1705312800,10.00,USD\n",
        encoding="utf-8",
    )
    summary = ingest_file(runtime=cdp_env.runtime, kind="orders", path=path, clock=clock)
    assert (summary.read, summary.inserted, summary.rejected) == (3, 1, 2)
    rejects = _rejects(summary.rejects_path)
    assert sorted(rejects) == [2, 4]
    for r in rejects.values():
        assert r["reason"] == "invalid" and r["fields"] == ["ordered_at"]
        assert "Unix seconds" in r["message"] and "20240115" not in r["message"]
    assert count(cdp_env.runtime, "orders", "WHERE ordered_at < '1971-01-01'") == 0

    events = write_jsonl(tmp_path / "events.jsonl", [
        {"customer_id": "C1", "event": "Viewed", "timestamp": 1705312800},
        {"customer_id": "C1", "event": "Viewed", "timestamp": "20240115"},
        {"customer_id": "C1", "event": "Viewed", "timestamp": "2024-01-15T10:00:00Z"},
    ])  # fmt: skip
    summary = ingest_file(runtime=cdp_env.runtime, kind="events", path=events, clock=clock)
    assert (summary.read, summary.inserted, summary.rejected) == (3, 1, 2)
    assert set(_rejects(summary.rejects_path)) == {1, 2}


def test_a_consent_grant_dated_in_the_future_is_rejected_so_a_withdrawal_holds(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    from cdp.consent.ledger_state import consent_proof

    rt = cdp_env.runtime
    write_jsonl(tmp_path / "customers.jsonl", [{"customer_id": "C1"}])
    ingest_file(runtime=rt, kind="customers", path=tmp_path / "customers.jsonl")
    entry = {"customer_id": "C1", "purpose": "email_marketing", "source": "crm"}
    consents = write_jsonl(tmp_path / "consents.jsonl", [
        {**entry, "status": "granted", "occurred_at": "2095-01-01T00:00:00Z"},
        {**entry, "status": "withdrawn", "occurred_at": "2025-06-01T00:00:00Z"},
    ])  # fmt: skip
    summary = ingest_file(runtime=rt, kind="consents", path=consents)
    assert (summary.read, summary.inserted, summary.rejected) == (2, 1, 1)
    reject = _rejects(summary.rejects_path)[1]
    assert reject["reason"] == "invalid" and reject["fields"] == ["occurred_at"]
    assert "future" in reject["message"] and "2095" not in reject["message"]
    with rt.data_engine.connect() as conn:
        sid = conn.exec_driver_sql("SELECT id FROM subjects").scalar_one()
        proof = consent_proof(conn=conn, subject_id=sid)
    assert proof.states["email_marketing"].status == "withdrawn"
    assert [h.status for h in proof.history] == ["withdrawn"]

    later = write_jsonl(tmp_path / "orders.jsonl", [
        {"order_id": "O1", "customer_id": "C1", "ordered_at": "2095-01-01T00:00:00Z",
         "total": "1", "currency": "USD"},
    ])  # fmt: skip
    summary = ingest_file(runtime=rt, kind="orders", path=later)
    assert (summary.inserted, summary.rejected) == (0, 1)
    assert count(rt, "orders") == 0


CLI = [sys.executable, "-c", "from cdp.cli import main; main()"]


@pytest.mark.parametrize("how", ["same", "relative", "symlink"])
def test_rejects_path_naming_the_input_is_a_usage_error_and_the_input_is_kept(
    cdp_env: CdpEnv, tmp_path: Path, how: str
) -> None:
    rows = [customer(1), customer(2, email="not-an-email")]
    path = write_csv(tmp_path / "customers.csv", rows, CUSTOMER_HEADER)
    before = path.read_bytes()
    rejects = {"same": path, "relative": Path("./customers.csv"), "symlink": tmp_path / "l"}
    if how == "symlink":
        (tmp_path / "l").symlink_to(path)
    done = subprocess.run(
        [*CLI, "ingest", "customers", str(path), "--rejects", str(rejects[how])],
        capture_output=True, env=os.environ.copy(), cwd=tmp_path, text=True,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "reject file would overwrite the input" in done.stderr
    assert path.read_bytes() == before
    assert count(cdp_env.runtime, "subjects") == 0


@pytest.mark.parametrize("where", ["missing_dir", "a_directory"])
def test_an_unwritable_rejects_path_fails_before_anything_is_stored(
    cdp_env: CdpEnv, tmp_path: Path, where: str
) -> None:
    rows = [customer(n) for n in range(1, 6)] + [customer(6, email="not-an-email")]
    path = write_csv(tmp_path / "customers.csv", rows, CUSTOMER_HEADER)
    target = tmp_path / "no-such-dir" / "r.jsonl"
    if where == "a_directory":
        target = tmp_path / "adir"
        target.mkdir()
    done = subprocess.run(
        [*CLI, "ingest", "customers", str(path), "--rejects", str(target), "--batch-size", "2"],
        capture_output=True, env=os.environ.copy(), text=True,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "cannot write the reject file" in done.stderr
    assert count(cdp_env.runtime, "subjects") == 0


def test_a_clean_run_leaves_no_reject_file_and_removes_a_stale_one(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "customers.csv", [customer(1)], CUSTOMER_HEADER)
    stale = tmp_path / "customers.csv.rejects.jsonl"
    stale.write_text('{"line": 9}\n')
    summary = ingest_file(runtime=cdp_env.runtime, kind="customers", path=path)
    assert summary.inserted == 1 and summary.rejects_path is None
    assert not stale.exists()
