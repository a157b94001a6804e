"""Order facts, RFM scores and names, lifecycle stages and value layers: a hand-worked example
and a pandas reference on a generated shop of 10,000 customers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from cdp.clock import FrozenClock
from cdp.privacy.restriction import restrict
from cdp.profiles.models import Order
from cdp.traits.compute import compute_traits
from cdp.traits.config import TraitsConfig
from cdp.traits.lifecycle import python_stage
from cdp.traits.models import SubjectTraits
from cdp.traits.rfm import python_segment
from cdp.traits.sqlfuncs import python_day
from tests.conftest import CdpEnv
from tests.traits.factories import add_order, generate_shop, make_subjects, subject_ids

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _traits(env: CdpEnv) -> dict[str, dict[str, Any]]:
    with env.runtime.data_engine.connect() as conn:
        rows = conn.execute(sa.select(SubjectTraits)).mappings().all()
    return {r["subject_id"]: dict(r) for r in rows}


def _ago(days: int) -> datetime:
    return NOW - timedelta(days=days)


def test_hand_worked_example(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    a, b, c, d, e, f = subject_ids(6, prefix=0xA)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [a, b, c, d, e, f])
        for days, value in ((2, 100.0), (10, 50.0), (40, 70.0)):
            add_order(conn, a, _ago(days), value)
        add_order(conn, b, _ago(5), 300.0)
        add_order(conn, c, _ago(100), 20.0)
        add_order(conn, c, _ago(200), 20.0)
        add_order(conn, d, _ago(400), 10.0)
        add_order(conn, d, _ago(1), 500.0, status="refunded")
        add_order(conn, d, _ago(3), 80.0, status="cancelled")
        add_order(conn, e, _ago(30), 15.0)
        add_order(conn, e, _ago(30) + timedelta(hours=2), 25.0)
    compute_traits(runtime=rt, clock=FrozenClock(NOW), with_clv=False)
    t = _traits(cdp_env)
    expected = {
        # subject: (orders, occasions, total, R, F, M, segment, stage, layer)
        a: (3, 3, 220.0, 5, 5, 4, "champions", "active", "medium"),
        b: (1, 1, 300.0, 4, 1, 5, "potential_loyalist", "new", "high"),
        c: (2, 2, 40.0, 2, 4, 2, "at_risk", "at_risk", "low"),
        d: (1, 1, 10.0, 1, 1, 1, "lost", "churned", "low"),
        e: (2, 1, 40.0, 3, 1, 2, "about_to_sleep", "new", "low"),
    }
    for sid, (orders, occ, total, r, fr, m, seg, stage, layer) in expected.items():
        row = t[sid]
        got = (
            row["orders"],
            row["occasions"],
            row["total_value"],
            row["recency_score"],
            row["frequency_score"],
            row["monetary_score"],
            row["rfm_segment"],
            row["lifecycle_stage"],
            row["value_layer"],
        )
        assert got == (orders, occ, total, r, fr, m, seg, stage, layer), sid
    assert t[a]["repurchase_cycle_days"] == pytest.approx(19.0)
    assert t[c]["repurchase_cycle_days"] == pytest.approx(100.0)
    assert t[b]["repurchase_cycle_days"] is None
    assert t[a]["avg_order_value"] == pytest.approx(220 / 3)
    assert t[e]["avg_order_value"] == pytest.approx(20.0)
    assert t[a]["days_since_last_order"] == 2
    assert t[d]["days_since_last_order"] == 400
    assert t[f]["lifecycle_stage"] == "prospect" and t[f]["value_layer"] == "potential"
    assert t[f]["orders"] == 0 and t[f]["rfm_segment"] is None
    assert t[a]["first_order_at"] == _ago(40) and t[a]["last_order_at"] == _ago(2)


def test_reactivated_and_configurable_windows(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    g, h = subject_ids(2, prefix=0xB)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [g, h])
        add_order(conn, g, _ago(300), 50.0)
        add_order(conn, g, _ago(10), 50.0)
        add_order(conn, h, _ago(120), 50.0)
    compute_traits(runtime=rt, clock=FrozenClock(NOW), with_clv=False)
    t = _traits(cdp_env)
    assert t[g]["lifecycle_stage"] == "reactivated"
    assert t[h]["lifecycle_stage"] == "at_risk"
    cfg = TraitsConfig.model_validate(
        {
            "lifecycle": {
                "active_days": 150,
                "at_risk_days": 200,
                "dormant_days": 300,
                "reactivation_gap_days": 400,
            }
        }
    )
    compute_traits(runtime=rt, clock=FrozenClock(NOW), config=cfg, with_clv=False)
    t = _traits(cdp_env)
    assert t[g]["lifecycle_stage"] == "active"
    assert t[h]["lifecycle_stage"] == "active"


def test_restricted_subjects_get_no_traits(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    x, y = subject_ids(2, prefix=0xC)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [x, y])
        add_order(conn, x, _ago(3), 10.0)
        add_order(conn, y, _ago(3), 10.0)
    compute_traits(runtime=rt, clock=FrozenClock(NOW), with_clv=False)
    assert set(_traits(cdp_env)) == {x, y}
    with rt.data_engine.begin() as conn:
        restrict(conn=conn, subject_id=y, request_id=None)
    compute_traits(runtime=rt, clock=FrozenClock(NOW), with_clv=False)
    assert set(_traits(cdp_env)) == {x}


def _pandas_reference(env: CdpEnv, ids: list[str], cfg: TraitsConfig) -> pd.DataFrame:
    o = Order.__table__  # type: ignore[attr-defined]
    with env.runtime.data_engine.connect() as conn:
        rows = conn.execute(
            sa.select(o.c.subject_id, o.c.ordered_at, o.c.value_base).where(
                o.c.status == "completed", o.c.ordered_at < NOW
            )
        ).all()
    df = pd.DataFrame(rows, columns=["subject_id", "ordered_at", "value"])
    df["day"] = [python_day(t) for t in df["ordered_at"]]
    daily = df.groupby(["subject_id", "day"], as_index=False).agg(
        n=("value", "size"), value=("value", "sum")
    )
    daily = daily.sort_values(["subject_id", "day"])
    daily["gap"] = daily.groupby("subject_id")["day"].diff()
    per = daily.groupby("subject_id").agg(
        orders=("n", "sum"),
        occasions=("day", "size"),
        first_day=("day", "min"),
        last_day=("day", "max"),
        total=("value", "sum"),
        last_gap=("gap", "last"),
    )
    n = len(per)

    def score(s: pd.Series) -> pd.Series:
        return 1 + (5 * (s.rank(method="min").astype(int) - 1)) // n

    per["r"] = score(per["last_day"])
    per["f"] = score(per["occasions"])
    money = per["total"].round(2)
    per["m"] = score(money)
    lower = money.rank(method="min").astype(int) - 1
    high_from = 100 - cfg.value_layers.high_percent
    medium_from = high_from - cfg.value_layers.medium_percent
    per["layer"] = [
        "high" if lo * 100 >= n * high_from else "medium" if lo * 100 >= n * medium_from else "low"
        for lo in lower
    ]
    per["segment"] = [python_segment(r, f, m) for r, f, m in zip(per.r, per.f, per.m, strict=True)]
    today = python_day(NOW)
    per["stage"] = [
        python_stage(
            cfg.lifecycle,
            first_age_days=today - fd,
            days_since_last=today - ld,
            last_gap_days=None if pd.isna(g) else int(g),
        )
        for fd, ld, g in zip(per.first_day, per.last_day, per.last_gap, strict=True)
    ]
    return per


def test_matches_pandas_reference_on_generated_shop(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    with rt.data_engine.begin() as conn:
        ids = generate_shop(conn, customers=10_000, end=NOW, seed=3)
    cfg = TraitsConfig()
    compute_traits(runtime=rt, clock=FrozenClock(NOW), config=cfg, with_clv=False)
    got = _traits(cdp_env)
    ref = _pandas_reference(cdp_env, ids, cfg)
    assert len(got) == 10_000
    buyers = {sid for sid, row in got.items() if row["orders"] > 0}
    assert buyers == set(ref.index)
    mismatches = 0
    for sid, row in ref.iterrows():
        t = got[str(sid)]
        same = (
            t["orders"] == row.orders
            and t["occasions"] == row.occasions
            and t["total_value"] == pytest.approx(row.total)
            and (t["recency_score"], t["frequency_score"], t["monetary_score"])
            == (row.r, row.f, row.m)
            and t["rfm_segment"] == row.segment
            and t["lifecycle_stage"] == row.stage
            and t["value_layer"] == row.layer
        )
        mismatches += not same
    assert mismatches == 0
    # Every score 1-5 is used on recency and monetary, and named segments cover the grid.
    assert {t["recency_score"] for t in got.values()} >= {1, 2, 3, 4, 5}
    assert len({t["rfm_segment"] for t in got.values()} - {None}) >= 8
    assert all(t["lifecycle_stage"] == "prospect" for sid, t in got.items() if sid not in buyers)


def test_subjects_who_objected_to_analytics_are_not_profiled(cdp_env: CdpEnv) -> None:
    """An upheld objection to profiling is recorded as ``analytics`` withdrawn: no traits, no
    segments, until analytics is granted again."""
    from cdp.segments import membership, service
    from cdp.segments.views import SegmentIn
    from tests.audit.factories import make_ctx
    from tests.traits.factories import add_consents

    rt = cdp_env.runtime
    clock = FrozenClock(NOW)
    x, y = subject_ids(2, prefix=0xD)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [x, y])
        add_order(conn, x, _ago(3), 10.0)
        add_order(conn, y, _ago(3), 10.0)
    compute_traits(runtime=rt, clock=clock, with_clv=False)
    assert set(_traits(cdp_env)) == {x, y}
    with rt.data_engine.begin() as conn:
        add_consents(conn, [(y, "analytics", "withdrawn", _ago(2))])
    compute_traits(runtime=rt, clock=clock, with_clv=False)
    assert set(_traits(cdp_env)) == {x}
    service.create_segment(
        runtime=rt,
        actor="t",
        data=SegmentIn(name="buyers", rule={"trait": {"name": "orders", "op": "ge", "value": 1}}),
    )
    membership.compute_segment(runtime=rt, name="buyers", clock=clock)
    ctx = make_ctx(("analyst",), purpose="analytics")
    page = membership.members(runtime=rt, ctx=ctx, name="buyers", page_size=100)
    assert set(page.subject_ids) == {x}
    with rt.data_engine.begin() as conn:
        add_consents(conn, [(y, "analytics", "granted", _ago(1))])
    compute_traits(runtime=rt, clock=clock, with_clv=False)
    assert set(_traits(cdp_env)) == {x, y}


def test_a_single_buyer_or_buyers_all_tied_score_one(cdp_env: CdpEnv) -> None:
    """The documented edge of the tie rule (docs/traits.md, "Tie rule"): with no buyer strictly
    below, every score is 1, so a lone buyer, or buyers equal on everything, read as ``lost``
    and ``low`` whatever they bought."""
    rt = cdp_env.runtime
    ids = subject_ids(4, prefix=0xE7)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, ids)
        add_order(conn, ids[0], _ago(1), 5000.0)  # the one buyer, yesterday, a lot
    compute_traits(runtime=rt, clock=FrozenClock(NOW), with_clv=False)
    lone = _traits(cdp_env)[ids[0]]
    assert (lone["recency_score"], lone["frequency_score"], lone["monetary_score"]) == (1, 1, 1)
    assert (lone["rfm_segment"], lone["value_layer"]) == ("lost", "low")
    with rt.data_engine.begin() as conn:
        for sid in ids[1:]:
            add_order(conn, sid, _ago(1), 5000.0)  # the same day, the same total
    compute_traits(runtime=rt, clock=FrozenClock(NOW), with_clv=False)
    tied = _traits(cdp_env)
    assert {
        (t["recency_score"], t["frequency_score"], t["monetary_score"]) for t in tied.values()
    } == {(1, 1, 1)}
    assert {(t["rfm_segment"], t["value_layer"]) for t in tied.values()} == {("lost", "low")}
