"""PostgreSQL: a trait recompute step and a merge of two subjects run one after the other.

A merge still open when a step starts is waited for, and the step then computes from the merged
subject (the survivor's traits count the orders it took over, no points line names the absorbed
subject, whose foreign-key check would fail the step); a merge that starts during a step waits
for the step's commit, before it locks its subjects (so the points step's foreign-key checks do
not deadlock with it). The same for an erasure and the points step. SQLite serialises writers:
there is no interleaving to test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from cdp.db.all_models import metadata
from cdp.privacy import erasure
from cdp.privacy.erasure import erase_subject
from cdp.profiles.merge import merge_subjects
from cdp.traits import clv, loyalty, order_traits, points
from cdp.traits.config import TraitsConfig
from cdp.traits.models import ClvFit
from cdp.traits.recompute_lock import LOCKED
from tests.conftest import CdpEnv
from tests.traits.factories import OrderSpec, add_orders, make_subjects, subject_ids

NOW = datetime(2026, 6, 1, 8, tzinfo=UTC)
CFG = TraitsConfig()
SURVIVOR, ABSORBED = subject_ids(2, prefix=0xD7)
fits_t = ClvFit.__table__  # type: ignore[attr-defined]
Step = Callable[[sa.Connection], Any]

STEPS: dict[str, Step] = {
    "order_traits": lambda c: order_traits.compute_order_traits(c, cfg=CFG, now=NOW),
    "loyalty": lambda c: loyalty.evaluate_tiers(c, cfg=CFG.loyalty, now=NOW),
    "points": lambda c: points.update_ledger(c, cfg=CFG.points, now=NOW),
    "clv": lambda c: clv.predict(c, cfg=CFG.clv, now=NOW),
}


@pytest.fixture
def env(cdp_env: CdpEnv) -> Iterator[CdpEnv]:
    """Two subjects: the survivor with one order of 150, the one it absorbs with two of 100 on
    two days (together: 350 over 3 days, silver; apart, each a member); a CLV fit to predict
    from."""
    if cdp_env.runtime.data_engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: no interleaving to test")
    with cdp_env.runtime.data_engine.begin() as conn:
        make_subjects(conn, [SURVIVOR, ABSORBED])
        add_orders(
            conn,
            [
                OrderSpec(SURVIVOR, NOW - timedelta(days=10), 150.0),
                OrderSpec(ABSORBED, NOW - timedelta(days=5), 100.0),
                OrderSpec(ABSORBED, NOW - timedelta(days=3), 100.0),
            ],
        )
        conn.execute(
            sa.insert(fits_t).values(
                fitted_at=NOW, calibration_end=NOW - timedelta(days=1), r=1.0, alpha=1.0,
                a=1.0, b=1.0, bgnbd_log_likelihood=-1.0, bgnbd_converged=True, n_customers=2,
                n_repeat_customers=1,
            )
        )  # fmt: skip
    yield cdp_env


def _merge(env: CdpEnv, conn: sa.Connection) -> None:
    merge_subjects(
        runtime=env.runtime,
        conn=conn,
        survivor=SURVIVOR,
        absorbed=ABSORBED,
        linked_by="email",
        now=NOW,
    )


def _pid(conn: sa.Connection) -> int:
    return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def _wait_until(engine: sa.Engine, pid: int, done: Callable[[], bool]) -> bool:
    """Wait until backend ``pid`` waits for a lock (True) or ``done()`` (False); 30 s at most."""
    with engine.connect() as watcher:
        for _ in range(300):
            if done():
                return False
            waiting = watcher.execute(
                sa.text("SELECT count(*) FROM pg_locks WHERE pid = :p AND NOT granted"),
                {"p": pid},
            ).scalar_one()
            if waiting:
                return True
            time.sleep(0.1)
    pytest.fail("neither waited nor finished within 30 s")


def _rows(conn: sa.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the step tables (without surrogate ids), sorted."""
    out = {}
    for name in LOCKED:
        t = metadata.tables[name]
        cols = [c for c in t.c if c.name != "id"]
        out[name] = sorted(tuple(r) for r in conn.execute(sa.select(*cols)).all())
    return out


