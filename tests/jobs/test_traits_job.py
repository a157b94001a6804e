"""``cdp serve``'s traits job: recomputes traits when the stored ones are an interval old (or
were never computed), skips them while fresh, and tries a failed run again after a short, growing
wait (its place in ``cdp serve``: tests/exports/test_traits_freshness.py)."""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from cdp.clock import FrozenClock
from cdp.jobs import TraitsJob
from cdp.traits import points
from cdp.traits.compute import compute_traits
from cdp.traits.freshness import traits_computed_at
from tests.conftest import CdpEnv
from tests.traits.factories import OrderSpec, add_orders, make_subjects, subject_ids

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _shop(cdp_env: CdpEnv) -> list[str]:
    """Three buyers of one order each (CLV is skipped: no repeat purchase to fit on)."""
    ids = subject_ids(3, prefix=0x7A)
    with cdp_env.runtime.data_engine.begin() as conn:
        make_subjects(conn, ids)
        add_orders(
            conn, [OrderSpec(s, NOW - timedelta(days=10 * k + 5), 50.0) for k, s in enumerate(ids)]
        )
    return ids


def _stamps(cdp_env: CdpEnv) -> set[datetime]:
    """The distinct ``computed_at`` of the stored order traits."""
    with cdp_env.runtime.data_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT DISTINCT computed_at FROM subject_traits")).all()
    return {datetime.fromisoformat(str(r[0])).replace(tzinfo=UTC) for r in rows}


def _computed_at(cdp_env: CdpEnv) -> datetime | None:
    with cdp_env.runtime.data_engine.connect() as conn:
        return traits_computed_at(conn)


def _runs(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == "traits run"]


def test_computes_traits_that_were_never_computed_and_logs_counts_and_times(
    cdp_env: CdpEnv,
) -> None:
    _shop(cdp_env)
    assert _computed_at(cdp_env) is None
    job = TraitsJob(runtime=cdp_env.runtime, interval=DAY, clock=FrozenClock(NOW))
    with capture_logs() as logs:
        report = job.run_if_due()
    assert report is not None and report.subjects == 3, logs
    assert _computed_at(cdp_env) == NOW and _stamps(cdp_env) == {NOW}
    [run] = _runs(logs)
    assert run["subjects"] == 3 and run["previous"] is None and run["log_level"] == "info"
    seconds = run["seconds"]
    assert isinstance(seconds, dict) and {"order_traits", "loyalty", "points", "clv"} <= set(
        seconds
    )


def test_skips_fresh_traits_even_after_a_restart_and_runs_once_they_are_an_interval_old(
    cdp_env: CdpEnv,
) -> None:
    _shop(cdp_env)
    compute_traits(runtime=cdp_env.runtime, clock=FrozenClock(NOW))  # by hand, or another host
    clock = FrozenClock(NOW + timedelta(hours=20))
    job = TraitsJob(runtime=cdp_env.runtime, interval=DAY, clock=clock)  # a server starting
    with capture_logs() as logs:
        assert job.run_if_due() is None
        assert _stamps(cdp_env) == {NOW}
        clock.advance(hours=3, minutes=59)
        assert job.run_if_due() is None  # 23h59m old: still fresh
        clock.advance(minutes=1)
        assert job.run_if_due() is not None  # a day old
        assert _stamps(cdp_env) == {NOW + DAY}
        clock.advance(hours=12)
        assert job.run_if_due() is None
        clock.advance(hours=12)
        assert job.run_if_due() is not None  # again one interval after its own run
    assert _computed_at(cdp_env) == NOW + 2 * DAY
    assert [r["previous"] for r in _runs(logs)] == [NOW.isoformat(), (NOW + DAY).isoformat()]


