"""Several rows of one order, in one file or across files: the status only moves forward, the
outcome does not depend on row order or batch size, and a second run changes nothing."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.ingest.pipeline import ingest_file
from tests.conftest import CdpEnv
from tests.ingest.helpers import dump_tables, order, write_jsonl


def _status(env: CdpEnv, ref: str) -> tuple[str, int]:
    with env.runtime.data_engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT status, total_minor FROM orders WHERE order_ref = ?"
            if env.runtime.data_engine.dialect.name == "sqlite"
            else "SELECT status, total_minor FROM orders WHERE order_ref = %s",
            (ref,),
        ).one()
    return str(row[0]), int(row[1])


@pytest.mark.parametrize("batch_size", [1, 2, 5000])
def test_a_refund_later_in_the_file_wins_and_a_rerun_changes_nothing(
    cdp_env: CdpEnv, tmp_path: Path, batch_size: int
) -> None:
    rows = [order(1), order(2), order(1, status="refunded", total="0")]
    path = write_jsonl(tmp_path / "orders.jsonl", rows)
    first = ingest_file(runtime=cdp_env.runtime, kind="orders", path=path, batch_size=batch_size)
    assert first.rejected == 0
    assert _status(cdp_env, "O000001") == ("refunded", 0)
    before = dump_tables(cdp_env.runtime)
    again = ingest_file(runtime=cdp_env.runtime, kind="orders", path=path, batch_size=batch_size)
    assert again.duplicates == 3 and again.updated == 0 and again.inserted == 0
    assert dump_tables(cdp_env.runtime) == before


def test_an_older_export_after_a_refund_does_not_undo_it(cdp_env: CdpEnv, tmp_path: Path) -> None:
    rt = cdp_env.runtime
    ingest_file(runtime=rt, kind="orders", path=write_jsonl(tmp_path / "a.jsonl", [order(1)]))
    refund = write_jsonl(tmp_path / "b.jsonl", [order(1, status="refunded")])
    assert ingest_file(runtime=rt, kind="orders", path=refund).updated == 1
    old = ingest_file(runtime=rt, kind="orders", path=tmp_path / "a.jsonl")
    assert old.duplicates == 1 and old.updated == 0
    assert _status(cdp_env, "O000001")[0] == "refunded"


def test_another_currency_for_a_stored_order_is_rejected(cdp_env: CdpEnv, tmp_path: Path) -> None:
    rt = cdp_env.runtime
    ingest_file(runtime=rt, kind="orders", path=write_jsonl(tmp_path / "a.jsonl", [order(1)]))
    before = dump_tables(rt)
    other = write_jsonl(tmp_path / "b.jsonl", [order(1, currency="EUR", total="20.00")])
    summary = ingest_file(runtime=rt, kind="orders", path=other)
    assert summary.rejected == 1 and summary.reasons == {"currency_changed": 1}
    reject = json.loads((tmp_path / "b.jsonl.rejects.jsonl").read_text())
    assert reject["fields"] == ["currency"]
    assert dump_tables(rt) == before


_IDS = itertools.count(10)
STATUSES = st.sampled_from(["completed", "cancelled", "refunded"])


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    statuses=st.lists(STATUSES, min_size=1, max_size=5),
    order_seed=st.randoms(use_true_random=False),
    batch_size=st.integers(1, 4),
)
def test_the_stored_status_is_the_furthest_whatever_the_order(
    cdp_env: CdpEnv, tmp_path: Path, statuses: list[str], order_seed: Any, batch_size: int
) -> None:
    n = next(_IDS)  # a fresh order id per example (the database lives across examples)
    rows = [order(n, status=s) for s in statuses]
    order_seed.shuffle(rows)
    path = write_jsonl(tmp_path / f"o{n}.jsonl", rows)
    ingest_file(runtime=cdp_env.runtime, kind="orders", path=path, batch_size=batch_size)
    rank = {"completed": 0, "cancelled": 1, "refunded": 2}
    assert _status(cdp_env, f"O{n:06d}")[0] == max(statuses, key=rank.__getitem__)
    again = ingest_file(runtime=cdp_env.runtime, kind="orders", path=path, batch_size=batch_size)
    assert again.updated == 0 and again.inserted == 0