def _by_subject(conn: sa.Connection, name: str) -> dict[str, int]:
    t = metadata.tables[name]
    rows = conn.execute(sa.select(t.c.subject_id, sa.func.count()).group_by(t.c.subject_id))
    return {str(s): int(n) for s, n in rows}


@pytest.mark.parametrize("name", list(STEPS))
def test_a_merge_open_when_a_step_starts_is_waited_for_and_seen_whole(
    env: CdpEnv, name: str
) -> None:
    engine = env.runtime.data_engine
    step_pid: list[int] = []
    started = threading.Event()
    merged = threading.Event()
    errors: list[BaseException] = []

    def merge() -> None:  # done, not committed, until the step waits for it
        try:
            with engine.begin() as conn:
                _merge(env, conn)
                merged.set()
                started.wait(30)
                _wait_until(engine, step_pid[0], lambda: False)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            merged.set()

    merger = threading.Thread(target=merge)
    merger.start()
    assert merged.wait(30) and not errors
    try:
        with engine.begin() as conn:
            step_pid.append(_pid(conn))
            started.set()
            STEPS[name](conn)
    finally:
        started.set()
        merger.join(60)
    assert not merger.is_alive() and not errors
    with engine.connect() as conn:
        after = _rows(conn)
        assert all(ABSORBED not in _by_subject(conn, t) for t in LOCKED)
        if name == "order_traits":
            row = conn.execute(sa.text("SELECT orders, total_value FROM subject_traits")).one()
            assert tuple(row) == (3, 350.0)  # the survivor with the orders it took over
        if name == "loyalty":
            tier = conn.execute(sa.text("SELECT tier FROM loyalty_status")).scalar_one()
            assert tier == "silver"
        if name == "points":
            assert _by_subject(conn, "points_ledger") == {SURVIVOR: 3}
        if name == "clv":
            assert _by_subject(conn, "clv_predictions") == {SURVIVOR: 1}
    # what the step stored is what it stores now, with the merge long committed
    with engine.begin() as conn:
        STEPS[name](conn)
    with engine.connect() as conn:
        assert _rows(conn) == after


def _waits_for(engine: sa.Engine, pid: int, done: Callable[[], bool]) -> bool:
    """Wait until another backend waits for backend ``pid`` (True) or ``done()`` (False)."""
    with engine.connect() as watcher:
        for _ in range(300):
            if done():
                return False
            blocked = watcher.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE :p = ANY(pg_blocking_pids(pid))"
                ),
                {"p": pid},
            ).scalar_one()
            watcher.rollback()  # pg_stat_activity is read once per transaction
            if blocked:
                return True
            time.sleep(0.1)
    pytest.fail("neither waited nor finished within 30 s")


@dataclass
class _Arrival:
    """A writer started from a hook on a step's connection (backend ``step_pid``)."""

    engine: sa.Engine
    write: Callable[[], Any]
    step_pid: int
    waited: list[bool] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> None:
        def run() -> None:
            try:
                self.write()
            except BaseException as exc:  # pragma: no cover - reported by the test
                self.errors.append(exc)

        thread = self.thread = threading.Thread(target=run)
        thread.start()
        self.waited.append(_waits_for(self.engine, self.step_pid, lambda: not thread.is_alive()))


