"""Loyalty tiers and the points ledger follow the injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from cdp.clock import FrozenClock
from cdp.errors import ConflictError, InvalidInputError
from cdp.profiles.models import Order
from cdp.traits import loyalty, points
from cdp.traits.config import LoyaltyConfig, PointsConfig, Tier
from cdp.traits.models import LoyaltyStatus, LoyaltyTierChange, PointsEntry
from tests.conftest import CdpEnv
from tests.traits.factories import add_event, add_order, make_subjects, subject_ids

T0 = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
CFG = LoyaltyConfig(
    tiers=(
        Tier(name="member"),
        Tier(name="silver", min_spend=100, min_occasions=3),
        Tier(name="gold", min_spend=500, min_occasions=10),
    ),
    window_days=90,
    retention_days=60,
    downgrade_steps=1,
)


def _tier(env: CdpEnv, sid: str) -> tuple[str, datetime]:
    t = LoyaltyStatus.__table__  # type: ignore[attr-defined]
    with env.runtime.data_engine.connect() as conn:
        row = conn.execute(sa.select(t.c.tier, t.c.since).where(t.c.subject_id == sid)).one()
    return row[0], row[1]


def _evaluate(env: CdpEnv, clock: FrozenClock, cfg: LoyaltyConfig = CFG) -> int:
    with env.runtime.data_engine.begin() as conn:
        return loyalty.evaluate_tiers(conn, cfg=cfg, now=clock())


def test_upgrade_at_once_downgrade_after_retention_one_step_at_a_time(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    (sid,) = subject_ids(1, prefix=0xD)
    clock = FrozenClock(T0)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [sid])
    assert _evaluate(cdp_env, clock) == 1
    assert _tier(cdp_env, sid) == ("member", T0)

    with rt.data_engine.begin() as conn:
        add_order(conn, sid, T0 + timedelta(hours=1), 600.0)
    clock.advance(days=1)
    assert _evaluate(cdp_env, clock) == 1
    assert _tier(cdp_env, sid) == ("gold", clock())  # upgrade at once, by spend
    gold_since = clock()

    # The spend leaves the 90-day window on day 91, but gold is kept for 60 days from its start
    # anyway; after the window it would qualify for member only, yet drops one step at a time.
    clock.advance(days=59)
    assert _evaluate(cdp_env, clock) == 0
    clock.advance(days=40)  # day 100: outside the window, retention elapsed
    assert _evaluate(cdp_env, clock) == 1
    tier, since = _tier(cdp_env, sid)
    assert (tier, since) == ("silver", clock())
    assert since > gold_since
    clock.advance(days=30)  # silver held only 30 days: kept
    assert _evaluate(cdp_env, clock) == 0
    clock.advance(days=31)
    assert _evaluate(cdp_env, clock) == 1
    assert _tier(cdp_env, sid)[0] == "member"

    changes_t = LoyaltyTierChange.__table__  # type: ignore[attr-defined]
    with rt.data_engine.connect() as conn:
        path = conn.execute(
            sa.select(changes_t.c.from_tier, changes_t.c.to_tier).order_by(changes_t.c.id)
        ).all()
    assert [tuple(p) for p in path] == [
        (None, "member"),
        ("member", "gold"),
        ("gold", "silver"),
        ("silver", "member"),
    ]


def test_qualify_on_both_needs_spend_and_occasions(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid, other = subject_ids(2, prefix=0xE)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [sid, other])
        add_order(conn, sid, T0 - timedelta(days=1), 150.0)
        for k in range(3):  # three occasions, two orders on the last day count once
            add_order(conn, other, T0 - timedelta(days=k + 1), 40.0)
        add_order(conn, other, T0 - timedelta(days=1, hours=1), 40.0)
    both = CFG.model_copy(update={"qualify_on": "both"})
    _evaluate(cdp_env, FrozenClock(T0), both)
    assert _tier(cdp_env, sid)[0] == "member"
    assert _tier(cdp_env, other)[0] == "silver"  # 160 spend, 3 occasions


def _ledger(env: CdpEnv, sid: str) -> list[tuple[str, int]]:
    t = PointsEntry.__table__  # type: ignore[attr-defined]
    with env.runtime.data_engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.c.kind, t.c.points).where(t.c.subject_id == sid).order_by(t.c.id)
        ).all()
    return [(r[0], int(r[1])) for r in rows]


def _balance(env: CdpEnv, sid: str) -> int:
    with env.runtime.data_engine.connect() as conn:
        return points.balance(conn, subject_id=sid)


def test_points_earn_redeem_expire_fifo(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    (sid,) = subject_ids(1, prefix=0xF)
    cfg = PointsConfig(per_currency_unit=1.0, events={"Checked In": 5}, expiry_months=12)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [sid])
        add_order(conn, sid, datetime(2025, 1, 31, 10, tzinfo=UTC), 100.99)  # 100 points
        add_order(conn, sid, datetime(2025, 6, 1, 10, tzinfo=UTC), 50.0)  # 50 points
        add_order(conn, sid, datetime(2025, 6, 2, 10, tzinfo=UTC), 70.0, status="refunded")
        add_event(conn, sid, "Checked In", datetime(2025, 3, 1, tzinfo=UTC))  # 5 points
        add_event(conn, sid, "Page Viewed", datetime(2025, 3, 1, tzinfo=UTC))  # nothing

    def run(at: datetime) -> dict[str, int]:
        with rt.data_engine.begin() as conn:
            return points.update_ledger(conn, cfg=cfg, now=at)

    assert run(datetime(2025, 7, 1, tzinfo=UTC)) == {
        "earn_orders": 2,
        "earn_events": 1,
        "corrections": 0,
        "reversals": 0,
        "expired": 0,
    }
    assert _balance(cdp_env, sid) == 155
    assert run(datetime(2025, 7, 2, tzinfo=UTC))["earn_orders"] == 0  # idempotent

    with rt.data_engine.begin() as conn:
        left = points.redeem(
            conn, cfg=cfg, subject_id=sid, points=60, now=datetime(2025, 8, 1, tzinfo=UTC)
        )
    assert left == 95
    # 2026-01-30: the Jan 31 lot is 12 months old only on 2026-01-31 (month arithmetic).
    run(datetime(2026, 1, 30, tzinfo=UTC))
    assert _balance(cdp_env, sid) == 95
    # The redeemed 60 came out of the oldest lot: 40 of its 100 points expire.
    run(datetime(2026, 1, 31, 10, tzinfo=UTC))
    assert _balance(cdp_env, sid) == 55
    assert _ledger(cdp_env, sid)[-1] == ("expire", -40)
    run(datetime(2026, 3, 1, tzinfo=UTC))  # the check-in's 5 points
    assert _balance(cdp_env, sid) == 50
    run(datetime(2026, 3, 2, tzinfo=UTC))  # nothing more is due
    assert _balance(cdp_env, sid) == 50

    with pytest.raises(ConflictError), rt.data_engine.begin() as conn:
        points.redeem(
            conn, cfg=cfg, subject_id=sid, points=51, now=datetime(2026, 3, 3, tzinfo=UTC)
        )
    with pytest.raises(InvalidInputError), rt.data_engine.begin() as conn:
        points.redeem(conn, cfg=cfg, subject_id=sid, points=0, now=datetime(2026, 3, 3, tzinfo=UTC))
    # Redeem expires what is due first: on 2026-06-01 the June lot (50) is gone.
    with pytest.raises(ConflictError), rt.data_engine.begin() as conn:
        points.redeem(
            conn, cfg=cfg, subject_id=sid, points=10, now=datetime(2026, 6, 1, 11, tzinfo=UTC)
        )


def test_refund_after_earning_reverses_points(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    (sid,) = subject_ids(1, prefix=0x10)
    cfg = PointsConfig(per_currency_unit=2.0, events={}, expiry_months=6)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [sid])
        oid = add_order(conn, sid, datetime(2026, 1, 5, tzinfo=UTC), 30.4)
        add_order(conn, sid, datetime(2026, 1, 6, tzinfo=UTC), 10.0)
        points.update_ledger(conn, cfg=cfg, now=datetime(2026, 2, 1, tzinfo=UTC))
    assert _balance(cdp_env, sid) == 60 + 20
    with rt.data_engine.begin() as conn:
        o = Order.__table__  # type: ignore[attr-defined]
        conn.execute(sa.update(o).where(o.c.id == oid).values(status="refunded"))
        points.update_ledger(conn, cfg=cfg, now=datetime(2026, 2, 2, tzinfo=UTC))
        points.update_ledger(conn, cfg=cfg, now=datetime(2026, 2, 3, tzinfo=UTC))
    assert _balance(cdp_env, sid) == 20
    # The reversal cancels its lot: at expiry only the remaining 20 expire.
    with rt.data_engine.begin() as conn:
        points.update_ledger(conn, cfg=cfg, now=datetime(2026, 7, 7, tzinfo=UTC))
    assert _balance(cdp_env, sid) == 0
    assert _ledger(cdp_env, sid)[-1] == ("expire", -20)
