"""A run that reads no record leaves the previous run's reject file where it is: a CSV header the
run refuses (a column naming no field, a name twice, a mapping making two columns one, a header
that cannot be read) or a file with no records. Before, the refused run removed it as stale on
its way out (exit 2, "nothing was ingested"), so the rejects of the last run that did read the
file were lost. A run that reads records still replaces it (or removes it when it rejects
nothing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cdp.errors import InvalidInputError
from cdp.ingest.pipeline import ingest_file
from tests.conftest import CdpEnv
from tests.ingest.helpers import count

HEADER = "order_id,customer_id,ordered_at,total,currency"
ROWS = "O1,C1,2026-11-01T00:00:00Z,10.00,USD\nO2,C1,not-a-time,10.00,USD\n"
CLI = [sys.executable, "-c", "from cdp.cli import main; main()"]


def _first_run(cdp_env: CdpEnv, path: Path) -> bytes:
    """Ingest a file with one bad row: its reject file is in place; return its content."""
    path.write_text(f"{HEADER}\n{ROWS}", encoding="utf-8")
    summary = ingest_file(runtime=cdp_env.runtime, kind="orders", path=path)
    assert summary.rejected == 1 and summary.rejects_path is not None
    return summary.rejects_path.read_bytes()


def _no_temp_files(directory: Path) -> None:
    assert not [p.name for p in directory.iterdir() if p.name.startswith(".cdp-rejects-")]


REFUSED = {
    "unknown column": f"{HEADER},bogus\nO3,C1,2026-11-01T00:00:00Z,10.00,USD,x\n".encode(),
    "column twice": f"{HEADER},total\nO3,C1,2026-11-01T00:00:00Z,10.00,USD,1\n".encode(),
    "header not UTF-8": b"order_id,customer_id,ordered_at,total,currency,caf\xe9\n",
    "open quote": b'order_id,"customer_id,ordered_at,total,currency\n',
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_refused_header_leaves_the_previous_reject_file(
    cdp_env: CdpEnv, tmp_path: Path, case: str
) -> None:
    path = tmp_path / "orders.csv"
    before = _first_run(cdp_env, path)
    rejects = tmp_path / "orders.csv.rejects.jsonl"
    path.write_bytes(REFUSED[case])
    with pytest.raises(InvalidInputError):
        ingest_file(runtime=cdp_env.runtime, kind="orders", path=path)
    assert rejects.read_bytes() == before
    assert count(cdp_env.runtime, "orders") == 1
    _no_temp_files(tmp_path)


def test_a_file_with_no_record_leaves_the_previous_reject_file(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    before = _first_run(cdp_env, path)
    for empty in (f"{HEADER}\n", ""):
        path.write_text(empty, encoding="utf-8")
        summary = ingest_file(runtime=cdp_env.runtime, kind="orders", path=path)
        assert (summary.read, summary.rejects_path) == (0, None)
        assert (tmp_path / "orders.csv.rejects.jsonl").read_bytes() == before
    _no_temp_files(tmp_path)


def test_a_mapping_refused_at_the_header_leaves_the_previous_reject_file(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    before = _first_run(cdp_env, path)
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"columns": {"total": "order_id"}}))  # two order_id columns
    with pytest.raises(InvalidInputError):
        ingest_file(runtime=cdp_env.runtime, kind="orders", path=path, mapping_path=mapping)
    assert (tmp_path / "orders.csv.rejects.jsonl").read_bytes() == before


def test_the_cli_refuses_the_header_and_keeps_the_reject_file(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    before = _first_run(cdp_env, path)
    path.write_bytes(REFUSED["unknown column"])
    done = subprocess.run(
        [*CLI, "ingest", "orders", str(path)],
        capture_output=True, text=True, env=os.environ.copy(), check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "names no field" in done.stderr
    assert (tmp_path / "orders.csv.rejects.jsonl").read_bytes() == before


def test_a_run_that_reads_records_still_replaces_or_removes_it(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    _first_run(cdp_env, path)
    rejects = tmp_path / "orders.csv.rejects.jsonl"
    path.write_text(f"{HEADER}\nO3,C1,bad,10.00,USD\nO4,C1,bad,1,USD\n", encoding="utf-8")
    summary = ingest_file(runtime=cdp_env.runtime, kind="orders", path=path)
    assert summary.rejected == 2
    assert [json.loads(r)["line"] for r in rejects.read_text().splitlines()] == [2, 3]
    path.write_text(f"{HEADER}\nO5,C1,2026-11-01T00:00:00Z,1,USD\n", encoding="utf-8")
    clean = ingest_file(runtime=cdp_env.runtime, kind="orders", path=path)
    assert (clean.inserted, clean.rejects_path) == (1, None)
    assert not rejects.exists()