def _run_with_arrival(
    env: CdpEnv, name: str, marker: str, when: str, write: Callable[[], Any]
) -> _Arrival:
    """Run step ``name``; start ``write`` on another connection before or after the step's
    first statement containing ``marker``, and go on once it waits for the step (or is done)."""
    engine = env.runtime.data_engine
    event = "before_cursor_execute" if when == "before" else "after_cursor_execute"
    arrival: _Arrival | None = None
    try:
        with engine.begin() as conn:
            arrival = _Arrival(engine, write, _pid(conn))

            def hook(conn: sa.Connection, cursor: Any, statement: str, *args: Any) -> None:
                if arrival is not None and marker in statement and arrival.thread is None:
                    arrival.start()

            sa.event.listen(conn, event, hook)
            STEPS[name](conn)
            sa.event.remove(conn, event, hook)
    finally:
        if arrival is not None and arrival.thread is not None:
            arrival.thread.join(60)
    assert arrival.thread is not None and not arrival.thread.is_alive()
    assert not arrival.errors
    return arrival


def _merging(env: CdpEnv) -> None:
    with env.runtime.data_engine.begin() as conn:
        _merge(env, conn)


# (step, statement marker, before or after it): a point where the step has begun reading (or,
# for the points step, is about to write lines of the absorbed subject's orders)
ARRIVALS = [
    ("order_traits", "INSERT INTO tmp_facts_", "after"),
    ("loyalty", "INSERT INTO tmp_tier_window_", "after"),
    ("points", "INSERT INTO points_ledger", "before"),
    ("clv", "FROM orders", "after"),
]


@pytest.mark.parametrize(("name", "marker", "when"), ARRIVALS)
def test_a_merge_arriving_during_a_step_waits_for_its_commit(
    env: CdpEnv, name: str, marker: str, when: str
) -> None:
    arrival = _run_with_arrival(env, name, marker, when, lambda: _merging(env))
    assert arrival.waited == [True]  # the merge waited for the step's commit
    with env.runtime.data_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM subjects")).scalar_one() == 1
        assert all(ABSORBED not in _by_subject(conn, t) for t in LOCKED)
        if name == "points":  # written for both, then moved to the survivor by the merge
            assert _by_subject(conn, "points_ledger") == {SURVIVOR: 3}


def test_the_points_step_and_an_erasure_run_one_after_the_other(
    env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An erasure open when the points step starts is waited for (its subject's orders are then
    unlinked: no line names it); one that arrives during the step waits for its commit and
    then deletes the subject's lines, without a deadlock (it would be retried: not here)."""
    engine = env.runtime.data_engine
    monkeypatch.setattr(erasure, "ATTEMPTS", 1)
    real = erasure.secure_delete
    step_pid: list[int] = []
    erased = threading.Event()
    started = threading.Event()

    @contextmanager
    def held_open(conn: sa.Connection) -> Iterator[None]:
        with real(conn):
            yield
        erased.set()  # done, not committed, until the step waits for it
        started.wait(30)
        _wait_until(engine, step_pid[0], lambda: False)

    monkeypatch.setattr(erasure, "secure_delete", held_open)
    errors: list[BaseException] = []

    def erase() -> None:
        try:
            erase_subject(runtime=env.runtime, subject_id=ABSORBED)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            erased.set()

    eraser = threading.Thread(target=erase)
    eraser.start()
    assert erased.wait(30) and not errors
    try:
        with engine.begin() as conn:
            step_pid.append(_pid(conn))
            started.set()
            STEPS["points"](conn)
    finally:
        started.set()
        eraser.join(60)
    assert not eraser.is_alive() and not errors
    with engine.connect() as conn:
        assert _by_subject(conn, "points_ledger") == {SURVIVOR: 1}

    monkeypatch.setattr(erasure, "secure_delete", real)
    with engine.begin() as conn:
        make_subjects(conn, [ABSORBED])  # a new subject under the id, with two new orders
        add_orders(conn, [OrderSpec(ABSORBED, NOW - timedelta(days=d), 100.0) for d in (2, 1)])
    arrival = _run_with_arrival(
        env,
        "points",
        "INSERT INTO points_ledger",
        "before",
        lambda: erase_subject(runtime=env.runtime, subject_id=ABSORBED),
    )
    assert arrival.waited == [True]
    with engine.connect() as conn:
        assert _by_subject(conn, "points_ledger") == {SURVIVOR: 1}
