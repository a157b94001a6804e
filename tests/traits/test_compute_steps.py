"""``run_steps``: trait steps in transactions of their own, at the same time on PostgreSQL, and
the same results whether they run together or one after another."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from cdp.clock import FrozenClock
from cdp.traits.compute import compute_traits, run_steps
from cdp.traits.models import LoyaltyStatus, SubjectTraits
from tests.conftest import CdpEnv
from tests.traits.factories import OrderSpec, add_orders, make_subjects, subject_ids

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_steps_run_together_on_postgresql_and_in_order_on_sqlite(cdp_env: CdpEnv) -> None:
    engine = cdp_env.runtime.data_engine
    both_inside = threading.Barrier(2, timeout=30)
    seen: list[str] = []

    def step(name: str) -> object:
        def run(conn: sa.Connection) -> object:
            seen.append(name)
            if engine.dialect.name == "postgresql":
                both_inside.wait()  # only passes if the other step is running meanwhile
            return conn.execute(sa.select(sa.literal(name))).scalar_one()

        return run

    seconds: dict[str, float] = {}
    out = run_steps(engine, {"a": step("a"), "b": step("b")}, workers=2, seconds=seconds)
    assert out == {"a": "a", "b": "b"}
    assert set(seconds) == {"a", "b"}
    if engine.dialect.name == "sqlite":
        assert seen == ["a", "b"]


def test_every_step_runs_and_commits_before_the_first_failure_is_raised(
    cdp_env: CdpEnv,
) -> None:
    engine = cdp_env.runtime.data_engine
    ids = subject_ids(2, prefix=0xD1)

    def fails(conn: sa.Connection) -> None:
        raise RuntimeError("step a failed")

    def writes(conn: sa.Connection) -> int:
        make_subjects(conn, ids)
        return 2

    with pytest.raises(RuntimeError, match="step a failed"):
        run_steps(engine, {"a": fails, "b": writes}, workers=2)
    with engine.connect() as conn:
        found = conn.execute(sa.text("SELECT count(*) FROM subjects")).scalar_one()
    assert found == 2


def _snapshot(env: CdpEnv) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    traits_t = SubjectTraits.__table__  # type: ignore[attr-defined]
    status_t = LoyaltyStatus.__table__  # type: ignore[attr-defined]
    with env.runtime.data_engine.connect() as conn:
        traits = [tuple(r) for r in conn.execute(sa.select(traits_t).order_by("subject_id"))]
        status = [tuple(r) for r in conn.execute(sa.select(status_t).order_by("subject_id"))]
    return traits, status


def test_together_or_one_after_another_the_traits_are_the_same(cdp_env: CdpEnv) -> None:
    ids = subject_ids(40, prefix=0xD2)
    with cdp_env.runtime.data_engine.begin() as conn:
        make_subjects(conn, ids)
        add_orders(
            conn,
            [
                OrderSpec(sid, NOW - timedelta(days=3 + 37 * k + i), 90.0 + 13 * i + k)
                for i, sid in enumerate(ids)
                for k in range(i % 9)
            ],
        )
    results = []
    for workers in (1, 2):
        settings = cdp_env.runtime.settings.model_copy(update={"traits_workers": workers})
        runtime = replace(cdp_env.runtime, settings=settings)
        report = compute_traits(runtime=runtime, clock=FrozenClock(NOW), with_clv=False)
        assert report.subjects == len(ids)
        assert set(report.seconds) >= {"order_traits", "loyalty", "points"}
        results.append(_snapshot(cdp_env))
        # a second run finds every tier in place: no change, the same rows
        again = compute_traits(runtime=runtime, clock=FrozenClock(NOW), with_clv=False)
        assert again.tier_changes == 0
    assert results[0][0] and results[0][1]
    assert results[0] == results[1]
