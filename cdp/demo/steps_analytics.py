"""Demo steps on pseudonymous data: compute traits (with the CLV fit), show the shop's metrics
headline and RFM segment counts, and compute the built-in segments.

Everything here is aggregates over subject ids: no personal value is read, so no principal is
needed (the same as ``cdp traits compute``, ``cdp metrics`` and ``cdp segments compute``, which
run on the installation directly).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import sqlalchemy as sa

from cdp.clock import utcnow
from cdp.demo.pipeline import DemoContext, DemoStep
from cdp.runtime import get_runtime
from cdp.segments import membership
from cdp.traits.compute import compute_traits
from cdp.traits.metrics import shop_metrics
from cdp.traits.models import SubjectTraits

TRAITS = SubjectTraits.__table__  # type: ignore[attr-defined]
BUILTIN_SEGMENTS: Final = ("win_back", "vip", "new_customer_onboarding", "high_value_at_risk")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def rfm_counts() -> dict[str, int]:
    """Subjects per RFM segment name (``no orders`` for subjects without a completed order)."""
    rt = get_runtime()
    query = sa.select(TRAITS.c.rfm_segment, sa.func.count()).group_by(TRAITS.c.rfm_segment)
    with rt.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        rows = conn.execute(query).all()
    counts = {str(name or "no orders"): int(n) for name, n in rows}
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _traits(ctx: DemoContext) -> None:
    rt = get_runtime()
    try:
        report = compute_traits(runtime=rt, with_clv=True)
    except ValueError as exc:
        # The CLV maths refuses some tiny shops with a ValueError (compute_traits only turns
        # InvalidInputError into "skipped"); the other trait families were committed before the
        # CLV step, so recompute them without it and say why CLV is missing.
        report = compute_traits(runtime=rt, with_clv=False)
        report.clv_skipped = f"the model could not be fitted on this shop: {exc}"
    ctx.results["traits"] = report
    clv = (
        f"CLV predicted for {report.clv_subjects:,} buyers"
        if report.clv_subjects is not None
        else f"CLV skipped ({report.clv_skipped})"
    )
    ctx.say(f"traits of {report.subjects:,} subjects computed; {clv}")
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    m = shop_metrics(runtime=rt, start=today - timedelta(days=365), end=today)
    ctx.results["metrics"] = m
    aov = "n/a" if m.aov is None else f"{m.aov:,.2f} {rt.settings.base_currency}"
    headline = (
        f"customers {m.active_customers:,}, repurchase rate {_pct(m.repurchase_rate)}, "
        f"AOV {aov}, churn rate {_pct(m.churn_rate)}"
    )
    ctx.say(f"last 12 months: {headline}")
    rfm = rfm_counts()
    ctx.results["rfm"] = rfm
    ctx.say("RFM segments: " + ", ".join(f"{k} {v:,}" for k, v in rfm.items()))
    ctx.done["traits"] = f"{report.subjects:,} subjects; {clv}; {headline}"


def _segments(ctx: DemoContext) -> None:
    rt = get_runtime()
    counts: dict[str, int] = {}
    for name in BUILTIN_SEGMENTS:
        computation = membership.compute_segment(runtime=rt, name=name)
        counts[name] = computation.member_count
        ctx.say(
            f"{name}: {computation.member_count:,} members "
            f"(+{computation.added_count:,} / -{computation.removed_count:,} since last time)"
        )
    ctx.results["segments"] = counts
    ctx.done["segments"] = ", ".join(f"{k} {v:,}" for k, v in counts.items())


STEPS: Final = [
    DemoStep("traits", "Compute traits (RFM, lifecycle, loyalty, CLV) and shop metrics", _traits),
    DemoStep("segments", "Compute the built-in segments", _segments),
]
