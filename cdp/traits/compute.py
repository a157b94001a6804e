"""``cdp traits compute``: every trait family, recomputed in order, each in its own transaction.

Order traits (facts, RFM, lifecycle, value layer) and tiers are pure SQL; the points ledger is
SQL; CLV fits on the data up to yesterday and stores predictions (skipped, with the reason,
when the data cannot support a fit). Long reads on SQLite run under a deferred BEGIN only where
nothing is written; the writing steps take the write lock as usual.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, timedelta

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

    t = time.perf_counter()
    with engine.begin() as conn:
        report.subjects = order_traits.compute_order_traits(conn, cfg=cfg, now=now)
    step("order_traits", t)
    t = time.perf_counter()
    with engine.begin() as conn:
        report.tier_changes = loyalty.evaluate_tiers(conn, cfg=cfg.loyalty, now=now)
    step("loyalty", t)
    t = time.perf_counter()
    with engine.begin() as conn:
        report.points_lines = points.update_ledger(conn, cfg=cfg.points, now=now)
    step("points", t)
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