def test_a_recompute_made_elsewhere_postpones_the_next_run(cdp_env: CdpEnv) -> None:
    _shop(cdp_env)
    clock = FrozenClock(NOW)
    job = TraitsJob(runtime=cdp_env.runtime, interval=DAY, clock=clock)
    assert job.run_if_due() is not None
    clock.advance(hours=20)
    compute_traits(runtime=cdp_env.runtime, clock=clock)  # `cdp traits compute` meanwhile
    clock.advance(hours=4)
    assert job.run_if_due() is None  # the stored traits are 4 hours old
    clock.advance(hours=20)
    assert job.run_if_due() is not None
    assert _computed_at(cdp_env) == NOW + timedelta(hours=44)


def _failed(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == "traits run failed"]


def test_a_failed_run_is_logged_by_type_and_tried_again_after_a_growing_wait(
    cdp_env: CdpEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _shop(cdp_env)
    bad = tmp_path / "traits.toml"
    bad.write_text("[lifecycle]\nnew_days = 'customer-secret'\n")  # not a number
    monkeypatch.setenv("CDP_TRAITS_CONFIG", str(bad))
    runtime = cdp_env.reopen()
    clock = FrozenClock(NOW)
    interval = timedelta(minutes=5)
    job = TraitsJob(runtime=runtime, interval=interval, clock=clock)
    with capture_logs() as logs:
        assert job.run_if_due() is None
        for wait in (1, 2, 4, 5, 5):  # minutes: from one, doubling, at most the interval
            clock.advance(minutes=wait, seconds=-1)
            tries = len(_failed(logs))
            assert job.run_if_due() is None and len(_failed(logs)) == tries  # not yet
            clock.advance(seconds=1)
            assert job.run_if_due() is None and len(_failed(logs)) == tries + 1
    failed = _failed(logs)
    assert [e["retry_in_seconds"] for e in failed] == [60, 120, 240, 300, 300, 300]
    assert [e["failures"] for e in failed] == [1, 2, 3, 4, 5, 6]
    assert all(e["log_level"] == "error" for e in failed)
    # no message, no traceback
    assert set(failed[0]) == {"event", "log_level", "error_type", "failures", "retry_in_seconds"}
    assert "customer-secret" not in repr(logs)
    assert _computed_at(cdp_env) is None

    bad.write_text("[lifecycle]\nnew_days = 30\n")  # fixed
    clock.advance(minutes=5)
    with capture_logs() as logs:
        assert job.run_if_due() is not None
        clock.advance(minutes=1)
        assert job.run_if_due() is None  # fresh again: the next run is one interval later
    assert _runs(logs) and _computed_at(cdp_env) == clock() - timedelta(minutes=1)
    assert job.failures == 0 and job.next_check == _computed_at(cdp_env) + interval


def test_a_run_that_failed_after_the_order_traits_committed_is_retried_in_full(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order traits committed, so the traits look fresh; the points step failed (e.g. a
    deadlock with a concurrent writer): a minute later the whole run is tried again, not a
    day later."""
    _shop(cdp_env)
    real = points.update_ledger
    calls: list[int] = []

    def failing_once(conn: sa.Connection, **kw: Any) -> dict[str, int]:
        calls.append(1)
        if len(calls) == 1:
            raise sa.exc.OperationalError("UPDATE points_ledger", {}, Exception("deadlock"))
        return real(conn, **kw)

    monkeypatch.setattr(points, "update_ledger", failing_once)
    clock = FrozenClock(NOW)
    job = TraitsJob(runtime=cdp_env.runtime, interval=DAY, clock=clock)
    with capture_logs() as logs:
        assert job.run_if_due() is None
        assert _computed_at(cdp_env) == NOW  # the order traits committed
        clock.advance(minutes=1)
        report = job.run_if_due()
    assert [e["error_type"] for e in _failed(logs)] == ["OperationalError"]
    assert report is not None and report.points_lines["earn_orders"] == 3
    assert _computed_at(cdp_env) == NOW + timedelta(minutes=1)
    assert job.next_check == NOW + timedelta(minutes=1) + DAY
