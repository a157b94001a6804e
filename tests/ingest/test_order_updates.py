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


def _orders(env: CdpEnv, refs: list[str]) -> dict[str, tuple[Any, ...]]:
    """Each order's stored row as a tuple (cdp's own updated_at included: it moves on a write)."""
    with env.runtime.data_engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT order_ref, status, total_minor, discount_minor, coupon, source_updated_at, "
            "updated_at FROM orders"
        ).all()
    return {r[0]: tuple(r[1:]) for r in rows if r[0] in refs}


@pytest.mark.parametrize("second", [1, 2, 5000])
@pytest.mark.parametrize("first", [1, 2, 5000])
def test_rows_of_one_status_in_different_batches_are_not_reapplied_on_a_rerun(
    cdp_env: CdpEnv, tmp_path: Path, first: int, second: int
) -> None:
    """The review's case: U1 flipped 12 -> 10 -> 12 on every run with --batch-size 1. Among rows
    of the same status without updated_at, the first one stands whatever the batches."""
    rows = [
        order(1, total="10", items=[]),
        order(2, total="5", items=[]),
        order(1, total="12", coupon="FIX", items=[]),
    ]
    path = write_jsonl(tmp_path / "o.jsonl", rows)
    rt = cdp_env.runtime
    one = ingest_file(runtime=rt, kind="orders", path=path, batch_size=first)
    assert (one.inserted, one.updated, one.duplicates) == (2, 0, 1)
    assert _status(cdp_env, "O000001") == ("completed", 1000)
    before = dump_tables(rt)
    again = ingest_file(runtime=rt, kind="orders", path=path, batch_size=second)
    assert (again.inserted, again.updated, again.duplicates) == (0, 0, 3)
    assert dump_tables(rt) == before


def test_a_later_updated_at_wins_among_rows_of_one_status_and_an_old_file_does_not_undo_it(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    t = "2025-03-0{}T00:00:00Z".format
    partial = order(1, status="refunded", total="80", updated_at=t(5))
    old = write_jsonl(tmp_path / "old.jsonl", [order(1, updated_at=t(4)), partial])
    assert ingest_file(runtime=rt, kind="orders", path=old).inserted == 1
    assert _status(cdp_env, "O000001") == ("refunded", 8000)
    # a second partial refund, exported later: same status, later updated_at
    new = write_jsonl(
        tmp_path / "new.jsonl", [order(1, status="refunded", total="50", updated_at=t(7))]
    )
    assert ingest_file(runtime=rt, kind="orders", path=new).updated == 1
    assert _status(cdp_env, "O000001") == ("refunded", 5000)
    # the old export again, and a row of that status without a date: neither undoes it
    undated = write_jsonl(tmp_path / "undated.jsonl", [order(1, status="refunded", total="70")])
    for path in (old, undated, new):
        summary = ingest_file(runtime=rt, kind="orders", path=path, batch_size=1)
        assert summary.updated == 0 and summary.inserted == 0
    assert _status(cdp_env, "O000001") == ("refunded", 5000)
    # within one file the later updated_at wins wherever its row is
    rows = [order(2, total="9", updated_at=t(9)), order(2, total="3", updated_at=t(2))]
    for size in (1, 5000):
        path = write_jsonl(tmp_path / f"mixed{size}.jsonl", rows if size == 1 else rows[::-1])
        ingest_file(runtime=rt, kind="orders", path=path, batch_size=size)
        assert _status(cdp_env, "O000002") == ("completed", 900)


TIMES = st.sampled_from([None, "2025-03-01T00:00:00Z", "2025-03-02T00:00:00Z"])


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 2), STATUSES, st.integers(1, 3), TIMES), min_size=1, max_size=8
    ),
    first=st.integers(1, 5),
    second=st.integers(1, 5),
)
def test_a_second_run_changes_nothing_whatever_the_batch_sizes_and_row_order(
    cdp_env: CdpEnv,
    tmp_path: Path,
    rows: list[tuple[int, str, int, str | None]],
    first: int,
    second: int,
) -> None:
    """Rows of a few orders (any status, total and updated_at, in any order): the result is the
    first row of greatest precedence per order whatever the batch size, and a second run with
    any batch size is all duplicates and writes nothing."""
    base = next(_IDS) * 10  # fresh order ids per example (the database lives across examples)
    records = [
        order(base + k, status=s, total=str(total), items=[], updated_at=at)
        for k, s, total, at in rows
    ]
    path = write_jsonl(tmp_path / f"p{base}.jsonl", records)
    rt = cdp_env.runtime
    ingest_file(runtime=rt, kind="orders", path=path, batch_size=first)
    rank = {"completed": 0, "cancelled": 1, "refunded": 2}
    expected: dict[str, tuple[tuple[int, bool, str], tuple[str, int]]] = {}
    for k, s, total, at in rows:
        ref, key = f"O{base + k:06d}", (rank[s], at is not None, at or "")
        if ref not in expected or key > expected[ref][0]:
            expected[ref] = (key, (s, total * 100))
    for ref, (_, state) in expected.items():
        assert _status(cdp_env, ref) == state
    before = _orders(cdp_env, list(expected))
    again = ingest_file(runtime=rt, kind="orders", path=path, batch_size=second)
    assert (again.inserted, again.updated, again.duplicates) == (0, 0, len(rows))
    assert _orders(cdp_env, list(expected)) == before
