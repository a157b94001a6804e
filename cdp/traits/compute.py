"""``cdp traits compute``: every trait family recomputed, each step in its own transaction.

Order traits (facts, RFM, lifecycle, value layer) and tiers are pure SQL; the points ledger is
SQL; CLV fits on the data up to yesterday and stores predictions (skipped, with the reason,
when the data cannot support a fit). Every run, with CLV or without, deletes the stored
predictions of subjects who may no longer be profiled (:func:`cdp.traits.clv.drop_ineligible`).
Long reads on SQLite run under a deferred BEGIN only where nothing is written; the writing steps
take the write lock as usual.

The order traits, the tiers and the points ledger read the orders on their own and write
tables of their own, so on PostgreSQL they run at the same time on separate connections
(``CDP_TRAITS_WORKERS`` of them, default 2: a server uses as many cores); CLV comes last, since
it fits on the order facts just stored. SQLite has one writer at a time, so there they run one
after another.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import Any

import sqlalchemy as sa

from cdp.clock import Clock, utcnow
from cdp.errors import InvalidInputError
from cdp.logging import get_logger
from cdp.runtime import Runtime
from cdp.traits import clv, loyalty, order_traits, points
from cdp.traits.config import TraitsConfig, load_traits_config

log = get_logger("cdp.traits")


@dataclass
class ComputeReport:
    """What one run wrote and how long each step took (seconds)."""

    subjects: int = 0
    tier_changes: int = 0
    points_lines: dict[str, int] = field(default_factory=dict)
    clv_subjects: int | None = None
    clv_skipped: str | None = None
    #: Stored CLV predictions deleted because their subject may no longer be profiled.
    clv_removed: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def compute_traits(
    *,
    runtime: Runtime,
    clock: Clock = utcnow,
    config: TraitsConfig | None = None,
    with_clv: bool = True,
) -> ComputeReport:
    """Recompute every subject's traits as of ``clock()``."""
    cfg = config or load_traits_config(runtime.settings)
    now = clock()
    report = ComputeReport()
    engine = runtime.data_engine

    def step(name: str, started: float) -> None:
        report.seconds[name] = round(time.perf_counter() - started, 3)

    results = run_steps(
        engine,
        {
            "order_traits": lambda c: order_traits.compute_order_traits(c, cfg=cfg, now=now),
            "loyalty": lambda c: loyalty.evaluate_tiers(c, cfg=cfg.loyalty, now=now),
            "points": lambda c: points.update_ledger(c, cfg=cfg.points, now=now),
            # Every run, CLV or not: a run that stores no predictions (--no-clv, CLV skipped)
            # must not leave those of restricted subjects or of an upheld objection in place.
            "clv_eligibility": clv.drop_ineligible,
        },
        workers=runtime.settings.traits_workers,
        seconds=report.seconds,
    )
    report.subjects = results["order_traits"]
    report.tier_changes = results["loyalty"]
    report.points_lines = results["points"]
    report.clv_removed = results["clv_eligibility"]
    if with_clv:
        t = time.perf_counter()
        try:
            with engine.begin() as conn:
                yesterday = now.astimezone(UTC).date() - timedelta(days=1)
                # The order facts stored above serve as the summaries (one row per buyer
                # instead of every order; see cdp.traits.clv_summary).
                clv.fit(conn, calibration_end=yesterday, now=now, from_facts=True)
                report.clv_subjects = clv.predict(conn, cfg=cfg.clv, now=now, from_facts=True)
        except InvalidInputError as exc:
            report.clv_skipped = str(exc)
        step("clv", t)
    log.info(
        "traits computed",
        subjects=report.subjects,
        tier_changes=report.tier_changes,
        seconds=report.seconds,
    )
    return report


Step = Callable[[sa.Connection], Any]


def run_steps(
    engine: sa.Engine,
    steps: Mapping[str, Step],
    *,
    workers: int,
    seconds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Run each step in a transaction of its own; their results by name. On PostgreSQL up to
    ``workers`` steps run at once, each on its own connection (the steps must write disjoint
    tables); on SQLite, or with ``workers`` 1, one after another in the given order. Every
    step runs even if another fails; then the first failure (in the given order) is raised.
    ``seconds`` receives each step's wall time."""
    times = seconds if seconds is not None else {}

    def run(name: str) -> Any:
        started = time.perf_counter()
        with engine.begin() as conn:
            out = steps[name](conn)
        times[name] = round(time.perf_counter() - started, 3)
        return out

    results: dict[str, Any] = {}
    failures: list[BaseException] = []
    if engine.dialect.name == "sqlite" or workers <= 1 or len(steps) <= 1:
        for name in steps:
            try:
                results[name] = run(name)
            except Exception as exc:  # the other steps are independent: they still run
                failures.append(exc)
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cdp-traits") as pool:
            futures = {name: pool.submit(run, name) for name in steps}
        for name, future in futures.items():
            error = future.exception()
            if error is None:
                results[name] = future.result()
            else:
                failures.append(error)
    if failures:
        raise failures[0]
    return results
